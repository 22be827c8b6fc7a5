"""`folder:DIR`: one sub-folder per class, holding image files (nested folders included), either decoded
once into uint8 tensors (memory) or decoded batch by batch by DataLoader workers (stream, data/stream.py).
DataOptions.mode chooses; auto keeps the folder in memory when its decoded images take at most
MEMORY_SHARE of physical memory.

Splits: if DIR has a `train/` folder, its class folders are the training set, and `val/` (or `valid/`,
`validation/`) and `test/` are used when present; a missing `val/` is 10% of `train/`, a missing `test/` is
20% of `train/` (per class, seeded). Without a `train/` folder, DIR's class folders are split 70% train /
10% val / 20% test, per class and seeded.

Channels: grayscale (1) if every image is grayscale, else RGB (3). Size: --image-size S, else the most
common size of the training images (ties: the larger area); other images are resized to it keeping their
aspect ratio and centre-cropped (see images.py). A folder that may be streamed surveys a sample of
SURVEY_SAMPLE training images for both. Validation and test images are read with the evaluation
transform (DataOptions.evaluation). Flips are allowed (photos of objects); pad is 1/8 of the shorter
side (4 for 32x32, as in the paper).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..errors import ReslabError
from .bundle import DataBundle, FileSplit, Split, stratified_split
from .eval_transform import EvalTransform
from .images import IMAGE_EXTENSIONS, is_gray, open_image
from .options import DataOptions
from .stream import sample_stats

# auto mode keeps a folder in memory when its decoded images take at most this share of physical memory.
MEMORY_SHARE = 1 / 8
# Images whose headers are read to choose channels and size when the folder may be streamed, and images
# decoded to measure a streamed set's mean and std.
SURVEY_SAMPLE = 2000
STATS_SAMPLE = 500
VAL_FRACTION = 0.1
TEST_FRACTION = 0.2
VAL_NAMES = ("val", "valid", "validation")


def _visible_dirs(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:  # permissions, a vanished mount: one line, not a traceback
        raise ReslabError(f"cannot read the folder {directory}: {exc.strerror or exc}") from None


def scan_classes(directory: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files (by extension; hidden files skipped), for DIR's sub-folders."""
    classes = {}
    for class_dir in _visible_dirs(directory):
        try:
            files = sorted(
                p
                for p in class_dir.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
            )
        except OSError as exc:
            raise ReslabError(f"cannot read the folder {class_dir}: {exc.strerror or exc}") from None
        classes[class_dir.name] = files
    return classes


def _files_and_labels(
    classes: dict[str, list[Path]], class_names: list[str], where: Path
) -> tuple[list[Path], list[int]]:
    index = {name: i for i, name in enumerate(class_names)}
    files: list[Path] = []
    labels: list[int] = []
    for name, paths in classes.items():
        if name not in index:
            raise ReslabError(
                f"{where / name}: class {name!r} is not among the training classes {class_names}"
            )
        files += paths
        labels += [index[name]] * len(paths)
    return files, labels


def _survey(paths: list[Path]) -> tuple[list[tuple[int, int]], bool]:
    """Each image's (H, W), and whether every image is grayscale (headers only, no decoding)."""
    sizes = []
    gray = True
    for path in paths:
        with open_image(path) as image:
            sizes.append((image.height, image.width))
            gray = gray and is_gray(image)
    return sizes, gray


def _most_common(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    counts = Counter(sizes)
    return max(counts, key=lambda s: (counts[s], s[0] * s[1]))


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def choose_mode(mode: str, decoded_bytes: int) -> str:
    """auto: in memory when the decoded set takes at most MEMORY_SHARE of this machine's memory (it is
    faster: no decoding after the first pass), else streamed."""
    if mode != "auto":
        return mode
    memory = _physical_memory()
    return "memory" if memory is None or decoded_bytes <= memory * MEMORY_SHARE else "stream"


def _decode_all(
    paths: list[Path], read: Callable[[Path], torch.Tensor], shape: tuple[int, int, int]
) -> torch.Tensor:
    needed = len(paths) * shape[0] * shape[1] * shape[2]
    memory = _physical_memory()
    # Refuse a split that would take over half the machine rather than be killed by the OOM killer.
    if memory is not None and needed > memory // 2:
        raise ReslabError(
            f"{len(paths)} images of {shape[0]}x{shape[1]}x{shape[2]} need {needed / 2**30:.1f} GiB as one "
            f"uint8 tensor, too much for this machine's {memory / 2**30:.0f} GiB; stream the folder "
            "instead (--data-mode stream)"
        )
    images = torch.empty((len(paths), *shape), dtype=torch.uint8)
    for i, path in enumerate(paths):
        images[i] = read(path)
    return images


def _check_nonempty(directory: Path, classes: dict[str, list[Path]]) -> None:
    if not classes:
        raise ReslabError(f"{directory} has no class sub-folders; folder:DIR needs DIR/<class>/<image files>")
    if len(classes) == 1:
        raise ReslabError(
            f"{directory} has one class folder ({next(iter(classes))}); a classifier needs two or more"
        )
    empty = [name for name, files in classes.items() if not files]
    if empty:
        raise ReslabError(
            f"class folder {directory / empty[0]} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        )


def _check_same_classes(split_dir: Path, classes: set[str], train_dir: Path, train_classes: set[str]) -> None:
    if classes == train_classes or not classes:  # no class folders at all: "the split is empty" says it
        return
    missing, extra = sorted(train_classes - classes), sorted(classes - train_classes)
    differences = ([f"lacks {', '.join(missing)}"] if missing else []) + (
        [f"has {', '.join(extra)}, which {train_dir.name}/ lacks"] if extra else []
    )
    raise ReslabError(
        f"{split_dir}: its class folders differ from {train_dir}'s: it {' and '.join(differences)}"
    )


@dataclass
class _Index:
    """Every image file of the folder (train/ first, then val/ and test/ when they exist), its label, and
    which files each split takes."""

    files: list[Path]
    labels: list[int]
    parts: dict[str, list[int]]
    class_names: list[str]


def load_folder(
    directory: str | Path, seed: int, spec: str, options: DataOptions | None = None
) -> DataBundle:
    options = options or DataOptions()
    index = _index_folder(Path(directory).expanduser(), seed, spec)
    files, train = index.files, index.parts["train"]
    in_chans, native = _survey_train(files, train, options, seed)
    height, width = options.size(native)
    mode = choose_mode(options.mode, len(files) * in_chans * height * width)
    if mode == "memory" and options.mode == "auto" and len(train) > SURVEY_SAMPLE:
        in_chans, native = _survey_train(files, train, replace(options, mode="memory"), seed)
    size = options.size(native)
    evaluation = options.evaluation(in_chans, size)
    labels = torch.tensor(index.labels, dtype=torch.long)
    common = dict(spec=spec, class_names=index.class_names, allow_flip=True, pad=max(1, min(size) // 8))
    if mode == "stream":
        splits = {
            name: FileSplit([str(files[i]) for i in idx], labels[idx], in_chans, size)
            for name, idx in index.parts.items()
        }
        mean, std = sample_stats(splits["train"], EvalTransform.fit(in_chans, size), STATS_SAMPLE, seed)
        return DataBundle(**splits, **common, mean=mean, std=std, eval_transform=evaluation)
    reads = {"train": EvalTransform.fit(in_chans, size), "val": evaluation, "test": evaluation}
    splits = {
        name: Split(_decode_all([files[i] for i in idx], reads[name].read, (in_chans, *size)), labels[idx])
        for name, idx in index.parts.items()
    }
    return DataBundle(**splits, **common, eval_transform=evaluation)


def _index_folder(directory: Path, seed: int, spec: str) -> _Index:
    if not directory.is_dir():
        raise ReslabError(f"data directory {directory} does not exist (spec {spec!r})")
    split_dirs = {p.name.lower(): p for p in _visible_dirs(directory)}
    if "train" in split_dirs:
        train_dir = split_dirs["train"]
        val_dir = next((split_dirs[n] for n in VAL_NAMES if n in split_dirs), None)
        test_dir = split_dirs.get("test")
    else:
        train_dir, val_dir, test_dir = directory, None, None
    train_classes = scan_classes(train_dir)
    _check_nonempty(train_dir, train_classes)
    class_names = sorted(train_classes)
    files, labels = _files_and_labels(train_classes, class_names, train_dir)
    held_out = (TEST_FRACTION if test_dir is None else 0.0, VAL_FRACTION if val_dir is None else 0.0)
    test_idx, val_idx, train_idx = stratified_split(torch.tensor(labels), held_out, seed)
    parts = {"train": train_idx.tolist(), "val": val_idx.tolist(), "test": test_idx.tolist()}
    for name, split_dir in (("val", val_dir), ("test", test_dir)):
        if split_dir is None:
            continue
        classes = scan_classes(split_dir)
        _check_same_classes(split_dir, set(classes), train_dir, set(class_names))
        extra_files, extra_labels = _files_and_labels(classes, class_names, split_dir)
        parts[name] = list(range(len(files), len(files) + len(extra_files)))
        files += extra_files
        labels += extra_labels
    for name, idx in parts.items():
        if not idx:
            raise ReslabError(
                f"{directory}: the {name} split is empty; add images (a few per class at least) or "
                f"give {name}/ its own folder"
            )
    return _Index(files, labels, parts, class_names)


def _survey_train(
    files: list[Path], train: list[int], options: DataOptions, seed: int
) -> tuple[int, tuple[int, int]]:
    """Channels (1 if every surveyed image is grayscale) and the most common size of the training images:
    all of them for an in-memory set, a seeded sample of SURVEY_SAMPLE when it may be streamed."""
    if options.mode != "memory" and len(train) > SURVEY_SAMPLE:
        generator = torch.Generator().manual_seed(seed)
        train = [train[i] for i in torch.randperm(len(train), generator=generator)[:SURVEY_SAMPLE]]
    sizes, gray = _survey([files[i] for i in train])
    return (1 if gray else 3), _most_common(sizes)
