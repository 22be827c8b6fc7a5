"""Training: a short run learns, resume reproduces an uninterrupted run, divergence and interrupted writes
keep the last good checkpoint, the paper recipe's schedule, the run directory."""

from __future__ import annotations

import json
import math
import os
import platform
import stat

import pytest
import torch
from torch import nn

import reslab
from reslab.checkpoint import load_checkpoint
from reslab.data import batches as batches_module
from reslab.errors import DivergedError, ReslabError
from reslab.precision import resolve_precision
from reslab.training import engine, recipes
from reslab.training import step as step_module
from reslab.training.recipes import LRSchedule, TrainConfig, resolve_recipe
from reslab.training.run_dir import METRIC_KEYS, read_metrics

TINY = {"model": "resnet8", "batch_size": 32, "precision": "fp32", "device": "cpu", "quiet": True}


def test_short_run_learns_and_writes_the_run_directory(tmp_path):
    result = reslab.train(epochs=3, lr=0.1, out=tmp_path / "run", **TINY)
    run = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "test.json", "last.pt", "best.pt", "curves.png"):
        assert (run / name).is_file(), name
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all(tuple(r) == METRIC_KEYS for r in rows)
    assert rows[-1]["train_loss"] < 0.6 * rows[0]["train_loss"]
    assert rows[-1]["step"] == 3 * (len(reslab.data.load_data("digits").train) // 32)
    test = json.loads((run / "test.json").read_text())
    assert {"loss", "error", "accuracy", "per_class_accuracy", "n"} <= set(test)
    assert test["n"] == 359 and len(test["per_class_accuracy"]) == 10
    assert test["accuracy"] > 0.6  # chance is 0.1
    assert math.isclose(test["accuracy"] + test["error"], 1.0)
    assert result.test == test and result.run_dir == run
    config = json.loads((run / "config.json").read_text())
    assert config["precision"] == {"precision": "fp32", "channels_last": False}
    assert config["train"]["epochs"] == 3 and config["train"]["batch_size"] == 32
    assert config["model"]["config"]["in_chans"] == 1 and config["model"]["config"]["num_classes"] == 10
    assert config["train"]["label_smoothing"] == 0.0 and config["train"]["random_erase"] == 0.0
    # A CPU run keeps freed host memory for reuse (reslab.host_memory) wherever glibc allows it.
    assert config["environment"]["host_allocator_tuned"] is (platform.libc_ver()[0] == "glibc")
    # The test set is evaluated with the best-on-validation weights, which best.pt holds.
    best = load_checkpoint(run / "best.pt")
    assert test["best_epoch"] == best["epoch"]
    assert best["best_val_error"] == min(r["val_error"] for r in rows)


def test_label_smoothing_and_random_erase_reach_the_loss_and_the_batches(tmp_path, monkeypatch):
    seen = {"erase": [], "smoothing": []}
    erase = batches_module.erase_random_rectangles

    def spy_erase(x, probability, generator, part=None):
        seen["erase"].append(probability)
        return erase(x, probability, generator, part)

    class SpyLoss(nn.CrossEntropyLoss):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen["smoothing"].append(self.label_smoothing)

    monkeypatch.setattr(batches_module, "erase_random_rectangles", spy_erase)
    monkeypatch.setattr(engine.nn, "CrossEntropyLoss", SpyLoss)
    reslab.train(epochs=1, lr=0.1, label_smoothing=0.1, random_erase=0.5, out=tmp_path / "run", **TINY)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["label_smoothing"] == 0.1 and config["train"]["random_erase"] == 0.5
    assert seen["smoothing"] == [0.1] and seen["erase"] and set(seen["erase"]) == {0.5}
    rows = read_metrics(tmp_path / "run")
    assert math.isfinite(rows[0]["train_loss"]) and rows[0]["val_error"] < 0.9


def test_a_config_saved_before_random_erase_existed_resumes_without_it():
    config = resolve_recipe("default", model_depth=20, train_size=1000).to_dict()
    del config["random_erase"]
    assert TrainConfig.from_dict(config).random_erase == 0.0


class Interrupt(Exception):
    pass


def _interrupt_after(monkeypatch, calls: int) -> None:
    original = step_module.TrainStep.__call__
    count = {"n": 0}

    def counting(self, x, y):
        count["n"] += 1
        if count["n"] > calls:
            raise Interrupt
        return original(self, x, y)

    monkeypatch.setattr(step_module.TrainStep, "__call__", counting)


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    settings = dict(TINY, epochs=3, batch_size=128, schedule="cosine", lr=0.05)
    full = reslab.train(out=tmp_path / "full", **settings)
    steps_per_epoch = full.metrics[0]["step"]

    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2 * steps_per_epoch + 3)  # killed in the middle of epoch 3
        with pytest.raises(Interrupt):
            reslab.train(out=tmp_path / "cut", **settings)
    cut = tmp_path / "cut"
    assert load_checkpoint(cut / "last.pt")["epoch"] == 2
    # As if killed after last.pt was written but while metrics.jsonl was being rewritten.
    with open(cut / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 3, "step": 1')

    resumed = reslab.train(resume=cut, quiet=True, threads=1)  # settings that change only speed are allowed
    assert [r["epoch"] for r in read_metrics(cut)] == [1, 2, 3]
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(cut / "last.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.test == full.test
    for before, after in zip(full.metrics, resumed.metrics, strict=True):
        assert before["train_loss"] == after["train_loss"] and before["val_error"] == after["val_error"]


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    original = LRSchedule.lr_at
    steps_per_epoch = len(reslab.data.load_data("digits").train) // 32
    # A sane first epoch, then an absurd learning rate.
    monkeypatch.setattr(
        LRSchedule, "lr_at", lambda self, step: original(self, step) if step < steps_per_epoch else 1e12
    )
    with pytest.raises(DivergedError, match=r"diverged.*last good checkpoint .*last.pt \(epoch 1\) is kept"):
        reslab.train(epochs=4, out=tmp_path / "run", **TINY)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1]


def test_an_interrupted_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, handle, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 3:  # epoch 1 writes best.pt and last.pt; fail inside epoch 2's first write
            handle.write(b"PK\x03\x04 half a zip")
            raise OSError("No space left on device")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(ReslabError, match="cannot write .*No space left on device"):
        reslab.train(epochs=3, out=tmp_path / "run", **TINY)
    run = tmp_path / "run"
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert load_checkpoint(run / "best.pt")["epoch"] == 1
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no temp files left
    # Files of the run directory get an ordinary file's permissions (mkstemp's 0600 would hide them).
    umask = os.umask(0)
    os.umask(umask)
    for name in ("last.pt", "best.pt", "config.json", "metrics.jsonl", "curves.png"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o666 & ~umask, name


def test_paper_recipe_for_resnet110_counts_iterations():
    config = resolve_recipe("paper", model_depth=110, train_size=45_000)
    assert (config.batch_size, config.momentum, config.weight_decay, config.max_steps) == (
        128,
        0.9,
        1e-4,
        64_000,
    )
    schedule = LRSchedule(config, config.max_steps)
    expected = {0: 0.01, 399: 0.01, 400: 0.1, 31999: 0.1, 32000: 0.01, 48000: 0.001}
    for step, lr in expected.items():
        assert schedule.lr_at(step) == pytest.approx(lr, rel=1e-12), step
    assert config.epochs * (45_000 // 128) >= 64_000
    shallow = LRSchedule(resolve_recipe("paper", model_depth=20, train_size=45_000), 64_000)
    assert shallow.lr_at(0) == pytest.approx(0.1) and shallow.lr_at(63_999) == pytest.approx(0.001)


def test_paper_recipe_with_epochs_keeps_the_schedule_shape():
    total = 10 * (45_000 // 128)  # 3510 iterations instead of 64k
    config = resolve_recipe("paper", model_depth=110, train_size=45_000, epochs=10)
    assert (config.epochs, config.max_steps, config.milestones_are_steps) == (10, 0, False)
    assert config.warmup_steps == round(400 * total / 64_000) == 22
    assert config.extra["scaled_to_epochs"] == {
        "recipe_steps": 64_000,
        "run_steps": total,
        "recipe_milestones": [32_000, 48_000],
        "recipe_warmup_steps": 400,
    }
    schedule = LRSchedule(config, total)
    expected = {0: 0.01, 21: 0.01, 22: 0.1, 1754: 0.1, 1755: 0.01, 2631: 0.01, 2633: 0.001, total - 1: 0.001}
    for step, lr in expected.items():
        assert schedule.lr_at(step) == pytest.approx(lr, rel=1e-12), step
    # An explicit warm-up is kept; the shallow nets have none.
    assert (
        resolve_recipe("paper", model_depth=110, train_size=45_000, epochs=10, warmup_steps=5).warmup_steps
        == 5
    )
    assert resolve_recipe("paper", model_depth=20, train_size=45_000, epochs=10).warmup_steps == 0


def test_a_short_paper_run_lowers_its_lr_and_records_why(tmp_path):
    result = reslab.train(recipe="paper", epochs=4, out=tmp_path / "run", **dict(TINY, batch_size=None))
    assert [r["lr"] for r in result.metrics] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    train = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert train["milestones"] == [0.5, 0.75] and train["milestones_are_steps"] is False
    assert train["extra"]["scaled_to_epochs"]["run_steps"] == 4 * (1259 // 128)


def test_schedules_rise_and_fall():
    for name in ("cosine", "onecycle"):
        config = resolve_recipe("default", model_depth=20, train_size=1000, schedule=name, lr=0.2)
        schedule = LRSchedule(config, 1000)
        lrs = [schedule.lr_at(s) for s in range(1000)]
        assert max(lrs) == pytest.approx(0.2, rel=1e-2) and lrs[-1] < 0.01 * 0.2
    imagenet = resolve_recipe("imagenet", model_depth=50, train_size=10_000, batch_size=512)
    assert imagenet.lr == pytest.approx(0.2) and imagenet.epochs == 90
    assert imagenet.extra["lr_scaling"]["applied"] and "augment" not in imagenet.extra  # no false record
    step = LRSchedule(imagenet, 9000)
    assert [step.lr_at(s) for s in (0, 2999, 3000, 6000)] == pytest.approx([0.2, 0.2, 0.02, 0.002])


def test_train_step_accumulates_on_the_device_without_syncing(one_thread, monkeypatch):
    model = reslab.create_model("resnet8", in_chans=1, num_classes=10)
    config = resolve_recipe("default", model_depth=8, train_size=64)
    optimizer = recipes.make_optimizer(model, config, torch.device("cpu"))
    scheduler = recipes.make_scheduler(optimizer, recipes.LRSchedule(config, 100))
    step = step_module.make_train_step(
        model, optimizer, resolve_precision("fp32", torch.device("cpu")), scheduler=scheduler
    )
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    # Every way a tensor's value reaches Python (on CUDA each one waits for the device) is counted.
    syncs = []
    for name in ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor,
            name,
            lambda self, *a, _real=real, _name=name, **k: syncs.append(_name) or _real(self, *a, **k),
        )
    losses = [step(x, y) for _ in range(5)]
    assert syncs == [], syncs
    mean_loss, error, n = step.read()
    assert syncs == ["tolist"]  # read() is the one host sync
    monkeypatch.undo()
    assert all(isinstance(loss, torch.Tensor) and not loss.requires_grad for loss in losses)
    assert n == 80 and 0 <= error <= 1
    assert mean_loss == pytest.approx(float(torch.stack(losses).mean()), rel=1e-5)
    assert losses[-1] < losses[0]
    assert recipes.steps_per_epoch(100, 32) == 3 and recipes.steps_per_epoch(10, 32) == 1


def test_progress_bar_shows_loss_error_speed_and_eta(tmp_path):
    import io

    from rich.console import Console

    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=160)
    reslab.train(epochs=1, out=tmp_path / "run", console=console, **dict(TINY, quiet=False))
    text = stream.getvalue()
    for words in ("epoch 1/1", "loss", "err", "img/s", "ETA", "test (once"):
        assert words in text, words
