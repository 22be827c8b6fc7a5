"""CIFAR-10 / CIFAR-100 from the official python-pickle batches: `cifar10:DIR`, `cifar100:DIR`.

DIR is the `cifar-10-batches-py` (`cifar-100-python`) folder, a folder holding it or the official
.tar.gz, or the .tar.gz itself (read in place, never extracted). The pickles are read with a restricted
unpickler that resolves only the few numpy names an array needs, so a file that would run code is refused.
Validation: 10% of the training set per class (45,000/5,000 as in He et al.), seeded; test set as is.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from ..errors import ReslabError
from .bundle import DataBundle, Split, hold_out_validation
from .errtext import quote

VAL_FRACTION = 0.1
PAD = 4


@dataclass(frozen=True)
class CifarFormat:
    name: str
    folder: str
    tarball: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    names_key: str
    labels_key: str
    num_classes: int
    torchvision_class: str


CIFAR10 = CifarFormat(
    name="cifar10",
    folder="cifar-10-batches-py",
    tarball="cifar-10-python.tar.gz",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_file="test_batch",
    meta_file="batches.meta",
    names_key="label_names",
    labels_key="labels",
    num_classes=10,
    torchvision_class="CIFAR10",
)
CIFAR100 = CifarFormat(
    name="cifar100",
    folder="cifar-100-python",
    tarball="cifar-100-python.tar.gz",
    train_files=("train",),
    test_file="test",
    meta_file="meta",
    names_key="fine_label_names",
    labels_key="fine_labels",
    num_classes=100,
    torchvision_class="CIFAR100",
)
FORMATS = {f.name: f for f in (CIFAR10, CIFAR100)}


def _numpy_global(module: str, name: str) -> Any:
    import importlib

    # numpy 2 moved numpy.core to numpy._core (the old name still imports, with a warning).
    for candidate in (module.replace("numpy.core.", "numpy._core.", 1), module):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {module}.{name}")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes at pickle protocol 2 as _codecs.encode(str, "latin1"); nothing else is allowed.
    if encoding.lower().replace("-", "") != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    for _name in ("_reconstruct", "scalar"):
        _ALLOWED[(_module, _name)] = lambda m=_module, n=_name: _numpy_global(m, n)


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only numpy's array reconstruction names; every other global is refused, so unpickling
    cannot call anything that runs code (os.system, eval, subprocess, ...)."""

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise RefusedGlobal(module, name)
        return factory()


def safe_unpickle(stream: IO[bytes], where: str) -> Any:
    """Unpickle a CIFAR batch (Python 2 pickles need latin1 for their str/bytes) or raise ReslabError."""
    try:
        return RestrictedUnpickler(stream, encoding="latin1").load()
    except RefusedGlobal as e:
        raise ReslabError(
            f"refusing to load {where}: the pickle would call {e.qualname}, which a CIFAR batch never "
            "contains (it could run code); use the official files"
        ) from None
    except pickle.UnpicklingError as e:
        what = "is truncated or damaged" if "truncated" in str(e) else "is not a CIFAR python batch"
        raise ReslabError(f"{where} {what} ({quote(e)})") from None
    except (EOFError, tarfile.TarError, zlib.error, gzip.BadGzipFile) as e:
        raise ReslabError(f"{where} is truncated or damaged ({quote(e)})") from None
    except Exception as e:  # noqa: BLE001 - any other failure means the bytes are not a CIFAR pickle
        raise ReslabError(f"{where} is not a CIFAR python batch ({quote(e)})") from None


class _Source:
    """Where the batch files are: a folder or a tarball. `load()` unpickles every needed file once."""

    def __init__(self, fmt: CifarFormat, directory: Path | None, tarball: Path | None) -> None:
        self.fmt, self.directory, self.tarball = fmt, directory, tarball
        self.needed = [*fmt.train_files, fmt.test_file, fmt.meta_file]

    def describe(self, name: str) -> str:
        if self.directory is not None:
            return str(self.directory / name)
        return f"{self.tarball}:{self.fmt.folder}/{name}"

    def load(self) -> dict[str, Any]:
        return self._load_folder() if self.directory is not None else self._load_tarball()

    def _load_folder(self) -> dict[str, Any]:
        assert self.directory is not None
        loaded = {}
        for name in self.needed:
            path = self.directory / name
            if not path.is_file():
                raise ReslabError(
                    f"CIFAR file {path} is missing; {self.fmt.folder} must hold {self._listing()}"
                )
            with open(path, "rb") as f:
                loaded[name] = safe_unpickle(f, str(path))
        return loaded

    def _load_tarball(self) -> dict[str, Any]:
        # One pass in archive order: a .tar.gz cannot seek backwards without decompressing again.
        loaded: dict[str, Any] = {}
        try:
            with tarfile.open(self.tarball, "r:*") as tar:
                for member in tar:
                    base = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and base in self.needed and base not in loaded:
                        stream = tar.extractfile(member)
                        assert stream is not None
                        # Buffered: the unpickler reads in many small pieces.
                        buffered = io.BufferedReader(stream, buffer_size=1 << 20)  # type: ignore[arg-type]
                        loaded[base] = safe_unpickle(buffered, self.describe(base))
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise ReslabError(f"{self.tarball} is not a readable, complete .tar.gz ({quote(e)})") from None
        missing = [n for n in self.needed if n not in loaded]
        if missing:
            raise ReslabError(
                f"{self.tarball} has no {self.fmt.folder}/{missing[0]}; it must hold {self._listing()}"
            )
        return loaded

    def _listing(self) -> str:
        return ", ".join(self.needed)


def _locate(fmt: CifarFormat, path: Path) -> _Source:
    if path.is_file():
        return _Source(fmt, None, path)
    if not path.is_dir():
        raise ReslabError(
            f"CIFAR path {path} does not exist; give the {fmt.folder} folder, its parent, or "
            f"{fmt.tarball} (or set download to fetch it there)",
            params=("download",),
        )
    if (path / fmt.meta_file).is_file():
        return _Source(fmt, path, None)
    if (path / fmt.folder / fmt.meta_file).is_file():
        return _Source(fmt, path / fmt.folder, None)
    if (path / fmt.tarball).is_file():
        return _Source(fmt, None, path / fmt.tarball)
    raise ReslabError(
        f"{path} holds no {fmt.name.upper()} data: expected {fmt.folder}/{fmt.meta_file} or {fmt.tarball} "
        "(set download to fetch it there)",
        params=("download",),
    )


def _check_batch(batch: Any, where: str, fmt: CifarFormat) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(batch, dict) or "data" not in batch or fmt.labels_key not in batch:
        keys = sorted(map(str, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise ReslabError(
            f"{where} is not a {fmt.name} batch: expected keys 'data' and {fmt.labels_key!r}, got {keys}"
        )
    data, labels = batch["data"], batch[fmt.labels_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise ReslabError(
            f"{where}: 'data' must be a uint8 array (N, 3072), got {type(data).__name__} {shape}"
        )
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise ReslabError(f"{where}: {fmt.labels_key!r} must be a list of integers") from None
    if labels.shape != (len(data),):
        raise ReslabError(f"{where} holds {len(data)} images but {labels.size} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= fmt.num_classes):
        raise ReslabError(f"{where}: labels must lie in 0..{fmt.num_classes - 1}")
    return data, labels


def _check_class_names(meta: Any, where: str, fmt: CifarFormat) -> list[str]:
    names = meta.get(fmt.names_key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != fmt.num_classes:
        raise ReslabError(f"{where}: expected {fmt.num_classes} class names under {fmt.names_key!r}")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def _to_split(parts: list[tuple[np.ndarray, np.ndarray]]) -> Split:
    data = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts])
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32))  # rows are R, G, B planes
    return Split(images, torch.from_numpy(labels))


def download_cifar(fmt: CifarFormat, root: Path) -> None:
    """torchvision's downloader (URL + md5 of its CIFAR10/100 classes): fetch and extract into root."""
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import download_and_extract_archive

    cls = getattr(tvd, fmt.torchvision_class)
    try:
        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    except Exception as e:  # noqa: BLE001 - network/disk failures of any kind become one clear line
        raise ReslabError(
            f"could not download {fmt.name} into {root} ({quote(e)}); are you online? "
            f"Otherwise put {fmt.tarball} there by hand"
        ) from None


def load_cifar(name: str, path: str | Path, seed: int, spec: str, download: bool = False) -> DataBundle:
    """Load CIFAR-10 or CIFAR-100 (name 'cifar10'/'cifar100') from a folder or tarball."""
    fmt = FORMATS[name]
    path = Path(path).expanduser()
    if download and not path.is_file():
        try:
            _locate(fmt, path)
        except ReslabError:
            download_cifar(fmt, path)
    source = _locate(fmt, path)
    files = source.load()
    class_names = _check_class_names(files[fmt.meta_file], source.describe(fmt.meta_file), fmt)
    train = _to_split([_check_batch(files.pop(f), source.describe(f), fmt) for f in fmt.train_files])
    test = _to_split([_check_batch(files.pop(fmt.test_file), source.describe(fmt.test_file), fmt)])
    if len(train) == 0 or len(test) == 0:
        raise ReslabError(f"{path}: the {name} training or test set is empty")
    train, val = hold_out_validation(train, VAL_FRACTION, seed)
    return DataBundle(
        spec=spec,
        train=train,
        val=val,
        test=test,
        class_names=class_names,
        allow_flip=True,  # a mirrored car or horse is still one
        pad=PAD,
    )
