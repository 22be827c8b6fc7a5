"""Which weights a run keeps and tests: best on validation when the validation split can tell epochs
apart, else the final weights (`--select-by auto|val|last`, training/selection.py)."""

from __future__ import annotations

import json

import pytest
import torch
from data_writers import two_class_folder
from test_train import Interrupt, _interrupt_after

import reslab
from reslab.checkpoint import load_checkpoint
from reslab.cli import main
from reslab.training import engine
from reslab.training.recipes import resolve_recipe
from reslab.training.selection import MIN_VAL_IMAGES, resolve_selection, selection_text


@pytest.mark.parametrize(
    ("asked", "val_size", "resolved"),
    [
        ("auto", MIN_VAL_IMAGES - 1, "last"),
        ("auto", MIN_VAL_IMAGES, "val"),
        ("val", 5, "val"),
        ("last", 10**4, "last"),
    ],
)
def test_auto_chooses_by_the_size_of_the_validation_split(asked, val_size, resolved):
    config = resolve_recipe("default", model_depth=20, train_size=140, select_by=asked)
    assert resolve_selection(config, val_size).select_by == resolved


def _run(tmp_path, name: str, *flags: str) -> tuple[dict, dict]:
    folder = two_class_folder(tmp_path / "data")
    run_dir = tmp_path / name
    argv = ["train", "--data", f"folder:{folder}", "--model", "resnet8", "--epochs", "4", "--threads", "1"]
    assert main([*argv, "--precision", "fp32", "--quiet", "--out", str(run_dir), *flags]) == 0
    test = json.loads((run_dir / "test.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    return test, {
        "config": config,
        "best": load_checkpoint(run_dir / "best.pt"),
        "last": load_checkpoint(run_dir / "last.pt"),
    }


def test_a_small_validation_split_tests_the_final_weights(tmp_path, capsys):
    test, run = _run(tmp_path, "auto")  # 14 validation images
    assert run["config"]["train"]["select_by"] == "last"  # recorded as resolved
    assert test["selected_by"] == "last" and test["best_epoch"] == 4
    for name, weight in run["last"]["model"].items():
        assert torch.equal(run["best"]["model"][name], weight), name
    assert (
        "final weights of epoch 4; 14 validation images are too few to choose by" in capsys.readouterr().out
    )


def test_select_by_val_keeps_the_best_on_validation_epoch(tmp_path, monkeypatch):
    # Scripted validation errors, so the best epoch (2) is not the last one.
    errors = iter([0.5, 0.1, 0.3, 0.4])
    monkeypatch.setattr(engine, "evaluate_batches", lambda *a, **k: {"error": next(errors), "loss": 1.0})
    test, run = _run(tmp_path, "val", "--select-by", "val")
    assert test["selected_by"] == "val" and test["best_epoch"] == 2 and run["best"]["epoch"] == 2
    assert any(not torch.equal(run["best"]["model"][k], v) for k, v in run["last"]["model"].items())


def test_a_resumed_run_keeps_following_the_final_weights(tmp_path, monkeypatch):
    settings = {"model": "resnet8", "epochs": 3, "batch_size": 128, "precision": "fp32", "device": "cpu"}
    settings.update(quiet=True, select_by="last")
    full = reslab.train(out=tmp_path / "full", **settings)
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2 * full.metrics[0]["step"])  # killed at the start of epoch 3
        with pytest.raises(Interrupt):
            reslab.train(out=tmp_path / "cut", **settings)
    assert load_checkpoint(tmp_path / "cut" / "best.pt")["epoch"] == 2
    resumed = reslab.train(resume=tmp_path / "cut", quiet=True)
    assert resumed.test == full.test and resumed.test["best_epoch"] == 3
    best, last = (load_checkpoint(tmp_path / "cut" / name)["model"] for name in ("best.pt", "last.pt"))
    assert all(torch.equal(best[k], last[k]) for k in last)


def test_an_unknown_choice_is_refused_with_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:  # argparse's usage error, as for every choice flag
        main(["train", "--select-by", "best", "--epochs", "1"])
    assert exited.value.code == 2
    assert "argument --select-by: invalid choice: 'best'" in capsys.readouterr().err.strip().splitlines()[-1]


def test_the_test_line_says_why_it_used_the_final_weights():
    assert (
        selection_text("last", 7, 20)
        == "final weights of epoch 7; 20 validation images are too few to choose by"
    )
    assert selection_text("last", 7, 500) == "final weights of epoch 7, as --select-by last asks"
    assert selection_text("val", 3, 500) == "best-on-validation weights of epoch 3"
