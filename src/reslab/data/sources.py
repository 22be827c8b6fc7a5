"""Data spec strings -> DataBundle. See load_data for the grammar."""

from __future__ import annotations

from pathlib import Path

from ..errors import ReslabError
from .bundle import DataBundle
from .digits import load_digits_bundle
from .options import DataOptions
from .resize import prepared

SPEC_HELP = "digits, fashion-mnist[:DIR], mnist:DIR, cifar10:DIR, cifar100:DIR, folder:DIR"
_NEEDS_DIR = ("mnist", "cifar10", "cifar100", "folder")


def load_data(
    spec: str = "digits", seed: int = 0, download: bool = False, options: DataOptions | None = None
) -> DataBundle:
    """Load a data set by spec string:

    - `digits`: scikit-learn's 8x8 digits (70/10/20 train/val/test, stratified, seeded);
    - `fashion-mnist[:DIR]`, `mnist:DIR`: IDX files, gzipped or not (5,000 of the 60,000 training images
      held out for validation; official test set);
    - `cifar10:DIR`, `cifar100:DIR`: the official python batches, a folder or the .tar.gz (45k/5k/10k);
      `download=True` fetches them into DIR first if they are not there;
    - `folder:DIR`: class sub-folders of images (train/, val/, test/ if present), in memory or
      streamed (options.mode).

    options (DataOptions): the image size, memory or stream, and the training crop, which decides how
    validation and test images are read.

    The validation split is always held out of the training data, stratified and seeded; the test set is
    never used for selection. A directory given in the spec is stored as an absolute path in
    `bundle.spec`, so a checkpoint's data can be reloaded from anywhere.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ReslabError(f"data spec must be a non-empty string such as 'digits'; use one of: {SPEC_HELP}")
    kind, sep, arg = spec.strip().partition(":")
    kind = kind.strip().lower()
    arg = arg.strip()
    if kind in _NEEDS_DIR and not arg:
        raise ReslabError(f"data spec {spec!r} needs a directory: {kind}:DIR")
    path = Path(arg).expanduser().absolute() if arg else None
    canonical = f"{kind}:{path}" if path is not None else kind
    options = options or DataOptions()
    if kind != "folder" and options.mode == "stream":
        raise ReslabError(f"data {spec!r} is held in memory; only folder:DIR can be streamed")
    if kind == "folder":
        from .folder import load_folder

        return load_folder(path, seed, canonical, options)
    return prepared(_load_tensors(kind, sep, spec, path, seed, canonical, download), options)


def _load_tensors(
    kind: str, sep: str, spec: str, path: Path | None, seed: int, canonical: str, download: bool
) -> DataBundle:
    if kind == "digits":
        if sep:
            raise ReslabError(f"data spec {spec!r}: digits is bundled and takes no directory; use 'digits'")
        return load_digits_bundle(seed)
    if kind == "fashion-mnist":
        from .idx import load_fashion_mnist

        return load_fashion_mnist(path, seed, canonical)
    if kind == "mnist":
        from .idx import load_mnist

        return load_mnist(path, seed, canonical)
    if kind in ("cifar10", "cifar100"):
        from .cifar import load_cifar

        return load_cifar(kind, path, seed, canonical, download=download)
    raise ReslabError(f"unknown data spec {spec!r}; use one of: {SPEC_HELP}")
