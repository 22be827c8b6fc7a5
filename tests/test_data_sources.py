"""Data sources load real on-disk formats (written here) with the right shapes, labels and class names."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from data_writers import (
    CIFAR10_NAMES,
    tar_folder,
    write_cifar10,
    write_cifar100,
    write_idx_set,
    write_image,
)

from reslab.data import load_data
from reslab.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, read_idx
from reslab.data.images import read_image


def _rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(row) for row in images.reshape(len(images), -1).numpy()}


def _check_train_val(bundle, train_data: np.ndarray, train_labels: np.ndarray, n_val: int) -> None:
    """Train + val is exactly the official training set (image with its label), val is stratified."""
    assert len(bundle.val) == n_val
    assert len(bundle.train) == len(train_data) - n_val
    written = {bytes(row): int(label) for row, label in zip(train_data, train_labels, strict=True)}
    for split in (bundle.train, bundle.val):
        for row, label in zip(
            split.images.reshape(len(split), -1).numpy(), split.labels.tolist(), strict=True
        ):
            assert written[bytes(row)] == label
    assert not _rows(bundle.train.images) & _rows(bundle.val.images)
    counts = torch.bincount(bundle.val.labels, minlength=bundle.num_classes)
    assert counts.min() == counts.max()  # the same number of each class


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_load(tmp_path: Path, gz: bool) -> None:
    arrays = write_idx_set(tmp_path, n_train=120, n_test=20, gz=gz)
    bundle = load_data(f"mnist:{tmp_path}", seed=0)
    assert bundle.spec == f"mnist:{tmp_path.absolute()}"
    assert bundle.class_names == [str(d) for d in range(10)]
    assert bundle.image_size == (28, 28) and bundle.in_chans == 1
    assert bundle.train.images.dtype == torch.uint8
    # 1/12 held out for validation (5,000 of 60,000 on the real set): 10 of 120 here.
    train_images = arrays["train-images-idx3-ubyte"].reshape(120, -1)
    _check_train_val(bundle, train_images, arrays["train-labels-idx1-ubyte"], n_val=10)
    # The official test set, untouched and in order.
    assert torch.equal(bundle.test.images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert torch.equal(bundle.test.labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    assert not bundle.allow_flip and 2 <= bundle.pad <= 4


def test_idx_split_is_seeded(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    a, b, c = (load_data(f"mnist:{tmp_path}", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)


def test_idx_dotted_names_and_fashion_dir(tmp_path: Path) -> None:
    """The `train-images.idx3-ubyte` spelling also loads; fashion-mnist:DIR names the ten garments."""
    arrays = write_idx_set(tmp_path, gz=False)
    for name in arrays:
        stem, kind = name.rsplit("-idx", 1)
        (tmp_path / name).rename(tmp_path / f"{stem}.idx{kind}")
    bundle = load_data(f"fashion-mnist:{tmp_path}")
    assert bundle.class_names == FASHION_MNIST_CLASSES and bundle.allow_flip
    assert read_idx(tmp_path / "t10k-labels.idx1-ubyte").tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist() -> None:
    bundle = load_data("fashion-mnist", seed=0)
    assert bundle.spec == "fashion-mnist"
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (55_000, 5_000, 10_000)
    assert bundle.train.images.shape[1:] == (1, 28, 28) and bundle.train.images.dtype == torch.uint8
    assert bundle.num_classes == 10 and bundle.class_names[0] == "T-shirt/top"
    assert torch.bincount(bundle.val.labels).tolist() == [500] * 10
    assert torch.bincount(bundle.test.labels).tolist() == [1000] * 10
    assert 0.2 < bundle.mean[0] < 0.4 and 0.25 < bundle.std[0] < 0.45


@pytest.mark.parametrize(
    "form, py2",
    [("folder", True), ("folder", False), ("parent", False), ("tarball", True), ("parent-of-tarball", False)],
)
def test_cifar10_loads(tmp_path: Path, form: str, py2: bool) -> None:
    """py2: the byte layout of the official files (Python 2 strings, numpy.core names)."""
    written = write_cifar10(tmp_path / "data", per_class_per_batch=2, n_test=20, py2=py2)
    folder = tmp_path / "data" / "cifar-10-batches-py"
    if form.endswith("tarball"):
        tar_folder(folder, tmp_path / "data" / "cifar-10-python.tar.gz")
        shutil.rmtree(folder)
    target = {
        "folder": folder,
        "parent": tmp_path / "data",
        "tarball": tmp_path / "data" / "cifar-10-python.tar.gz",
        "parent-of-tarball": tmp_path / "data",
    }[form]
    bundle = load_data(f"cifar10:{target}", seed=3)
    assert bundle.class_names == CIFAR10_NAMES
    assert bundle.train.images.shape[1:] == (3, 32, 32) and bundle.image_size == (32, 32)
    # 10% per class held out (45k/5k on the real set): 10 of 100 here.
    _check_train_val(bundle, written["train_data"], written["train_labels"], n_val=10)
    # Each row is the R, G, B planes of a 32x32 image, row-major.
    expected = torch.from_numpy(written["test_data"]).reshape(-1, 3, 32, 32)
    assert torch.equal(bundle.test.images, expected)
    assert bundle.test.images[0, 1, 0, 0] == int(written["test_data"][0, 1024])
    assert bundle.test.labels.tolist() == written["test_labels"].tolist()
    assert bundle.allow_flip and bundle.pad == 4


@pytest.mark.parametrize("as_tar, py2", [(False, False), (True, True)])
def test_cifar100_loads(tmp_path: Path, as_tar: bool, py2: bool) -> None:
    written = write_cifar100(tmp_path, per_class=10, n_test=200, py2=py2)
    target = tmp_path
    if as_tar:
        target = tar_folder(tmp_path / "cifar-100-python", tmp_path / "c100.tar.gz")
        shutil.rmtree(tmp_path / "cifar-100-python")
    bundle = load_data(f"cifar100:{target}", seed=0)
    assert bundle.num_classes == 100 and bundle.class_names == written["names"]
    _check_train_val(bundle, written["train_data"], written["train_labels"], n_val=100)
    assert torch.equal(bundle.test.images, torch.from_numpy(written["test_data"]).reshape(-1, 3, 32, 32))
    # Fine labels, not coarse ones.
    assert bundle.test.labels.tolist() == [i % 100 for i in range(200)]


def test_cifar_download_uses_torchvision_downloader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--download calls torchvision's downloader with its CIFAR-10 URL and md5 (stubbed: no network)."""
    import torchvision.datasets.utils as tv_utils
    from torchvision.datasets import CIFAR10

    source = tmp_path / "source"
    write_cifar10(source)
    archive = tar_folder(source / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    calls = []

    def fake_download(url: str, root: str, filename: str, md5: str) -> None:
        calls.append((url, filename, md5))
        Path(root).mkdir(parents=True, exist_ok=True)
        shutil.copy(archive, Path(root) / filename)

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    root = tmp_path / "new-root"
    bundle = load_data(f"cifar10:{root}", download=True)
    assert calls == [(CIFAR10.url, CIFAR10.filename, CIFAR10.tgz_md5)]
    assert len(bundle.train) + len(bundle.val) == 100
    load_data(f"cifar10:{root}", download=True)  # already there: no second download
    assert len(calls) == 1


def _gray(value: int, size: tuple[int, int] = (8, 8)) -> np.ndarray:
    return np.full(size, value, dtype=np.uint8) + np.arange(size[1], dtype=np.uint8)


def test_folder_seeded_split_gray(tmp_path: Path) -> None:
    for c, name in enumerate(["cat", "dog", "eel"]):
        for i in range(10):
            write_image(tmp_path / name / f"{i}.png", _gray(20 * c + i))
    (tmp_path / "cat" / "notes.txt").write_text("not an image, skipped")
    bundle = load_data(f"folder:{tmp_path}", seed=0)
    assert bundle.class_names == ["cat", "dog", "eel"]
    assert bundle.in_chans == 1 and bundle.image_size == (8, 8)
    # 70% / 10% / 20% per class.
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (21, 3, 6)
    for split in (bundle.train, bundle.val, bundle.test):
        for image, label in zip(split.images, split.labels, strict=True):
            i = int(image[0, 0, 0]) - 20 * int(label)
            assert 0 <= i < 10 and torch.equal(image[0], torch.from_numpy(_gray(20 * int(label) + i)))
    assert torch.equal(load_data(f"folder:{tmp_path}", seed=0).val.images, bundle.val.images)


def test_folder_with_split_folders_rgb_and_mixed_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 1), ("test", 2)):
        for name in ("a", "b"):
            for i in range(n):
                write_image(tmp_path / split / name / f"{i}.png", _gray(10 * i))
    colour = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    write_image(tmp_path / "train" / "b" / "colour.jpg", colour)  # one RGB image makes the set RGB
    write_image(tmp_path / "test" / "a" / "wide.png", np.zeros((8, 16), dtype=np.uint8))
    bundle = load_data(f"folder:{tmp_path}")
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (9, 2, 5)
    assert bundle.in_chans == 3 and bundle.image_size == (8, 8)  # the most common size
    assert bundle.test.labels.tolist().count(0) == 3
    # A grayscale image becomes three equal channels.
    first = bundle.val.images[0]
    assert torch.equal(first[0], first[1]) and torch.equal(first[1], first[2])


def test_folder_train_only_holds_out_val_and_test(tmp_path: Path) -> None:
    for name in ("a", "b"):
        for i in range(10):
            write_image(tmp_path / "train" / name / f"{i}.png", _gray(i))
    bundle = load_data(f"folder:{tmp_path}")
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (14, 2, 4)


def test_read_image_converts_channels_and_size(tmp_path: Path) -> None:
    rgb = np.zeros((20, 40, 3), dtype=np.uint8)
    rgb[:, 10:30] = (255, 0, 0)  # a red centre square between two black bands
    write_image(tmp_path / "x.png", rgb)
    colour = read_image(tmp_path / "x.png", in_chans=3, image_size=(10, 10))
    assert colour.shape == (3, 10, 10) and colour.dtype == torch.uint8
    # Aspect kept: the centre 20x20 (red) is cut out and scaled, not the whole image squeezed (which
    # would put the black bands in the outer columns); the filter blends the edge columns only a little.
    assert (colour[0, :, 1:-1] == 255).all() and colour[0].min() > 200 and (colour[1:] == 0).all()
    gray = read_image(tmp_path / "x.png", in_chans=1, image_size=20)
    assert gray.shape == (1, 20, 20) and 70 <= int(gray[0, 5, 5]) <= 80  # ITU-R 601 luma of pure red
