"""Writers for tiny data sets in the official on-disk formats (IDX, CIFAR python batches, image folders),
shared by the data tests. Everything is generated here; nothing is downloaded."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x00 0x00 0x08 ndim, big-endian dims, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_set(
    directory: Path, n_train: int = 120, n_test: int = 20, size: int = 28, gz: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """train/t10k images and labels (10 balanced classes) as IDX files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return arrays


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes str and bytes as Python 2 byte strings (SHORT_BINSTRING/BINSTRING), the way the official
    CIFAR files were written by Python 2's cPickle, instead of Python 3's _codecs.encode calls."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_string(self, obj: str | bytes) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string


def py2_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    # numpy 2 names its module numpy._core; Python 2's numpy wrote numpy.core.
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _dump(path: Path, obj: object, py2: bool = False) -> None:
    # Protocol 2, as the official (Python 2 cPickle) files are; py2=True also copies their byte strings.
    path.write_bytes(py2_pickle(obj) if py2 else pickle.dumps(obj, protocol=2))


def write_cifar10(
    root: Path, per_class_per_batch: int = 2, n_test: int = 20, seed: int = 0, py2: bool = False
) -> dict:
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}; returns the arrays."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    dump = partial(_dump, py2=py2)
    batches = []
    for i in range(1, 6):
        n = 10 * per_class_per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.permutation(np.arange(n) % 10)]
        dump(
            folder / f"data_batch_{i}",
            {"batch_label": f"training batch {i} of 5", "labels": labels, "data": data, "filenames": []},
        )
        batches.append((data, labels))
    test_data = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_labels = [int(v) for v in np.arange(n_test) % 10]
    dump(
        folder / "test_batch",
        {"batch_label": "testing batch 1 of 1", "labels": test_labels, "data": test_data},
    )
    dump(
        folder / "batches.meta", {"label_names": CIFAR10_NAMES, "num_cases_per_batch": 10000, "num_vis": 3072}
    )
    return {
        "train_data": np.concatenate([b[0] for b in batches]),
        "train_labels": np.concatenate([b[1] for b in batches]),
        "test_data": test_data,
        "test_labels": np.array(test_labels),
    }


def write_cifar100(
    root: Path, per_class: int = 10, n_test: int = 200, seed: int = 0, py2: bool = False
) -> dict:
    """root/cifar-100-python/{train, test, meta} with fine and coarse labels; returns the arrays."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    dump = partial(_dump, py2=py2)
    fine = [int(v) for v in rng.permutation(np.arange(100 * per_class) % 100)]
    data = rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8)
    dump(folder / "train", {"data": data, "fine_labels": fine, "coarse_labels": [f // 5 for f in fine]})
    test_fine = [int(v) for v in np.arange(n_test) % 100]
    test_data = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    dump(
        folder / "test",
        {"data": test_data, "fine_labels": test_fine, "coarse_labels": [f // 5 for f in test_fine]},
    )
    names = [f"fine{i:02d}" for i in range(100)]
    dump(
        folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"coarse{i}" for i in range(20)]}
    )
    return {"train_data": data, "train_labels": np.array(fine), "test_data": test_data, "names": names}


def tar_folder(folder: Path, tarball: Path) -> Path:
    """Pack `folder` as its own top-level directory into a .tar.gz, like the official archives."""
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return tarball


def write_image(path: Path, array: np.ndarray) -> None:
    """Save an (H, W) or (H, W, 3) uint8 array as an image file (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def two_class_folder(
    folder: Path, per_class: int = 70, size: int = 16, classes: tuple[int, int] = (0, 1)
) -> Path:
    """A small `folder:` data set: `per_class` digits of each of two classes, upscaled from 8x8 to `size`
    (bilinear), as PNG class folders. The default holds 98 training images: 1 step per epoch at batch 64,
    6 at the default recipe's batch 16 for a set this small."""
    from PIL import Image

    from reslab.data import load_data

    digits = load_data("digits").train
    for cls in classes:
        target = folder / str(cls)
        target.mkdir(parents=True, exist_ok=True)
        chosen = (digits.labels == cls).nonzero().flatten()[:per_class]
        for i in chosen.tolist():
            picture = Image.fromarray(digits.images[i, 0].numpy(), mode="L").resize(
                (size, size), Image.Resampling.BILINEAR
            )
            picture.save(target / f"{i:04d}.png")
    return folder
