"""MNIST-style IDX files (gzipped or not): `fashion-mnist[:DIR]` and `mnist:DIR`.

Validation: 5,000 of the 60,000 official training images (1/12 of the training set, stratified, seeded)
are held out; the official test set is used as is.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import ReslabError
from .bundle import DataBundle, Split, hold_out_validation
from .errtext import quote

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
VAL_FRACTION = 5000 / 60000
# 2 px of the 28 px side: about the share that 4 px is of CIFAR's 32, without cutting off the object.
PAD = 2

_UINT8 = 0x08
_TYPE_NAMES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}
_MAX_DIMS = 4


def _open(path: Path):
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file of unsigned bytes (MNIST's format) into a uint8 array of its declared shape.

    Checks the magic number, the number of dimensions, and that the data is exactly as long as the
    dimensions say; anything else is a ReslabError naming the file and the problem.
    """
    path = Path(path)
    try:
        with _open(path) as f:
            header = f.read(4)
            if len(header) < 4:
                raise ReslabError(f"IDX file {path} is truncated: it ends inside the 4-byte header")
            zero, type_code, ndim = header[:2], header[2], header[3]
            if zero != b"\0\0" or type_code not in _TYPE_NAMES or not 1 <= ndim <= _MAX_DIMS:
                raise ReslabError(
                    f"{path} is not an IDX file: bad magic number 0x{header.hex()} "
                    f"(expected 0x0000 08 0N, e.g. 0x00000803 for images, 0x00000801 for labels)"
                )
            if type_code != _UINT8:
                raise ReslabError(
                    f"IDX file {path} holds {_TYPE_NAMES[type_code]} values; only uint8 (MNIST-style) is supported"
                )
            dim_bytes = f.read(4 * ndim)
            if len(dim_bytes) < 4 * ndim:
                raise ReslabError(f"IDX file {path} is truncated: it ends inside the dimension sizes")
            dims = tuple(int.from_bytes(dim_bytes[4 * i : 4 * i + 4], "big") for i in range(ndim))
            expected = int(np.prod(dims, dtype=np.int64))
            _check_plausible(path, f, dims, expected, 4 + 4 * ndim)
            data = np.empty(expected, dtype=np.uint8)
            got = _read_into(f, data)
            if got < expected:
                raise ReslabError(
                    f"IDX file {path} is truncated: dimensions {dims} need {expected} bytes of data, "
                    f"the file has {got}"
                )
            if f.read(1):
                raise ReslabError(
                    f"IDX file {path} is longer than its dimensions {dims} say ({expected} bytes of data): "
                    "wrong header or not an IDX file"
                )
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ReslabError(f"IDX file {path} is a damaged or truncated gzip file ({quote(e)})") from None
    except FileNotFoundError:
        raise ReslabError(f"IDX file {path} does not exist") from None
    except OSError as e:
        raise ReslabError(f"cannot read IDX file {path}: {quote(e)}") from None
    return data.reshape(dims)


def _check_plausible(path: Path, f, dims: tuple[int, ...], expected: int, header: int) -> None:
    """Refuse a header that declares more data than the file can hold before allocating for it."""
    size = path.stat().st_size
    # Deflate expands at most ~1032:1, so a gzip file cannot hold more than that.
    limit = size * 1032 if isinstance(f, gzip.GzipFile) else size - header
    if expected > limit:
        raise ReslabError(
            f"IDX file {path} is truncated or has a wrong header: dimensions {dims} need {expected} bytes "
            f"of data, the file is {size} bytes"
        )


def _read_into(f, out: np.ndarray) -> int:
    view = memoryview(out)
    total = 0
    while total < len(out):
        n = f.readinto(view[total:])
        if not n:
            break
        total += n
    return total


def find_idx_file(directory: Path, prefix: str, kind: str) -> Path:
    """`train-images-idx3-ubyte[.gz]` and the like; also accepts the `train-images.idx3-ubyte` spelling."""
    ndim = 3 if kind == "images" else 1
    names = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise ReslabError(
        f"{directory} has no {names[0]}[.gz]; an IDX data directory holds train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (gzipped or not)"
    )


def read_idx_split(directory: Path, prefix: str) -> Split:
    images_path = find_idx_file(directory, prefix, "images")
    labels_path = find_idx_file(directory, prefix, "labels")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise ReslabError(f"IDX file {images_path} has {images.ndim} dimensions; images need 3 (N, H, W)")
    if labels.ndim != 1:
        raise ReslabError(f"IDX file {labels_path} has {labels.ndim} dimensions; labels need 1 (N)")
    if len(images) != len(labels):
        raise ReslabError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if len(images) == 0:
        raise ReslabError(f"IDX file {images_path} holds no images")
    return Split(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long())


def load_idx_bundle(
    directory: str | Path,
    seed: int,
    *,
    spec: str,
    class_names: list[str] | None = None,
    allow_flip: bool,
) -> DataBundle:
    """Load an IDX directory; class_names None means '0', '1', ... up to the largest training label."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise ReslabError(f"data directory {directory} does not exist (spec {spec!r})")
    train = read_idx_split(directory, "train")
    test = read_idx_split(directory, "t10k")
    if train.images.shape[2:] != test.images.shape[2:]:
        raise ReslabError(
            f"{directory}: training images are {tuple(train.images.shape[2:])} but test images are "
            f"{tuple(test.images.shape[2:])}"
        )
    if class_names is None:
        class_names = [str(c) for c in range(int(train.labels.max()) + 1)]
    for name, split in (("training", train), ("test", test)):
        if int(split.labels.max()) >= len(class_names):
            raise ReslabError(
                f"{directory}: {name} label {int(split.labels.max())} is out of range for "
                f"{len(class_names)} classes"
            )
    train, val = hold_out_validation(train, VAL_FRACTION, seed)
    return DataBundle(
        spec=spec,
        train=train,
        val=val,
        test=test,
        class_names=class_names,
        allow_flip=allow_flip,
        pad=PAD,
    )


def load_fashion_mnist(directory: str | Path | None, seed: int, spec: str) -> DataBundle:
    path = FASHION_MNIST_DIR if directory is None else Path(directory)
    if directory is None and not path.is_dir():
        raise ReslabError(
            f"Fashion-MNIST is not at {path}; install Debian's dataset-fashion-mnist package "
            "or pass the directory of its IDX files: fashion-mnist:DIR"
        )
    # Clothing mirrored left-right is the same garment.
    return load_idx_bundle(path, seed, spec=spec, class_names=FASHION_MNIST_CLASSES, allow_flip=True)


def load_mnist(directory: str | Path, seed: int, spec: str) -> DataBundle:
    # class names '0'..'9' for MNIST itself: one per label value seen in training.
    return load_idx_bundle(directory, seed, spec=spec, class_names=None, allow_flip=False)
