"""Streamed image folders: the DataLoader path gives what the in-memory path gives, shards a global batch
into disjoint rank slices, does not depend on the worker count, resumes bit-identically, skips and
counts undecodable files (or stops with one line under --strict-data); and the training crops'
geometry, --image-size on every source, and the evaluation transform a checkpoint keeps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from data_writers import two_class_folder, write_image

import reslab
from reslab.checkpoint import load_checkpoint
from reslab.classifier import load_classifier
from reslab.cli import main
from reslab.data import load_data
from reslab.data.crops import crop_resize_batch, random_resized_boxes, scale_boxes
from reslab.data.eval_transform import EvalTransform
from reslab.data.loaders import evaluation_batches, training_batches
from reslab.data.options import DataOptions
from reslab.data.stream import ShardedBatchSampler, StreamSettings
from reslab.errors import ReslabError

STREAM = DataOptions(mode="stream")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return two_class_folder(tmp_path_factory.mktemp("stream") / "digits", per_class=40, size=16)


@pytest.fixture(scope="module")
def indexed_folder(tmp_path_factory) -> Path:
    """24 grey PNGs whose every pixel is the image's number (0-23): a batch shows which images it holds."""
    root = tmp_path_factory.mktemp("indexed")
    for i in range(24):
        write_image(root / "train" / f"c{i % 2}" / f"{i:02d}.png", np.full((4, 4), i, dtype=np.uint8))
    for split in ("val", "test"):
        for c in (0, 1):
            write_image(root / split / f"c{c}" / "x.png", np.zeros((4, 4), dtype=np.uint8))
    return root


def _batches(bundle, workers: int, seed: int = 0, rank: int = 0, world_size: int = 1, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    stream = StreamSettings(workers=workers)
    return training_batches(
        bundle, 8, generator=generator, crop="pad", stream=stream, rank=rank, world_size=world_size, **kwargs
    )


def _ids(x: torch.Tensor, bundle) -> list[int]:
    """The image numbers in an indexed_folder batch (undoing the normalisation)."""
    mean, std = bundle.mean[0], bundle.std[0]
    return ((x[:, 0, 1, 1] * std + mean) * 255).round().long().tolist()  # inside any 1-px pad-crop


def test_streamed_evaluation_batches_equal_the_in_memory_ones(folder: Path) -> None:
    memory = load_data(f"folder:{folder}", options=DataOptions(mode="memory"))
    stream = load_data(f"folder:{folder}", options=STREAM)
    assert stream.streamed and not memory.streamed
    assert (stream.in_chans, stream.image_size) == (memory.in_chans, memory.image_size) == (1, (16, 16))
    assert len(stream.train) == len(memory.train) and len(stream.test) == len(memory.test)
    mean, std = memory.mean, memory.std  # the streamed set's own are measured on a sample
    a = evaluation_batches(memory.test, 10, mean, std)
    b = evaluation_batches(stream.test, 10, mean, std, transform=stream.evaluation, device=CPU)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_shards_are_disjoint_cover_the_epoch_and_repeat_for_a_seed(indexed_folder: Path) -> None:
    bundle = load_data(f"folder:{indexed_folder}", options=STREAM)
    whole = [_ids(x, bundle) for x, _ in _batches(bundle, workers=0)]
    ranks = [[_ids(x, bundle) for x, _ in _batches(bundle, 0, rank=r, world_size=2)] for r in (0, 1)]
    seen = sorted(i for batch in whole for i in batch)
    assert seen == list(range(24))  # drop_last: 24 = 3 batches of 8
    for one, zero_part, one_part in zip(whole, *ranks, strict=True):
        assert zero_part + one_part == one and not set(zero_part) & set(one_part)
    assert [_ids(x, bundle) for x, _ in _batches(bundle, 0)] == whole
    assert [_ids(x, bundle) for x, _ in _batches(bundle, 0, seed=1)] != whole


def test_sampler_slices_each_global_batch_like_tensor_split() -> None:
    samplers = [
        ShardedBatchSampler(10, 4, shuffle=False, drop_last=False, rank=r, world_size=3) for r in range(3)
    ]
    per_rank = [[[i for i, _ in batch] for batch in sampler] for sampler in samplers]
    assert per_rank == [[[0, 1], [4, 5], [8]], [[2], [6], [9]], [[3], [7], []]]


def test_worker_count_does_not_change_the_augmented_batches(folder: Path) -> None:
    bundle = load_data(f"folder:{folder}", options=STREAM)
    inline = list(_batches(bundle, workers=0, random_erase=0.5))
    two = list(_batches(bundle, workers=2, random_erase=0.5))
    assert len(inline) == len(two) == 56 // 8
    for (xa, ya), (xb, yb) in zip(inline, two, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_streamed_run_resumes_bit_identically(folder: Path, tmp_path: Path, monkeypatch) -> None:
    settings = dict(
        model="resnet8", data=f"folder:{folder}", data_mode="stream", workers=0, batch_size=16,
        precision="fp32", device="cpu", threads=1, quiet=True, precise_bn=0, crop="random-resized",
    )  # fmt: skip
    full = reslab.train(out=tmp_path / "full", epochs=2, **settings)
    import reslab.training.engine as engine

    # The same two-epoch run, stopped after its first epoch, then resumed (with another worker count).

    original = engine.Trainer._fit

    def one_epoch(self, progress, log):
        self.epochs = 1
        return original(self, progress, log)

    with monkeypatch.context() as patch:
        patch.setattr(engine.Trainer, "_fit", one_epoch)
        reslab.train(out=tmp_path / "cut", epochs=2, **settings)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    resumed = reslab.train(resume=tmp_path / "cut", workers=1, quiet=True)
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.test == full.test
    assert [m["train_loss"] for m in resumed.metrics] == [m["train_loss"] for m in full.metrics]


@pytest.fixture
def damaged_folder(folder: Path, tmp_path: Path) -> Path:
    import shutil

    copy = shutil.copytree(folder, tmp_path / "damaged")
    (copy / "0" / "zz-broken.png").write_bytes(b"not a png at all")
    (copy / "1" / "zz-truncated.png").write_bytes(
        (folder / "1" / sorted(p.name for p in (folder / "1").iterdir())[0]).read_bytes()[:40]
    )
    return copy


def _train_words(data: Path, out: Path, *extra: str) -> list[str]:
    words = [
        "train",
        "--data",
        f"folder:{data}",
        "--data-mode",
        "stream",
        "--workers",
        "1",
        "--model",
        "resnet8",
    ]
    return words + [
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--precise-bn",
        "off",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def test_undecodable_images_are_skipped_and_counted_once_an_epoch(damaged_folder, tmp_path, capfd) -> None:
    assert main(_train_words(damaged_folder, tmp_path / "run")) == 0
    err = capfd.readouterr().err
    # Seed 0 puts the truncated file in train (both epochs) and the broken one in test (its warning).
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert [line.split(":")[1].strip() for line in warnings] == ["epoch 1", "epoch 2", "test"], err
    assert all("could not be decoded" in line for line in warnings)
    assert "zz-truncated.png" in warnings[0] and "zz-broken.png" in warnings[2]
    assert "Traceback" not in err
    assert json.loads((tmp_path / "run" / "test.json").read_text())["n"] > 0


@pytest.mark.parametrize("world_size", [1, 2])
def test_a_slice_with_no_decodable_image_keeps_ddp_ranks_in_step(indexed_folder, world_size) -> None:
    bundle = load_data(f"folder:{indexed_folder}", options=STREAM)
    batches = _batches(bundle, workers=0, world_size=world_size)
    good = torch.full((2, 1, 4, 4), 7, dtype=torch.uint8)
    failed = [(5, "cannot decode image a.png"), (6, "cannot decode image b.png")]
    empty = (torch.tensor([], dtype=torch.long), torch.empty(0, dtype=torch.uint8), failed)
    batches.loader = [(torch.tensor([7, 9]), good, []), empty, (torch.tensor([1, 3]), good, [])]
    out = list(batches)
    # One process skips the slice; each DDP rank repeats its previous one, so all take 3 steps.
    assert len(out) == (3 if world_size == 2 else 2)
    if world_size == 2:
        assert out[1][0] is out[0][0] and out[1][1] is out[0][1]
    assert len(batches.skipped) == 2
    batches.loader = [empty]  # nothing to repeat yet: one line under DDP, not a hang
    if world_size == 1:
        assert list(batches) == []
    else:
        with pytest.raises(ReslabError, match="process 0: no image of its first training batch"):
            list(batches)


def test_strict_data_stops_with_one_line_and_keeps_nothing_half_written(
    damaged_folder, tmp_path, capfd
) -> None:
    code = main(_train_words(damaged_folder, tmp_path / "run", "--strict-data"))
    err = capfd.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "cannot decode image" in err and "--strict-data" in err, err
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize(
    ("words", "fragment"),
    [
        (["--data", "digits", "--data-mode", "stream"], "only folder:DIR can be streamed"),
        (["--image-size", "0"], "image-size"),
        (["--workers", "-1"], "workers"),
    ],
)
def test_bad_data_settings_are_one_line(words, fragment, tmp_path, capfd) -> None:
    code = main(["train", *words, "--epochs", "1", "--out", str(tmp_path / "r")])
    err = capfd.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and fragment in err, err


def test_random_resized_boxes_follow_torchvision_s_ranges() -> None:
    generator = torch.Generator().manual_seed(0)
    top, left, h, w = random_resized_boxes(2000, 60, 80, generator).unbind(1)
    assert bool((top >= 0).all() and (left >= 0).all() and (top + h <= 60).all() and (left + w <= 80).all())
    area = h * w / (60 * 80)
    assert area.min() >= 0.08 * 0.9 and area.max() <= 1.0  # rounding of the sides
    ratio = w / h
    assert ratio.min() >= 0.75 * 0.9 and ratio.max() <= 4 / 3 * 1.1
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)
    theirs = [
        RandomResizedCrop.get_params(torch.zeros(1, 60, 80), (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(2000)
    ]
    their_area = sum(h * w for _, _, h, w in theirs) / (2000 * 60 * 80)  # measured 0.439; ours 0.447
    assert float(area.mean()) == pytest.approx(their_area, abs=0.03)


def test_scale_boxes_are_the_paper_s_224_of_256_to_480() -> None:
    generator = torch.Generator().manual_seed(0)
    top, left, h, w = scale_boxes(1000, 100, 150, generator).unbind(1)
    assert torch.equal(h, w)
    assert h.min() >= 100 * 224 / 480 - 1e-9 and h.max() <= 100 * 224 / 256 + 1e-9
    assert bool((top + h <= 100).all() and (left + w <= 150).all())


def test_crop_resize_of_the_whole_image_is_the_image(monkeypatch) -> None:
    """roi_align's geometry: a box covering the image, resized to its own size, returns its pixels."""
    import reslab.data.crops as crops

    images = torch.randint(0, 256, (3, 1, 12, 12), dtype=torch.uint8)
    boxes = torch.tensor([[0.0, 0.0, 12.0, 12.0]] * 3, dtype=torch.float64)
    monkeypatch.setattr(crops, "sample_boxes", lambda *args, **kwargs: boxes)
    out = crop_resize_batch(images, "random-resized", None)
    assert torch.allclose(out, images.float(), atol=1e-3)


def test_centre_crop_evaluation_reads_the_middle_seven_eighths(tmp_path: Path) -> None:
    """64x48 image, S=16: shorter side to round(16 / 0.875) = 18, centre 16x16: a 1-px frame is cut off."""
    picture = np.zeros((48, 64, 3), dtype=np.uint8)
    picture[:, :8] = 255  # a white band on the left: outside the centre crop
    write_image(tmp_path / "x.png", picture)
    transform = EvalTransform.centre_crop(3, 16)
    assert transform.resize_size == 18 and transform.size == (16, 16)
    pixels = transform.read(tmp_path / "x.png")
    assert pixels.shape == (3, 16, 16) and int(pixels.max()) == 0
    assert EvalTransform.from_dict(transform.to_dict()) == transform


def test_image_size_works_for_sources_held_as_tensors() -> None:
    pad = load_data("digits", options=DataOptions(image_size=16))
    assert pad.image_size == (16, 16) and pad.evaluation == EvalTransform.fit(1, (16, 16))
    assert pad.test.images.shape[1:] == (1, 16, 16) and pad.pad == 2
    boxes = load_data("digits", options=DataOptions(image_size=16, crop="random-resized"))
    assert boxes.evaluation == EvalTransform.centre_crop(1, 16)
    assert boxes.train.images.shape[1:] == boxes.test.images.shape[1:] == (1, 16, 16)
    assert not torch.equal(boxes.test.images, pad.test.images)  # centre 7/8 against the whole digit


def test_a_checkpoint_keeps_its_evaluation_transform_for_eval_and_predict(folder, tmp_path, capfd) -> None:
    run = tmp_path / "run"
    words = [
        "train",
        "--data",
        f"folder:{folder}",
        "--data-mode",
        "stream",
        "--workers",
        "0",
        "--model",
        "resnet8",
    ]
    words += [
        "--recipe",
        "imagenet",
        "--image-size",
        "24",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--out",
        str(run),
        "--quiet",
    ]
    assert main(words) == 0
    info = load_checkpoint(run / "best.pt")["data"]
    assert info["mode"] == "stream" and info["image_size"] == [24, 24]
    assert EvalTransform.of_data_info(info) == EvalTransform.centre_crop(1, 24)
    assert load_classifier(run / "best.pt").transform == EvalTransform.centre_crop(1, 24)
    capfd.readouterr()
    assert main(["eval", str(run / "best.pt"), "--json"]) == 0
    evaluated = json.loads(capfd.readouterr().out)
    assert evaluated["accuracy"] == json.loads((run / "test.json").read_text())["accuracy"]


def test_two_processes_train_on_a_streamed_folder(folder, tmp_path, capfd) -> None:
    run = tmp_path / "ddp"
    words = _train_words(folder, run, "--nproc", "2", "--device", "cpu", "--threads", "1")
    words[words.index("--workers") + 1] = "0"
    assert main(words) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["distributed"]["world_size"] == 2 and config["data"]["mode"] == "stream"
    assert [m["epoch"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [1, 2]


def test_an_unknown_data_mode_is_refused() -> None:
    with pytest.raises(ReslabError, match="data mode"):
        DataOptions(mode="disk")
