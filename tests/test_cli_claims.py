"""README claims about `reslab train` that no other test held it to: the run-directory and resume refusals,
--lr-scaling from the command line, label smoothing in training only, and fine-tuning onto another class
count. Small runs: resnet8 on digits, fp32, one thread."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_eval import eval_json
from data_writers import write_image

import reslab
from reslab.checkpoint import load_checkpoint
from reslab.cli import main

FAST = ["--model", "resnet8", "--precision", "fp32", "--device", "cpu", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """resnet8, 4 epochs on digits (about 4 s of training): about 90% validation accuracy, val loss ~0.4."""
    run = tmp_path_factory.mktemp("claims") / "run"
    assert main(["train", *FAST, "--epochs", "4", "--batch-size", "128", "--out", str(run)]) == 0
    return run


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _one_error_line(capfd) -> str:
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("reslab train: error: "), err
    return err


# --- refusals -----------------------------------------------------------------------------------


def test_out_at_a_folder_holding_a_run_is_refused_naming_resume(trained_run, capfd) -> None:
    before = (trained_run / "last.pt").read_bytes(), (trained_run / "metrics.jsonl").read_text()
    capfd.readouterr()
    assert main(["train", *FAST, "--epochs", "1", "--out", str(trained_run)]) == 2
    err = _one_error_line(capfd)
    assert f"--resume '{trained_run}'" in err and "--out" in err, err
    # Nothing of the run was touched.
    assert ((trained_run / "last.pt").read_bytes(), (trained_run / "metrics.jsonl").read_text()) == before


@pytest.mark.parametrize("flag,value", [("--device", "cpu"), ("--precision", "fp32")])
def test_resume_refuses_device_and_precision(trained_run, capfd, flag, value) -> None:
    before = (trained_run / "last.pt").read_bytes()
    capfd.readouterr()
    assert main(["train", "--resume", str(trained_run), flag, value]) == 2
    err = _one_error_line(capfd)
    assert flag in err and "--resume" in err and str(trained_run) in err, err
    assert (trained_run / "last.pt").read_bytes() == before


# --- --lr-scaling ---------------------------------------------------------------------------------


def _tiny(tmp_path: Path, name: str, *flags: str) -> tuple[dict, list[dict]]:
    # 1259 digits / 512 = 2 steps.
    run = tmp_path / name
    assert main(["train", *FAST, "--epochs", "1", "--batch-size", "512", *flags, "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    return config["train"], _metrics(run)


def test_lr_scaling_linear_from_the_cli_scales_the_lr_that_trains(tmp_path) -> None:
    """Default recipe: batch 64, lr 0.1. --batch-size 512 --lr-scaling linear trains at 0.1 x 512/64."""
    kept, kept_rows = _tiny(tmp_path, "none")  # the default recipe's rule: none
    scaled, scaled_rows = _tiny(tmp_path, "linear", "--lr-scaling", "linear")
    assert kept["lr"] == 0.1
    assert kept["extra"]["lr_scaling"] == {
        "rule": "none",
        "reference_batch": 64,
        "reference_lr": 0.1,
        "applied": False,
    }
    assert scaled["lr"] == pytest.approx(0.8)
    assert scaled["extra"]["lr_scaling"] == {
        "rule": "linear",
        "reference_batch": 64,
        "reference_lr": 0.1,
        "applied": True,
    }
    # The optimiser really ran at it: the lr of the first step (onecycle starts at peak / 25) is 8x.
    assert scaled_rows[0]["lr"] == pytest.approx(8 * kept_rows[0]["lr"])
    # An explicit --lr wins over the rule.
    explicit, _ = _tiny(tmp_path, "explicit", "--lr-scaling", "linear", "--lr", "0.3")
    assert explicit["lr"] == 0.3 and explicit["extra"]["lr_scaling"]["applied"] is False


def test_imagenet_recipe_scales_linearly_by_default(tmp_path) -> None:
    """The imagenet recipe: "lr 0.1 per 256 images", so batch 512 trains at 0.2 without any flag."""
    train, rows = _tiny(tmp_path, "imagenet", "--recipe", "imagenet")
    assert train["recipe"] == "imagenet" and train["lr"] == pytest.approx(0.2)
    assert (
        train["extra"]["lr_scaling"]["rule"] == "linear" and train["extra"]["lr_scaling"]["applied"] is True
    )
    assert rows[0]["lr"] == pytest.approx(0.2)  # step schedule: the first epoch at the full lr


# --- label smoothing: training loss only ----------------------------------------------------------


def test_label_smoothing_is_in_the_training_loss_and_not_in_validation(trained_run, tmp_path, capsys) -> None:
    """With smoothing eps over K classes the training loss is a cross-entropy against the target
    q = (1 - eps + eps/K on the label, eps/K elsewhere), so it can never fall below the entropy H(q)
    (1.68 for eps 0.5, K 10), however good the model. Plain cross-entropy of a trained model is far below
    that. So: fine-tune the trained run with --label-smoothing 0.5 at a small lr; the epoch's training
    loss is >= H(q), its validation loss is the plain cross-entropy `reslab eval` computes from last.pt."""
    eps, k = 0.5, 10
    q = np.array([1 - eps + eps / k] + [eps / k] * (k - 1))
    floor = float(-(q * np.log(q)).sum())
    run = tmp_path / "smoothed"
    flags = ["--weights", str(trained_run / "best.pt"), "--label-smoothing", "0.5", "--lr", "0.001"]
    assert main(["train", *FAST, "--epochs", "1", "--batch-size", "128", *flags, "--out", str(run)]) == 0
    (row,) = _metrics(run)
    assert json.loads((run / "config.json").read_text())["train"]["label_smoothing"] == 0.5
    assert row["train_loss"] >= floor - 1e-4, (row, floor)
    plain = eval_json(run / "last.pt", capsys)
    assert plain["n"] == 179
    assert row["val_loss"] == pytest.approx(plain["loss"], rel=1e-5, abs=1e-6)
    assert row["val_loss"] < floor - 0.5, (row, floor)  # impossible for a smoothed loss
    assert json.loads((run / "test.json").read_text())["loss"] < floor - 0.5


# --- fine-tuning onto another class count ---------------------------------------------------------


def _three_class_folder(root: Path) -> Path:
    """folder:DIR with 3 classes of 8x8 grayscale images (digits' shape, another class count)."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("circle", "cross", "line")):
        for i in range(24):
            image = rng.integers(0, 64, (8, 8), dtype=np.uint8)
            image[:, 2 * c : 2 * c + 3] += 150  # a class-dependent stripe
            write_image(root / name / f"{i:02d}.png", image)
    return root


def test_fine_tuning_onto_another_class_count_keeps_every_weight_but_the_classifier(
    trained_run, tmp_path
) -> None:
    data = _three_class_folder(tmp_path / "shapes")
    checkpoint = load_checkpoint(trained_run / "best.pt")["model"]
    assert checkpoint["fc.weight"].shape == (10, 64)
    # lr 1e-9: one epoch of training moves no weight measurably, so last.pt shows where training started.
    result = reslab.train(
        model="resnet8",
        data=f"folder:{data}",
        weights=trained_run / "best.pt",
        epochs=1,
        batch_size=16,
        lr=1e-9,
        seed=1,  # not the trained run's seed: a fresh init would not even match its initial weights
        precision="fp32",
        device="cpu",
        threads=1,
        quiet=True,
        out=tmp_path / "finetuned",
    )
    tuned = load_checkpoint(result.run_dir / "last.pt")["model"]
    assert tuned["fc.weight"].shape == (3, 64) and tuned["fc.bias"].shape == (3,)  # a new classifier
    assert len(result.test["per_class_accuracy"]) == 3
    parameters = {
        k for k in checkpoint if not k.startswith("fc.") and "running" not in k and "num_batches" not in k
    }
    assert parameters and all(k in tuned for k in parameters)
    worst = max((tuned[k].float() - checkpoint[k].float()).abs().max().item() for k in parameters)
    assert worst < 1e-6, worst
    # The BN statistics were re-estimated on the new data, from the checkpoint's (momentum 0.1).
    stats = [k for k in checkpoint if k.endswith("running_mean")]
    assert any(not torch.equal(tuned[k], checkpoint[k]) for k in stats)
    assert math.isfinite(result.test["loss"])
