"""Every bad data input ends in one ReslabError that names the culprit (the CLI prints it, exit 2)."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from data_writers import idx_bytes, tar_folder, write_cifar10, write_idx_set, write_image

from reslab.data import load_data
from reslab.data.idx import read_idx
from reslab.data.images import read_image
from reslab.errors import ReslabError


def _fails(spec: str, *fragments: str, **kwargs) -> str:
    with pytest.raises(ReslabError) as info:
        load_data(spec, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- spec strings and directories -------------------------------------------------------------


@pytest.mark.parametrize("spec", ["imagenet-tiny", "cifar:x", "svhn:/data", ""])
def test_unknown_spec_lists_the_valid_ones(spec: str) -> None:
    _fails(spec, "digits", "fashion-mnist[:DIR]", "mnist:DIR", "cifar10:DIR", "cifar100:DIR", "folder:DIR")


@pytest.mark.parametrize("spec", ["mnist", "cifar10", "cifar100:", "folder"])
def test_spec_without_its_directory(spec: str) -> None:
    _fails(spec, "needs a directory")


def test_digits_takes_no_directory() -> None:
    _fails("digits:/tmp", "takes no directory")


@pytest.mark.parametrize("kind", ["mnist", "fashion-mnist", "cifar10", "cifar100", "folder"])
def test_missing_directory(tmp_path: Path, kind: str) -> None:
    _fails(f"{kind}:{tmp_path / 'nope'}", "does not exist", str(tmp_path / "nope"))


@pytest.mark.parametrize("kind", ["mnist", "cifar10", "cifar100", "folder"])
def test_empty_directory(tmp_path: Path, kind: str) -> None:
    _fails(f"{kind}:{tmp_path}", str(tmp_path))


# --- IDX ----------------------------------------------------------------------------------------


def test_idx_missing_file(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    _fails(f"mnist:{tmp_path}", "t10k-labels-idx1-ubyte")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated(tmp_path: Path, gz: bool) -> None:
    write_idx_set(tmp_path, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _fails(f"mnist:{tmp_path}", name, "truncated")


def test_idx_truncated_header(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"\0\0\x08\x03\0\0")
    with pytest.raises(ReslabError, match="truncated"):
        read_idx(tmp_path / "x")


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not an IDX file"),
        (b"hello, this is text and not an IDX file", "not an IDX file"),
        (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + bytes(4), "float32"),
        (idx_bytes(np.zeros((3, 2), dtype=np.uint8)) + b"extra", "longer than its dimensions"),
    ],
)
def test_idx_wrong_format(tmp_path: Path, content: bytes, fragment: str) -> None:
    write_idx_set(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(content)
    _fails(f"mnist:{tmp_path}", "train-labels-idx1-ubyte", fragment)


def test_idx_huge_declared_size_refused_before_allocating(tmp_path: Path) -> None:
    header = bytes([0, 0, 8, 3]) + b"".join((2**20).to_bytes(4, "big") for _ in range(3))
    (tmp_path / "x.gz").write_bytes(gzip.compress(header + bytes(10)))
    with pytest.raises(ReslabError, match="truncated or has a wrong header"):
        read_idx(tmp_path / "x.gz")


def test_idx_damaged_gzip(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[20:40] = bytes(20)  # stomp on the deflate stream
    path.write_bytes(bytes(data))
    _fails(f"mnist:{tmp_path}", "t10k-images-idx3-ubyte.gz")


def test_idx_label_count_mismatch(tmp_path: Path) -> None:
    write_idx_set(tmp_path, n_train=120, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(119, dtype=np.uint8)))
    _fails(f"mnist:{tmp_path}", "120 images", "119 labels")


def test_idx_images_with_wrong_dimensions(tmp_path: Path) -> None:
    write_idx_set(tmp_path, gz=False)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((120, 784), dtype=np.uint8)))
    _fails(f"mnist:{tmp_path}", "train-images-idx3-ubyte", "need 3")


def test_fashion_labels_out_of_range(tmp_path: Path) -> None:
    write_idx_set(tmp_path, n_test=20, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(20, 12, dtype=np.uint8)))
    _fails(f"fashion-mnist:{tmp_path}", "label 12", "10 classes")


# --- CIFAR ----------------------------------------------------------------------------------------


class RunsCode:
    """Unpickling this calls os.system: what a malicious 'data batch' would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps({"data": RunsCode(marker), "labels": []}, protocol=2))
    _fails(f"cifar10:{tmp_path}", "refusing", "data_batch_3", "system")
    assert not marker.exists()
    # The same pickle inside a tarball is refused too.
    tar_folder(tmp_path / "cifar-10-batches-py", tmp_path / "evil.tar.gz")
    _fails(f"cifar10:{tmp_path / 'evil.tar.gz'}", "refusing", "data_batch_3")
    assert not marker.exists()


def test_cifar_codecs_other_than_latin1_refused(tmp_path: Path) -> None:
    import _codecs

    write_cifar10(tmp_path)

    class Rot13:
        def __reduce__(self):
            return (_codecs.encode, ("abc", "rot13"))

    class Latin1:
        def __reduce__(self):
            return (_codecs.encode, ("abc", "latin1"))

    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps(Rot13(), protocol=2))
    # The refusal itself, not merely some error about the file: the message names the codec refused.
    _fails(f"cifar10:{tmp_path}", str(meta), "refusing _codecs.encode with encoding 'rot13'")
    # latin1 (how Python 3 pickles bytes at protocol 2) is let through: the unpickling succeeds and the
    # error is about the content (a str where the class names should be), with no refusal.
    meta.write_bytes(pickle.dumps(Latin1(), protocol=2))
    message = _fails(f"cifar10:{tmp_path}", str(meta), "label_names")
    assert "refusing" not in message


def test_cifar_truncated_batch(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:1000])
    _fails(f"cifar10:{tmp_path}", "data_batch_2", "truncated")


def test_cifar_truncated_tarball(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "src")
    archive = tar_folder(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    _fails(f"cifar10:{archive}", str(archive))


def test_cifar_tarball_that_is_not_a_tarball(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"this is not a tar file at all" * 10)
    _fails(f"cifar10:{archive}", str(archive), "not a readable")
    _fails(f"cifar10:{tmp_path}", str(archive), "not a readable")


def test_cifar_tarball_missing_a_batch(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "src")
    (tmp_path / "src" / "cifar-10-batches-py" / "test_batch").unlink()
    archive = tar_folder(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "c.tar.gz")
    _fails(f"cifar10:{archive}", "test_batch")


@pytest.mark.parametrize(
    "obj, fragment",
    [
        ({"labels": [0]}, "expected keys"),
        ([1, 2, 3], "expected keys"),
        ({"data": np.zeros((2, 100), dtype=np.uint8), "labels": [0, 1]}, "(N, 3072)"),
        ({"data": np.zeros((2, 3072), dtype=np.float32), "labels": [0, 1]}, "uint8"),
        ({"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [0]}, "1 labels"),
        ({"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [0, 10]}, "0..9"),
    ],
)
def test_cifar_wrong_format_batch(tmp_path: Path, obj: object, fragment: str) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps(obj, protocol=2))
    _fails(f"cifar10:{tmp_path}", "data_batch_1", fragment)


def test_cifar_not_a_pickle(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"GIF89a not a pickle")
    _fails(f"cifar10:{tmp_path}", "test_batch")


def test_cifar_meta_with_wrong_class_names(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a"]}))
    _fails(f"cifar10:{tmp_path}", "batches.meta", "10 class names")


def test_cifar100_given_cifar10_files(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    _fails(f"cifar100:{tmp_path}", "cifar-100-python")


def test_cifar_download_failure_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    _fails(f"cifar10:{tmp_path}", "could not download", "online", download=True)


# --- image folders and image files ---------------------------------------------------------------


def _two_classes(root: Path, n: int = 10) -> None:
    for name in ("a", "b"):
        for i in range(n):
            write_image(root / name / f"{i}.png", np.full((6, 6), i, dtype=np.uint8))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_folder_undecodable_image(tmp_path: Path, damage: str) -> None:
    _two_classes(tmp_path)
    bad = tmp_path / "b" / "3.png"
    if damage == "garbage":
        bad.write_bytes(b"definitely not a png")
    else:
        write_image(bad, np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
        bad.write_bytes(bad.read_bytes()[:200])
    _fails(f"folder:{tmp_path}", "cannot decode", str(bad))


def test_folder_without_class_folders(tmp_path: Path) -> None:
    write_image(tmp_path / "loose.png", np.zeros((4, 4), dtype=np.uint8))
    _fails(f"folder:{tmp_path}", "no class sub-folders")


def test_folder_with_an_empty_class(tmp_path: Path) -> None:
    _two_classes(tmp_path)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "readme.txt").write_text("no images here")
    _fails(f"folder:{tmp_path}", "holds no image files", str(tmp_path / "c"))


def test_folder_too_small_to_split(tmp_path: Path) -> None:
    _two_classes(tmp_path, n=2)
    _fails(f"folder:{tmp_path}", "split is empty")


def test_folder_test_class_unknown_to_training(tmp_path: Path) -> None:
    _two_classes(tmp_path / "train")
    write_image(tmp_path / "test" / "zebra" / "0.png", np.zeros((6, 6), dtype=np.uint8))
    _fails(
        f"folder:{tmp_path}",
        "its class folders differ from",
        "it lacks a, b and has zebra, which train/ lacks",
    )


def test_folder_val_classes_must_be_trains(tmp_path: Path) -> None:
    _two_classes(tmp_path / "train")
    write_image(tmp_path / "val" / "a" / "0.png", np.zeros((6, 6), dtype=np.uint8))
    _fails(f"folder:{tmp_path}", str(tmp_path / "val"), "its class folders differ from", "it lacks b")


def test_folder_with_one_class(tmp_path: Path) -> None:
    for i in range(10):
        write_image(tmp_path / "cats" / f"{i}.png", np.full((6, 6), i, dtype=np.uint8))
    _fails(f"folder:{tmp_path}", "has one class folder (cats); a classifier needs two or more")


def test_folder_that_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _two_classes(tmp_path)
    real = Path.iterdir

    def refuse(self: Path):
        if self == tmp_path:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "iterdir", refuse)  # the tests run as root, which chmod cannot stop
    _fails(f"folder:{tmp_path}", f"cannot read the folder {tmp_path}: Permission denied")


def test_folder_empty_test_folder(tmp_path: Path) -> None:
    _two_classes(tmp_path / "train")
    (tmp_path / "test").mkdir()
    _fails(f"folder:{tmp_path}", "test split is empty")


def test_read_image_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ReslabError, match="cannot decode image .*bad.jpg"):
        read_image(tmp_path / "bad.jpg", 3, 32)
    with pytest.raises(ReslabError, match="does not exist"):
        read_image(tmp_path / "missing.png", 3, 32)
    with pytest.raises(ReslabError, match="is a directory"):
        read_image(tmp_path, 3, 32)
    write_image(tmp_path / "ok.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ReslabError, match="1 or 3 channels"):
        read_image(tmp_path / "ok.png", 4, 32)


def test_cli_prints_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the CLI."""
    from reslab.cli import main

    write_idx_set(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    code = main(["train", "--data", f"mnist:{tmp_path}", "--epochs", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "train-images-idx3-ubyte.gz" in err


def test_folder_too_large_for_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forced into memory: one line that says to stream it. Left to auto: it is streamed."""
    import reslab.data.folder as folder
    from reslab.data.options import DataOptions

    _two_classes(tmp_path)
    monkeypatch.setattr(folder, "_physical_memory", lambda: 1000)  # 14 training images of 6x6: 504 B > 500
    _fails(
        f"folder:{tmp_path}", "14 images of 1x6x6", "--data-mode stream", options=DataOptions(mode="memory")
    )
    assert load_data(f"folder:{tmp_path}").streamed
