"""Which weights a run keeps and tests: best on validation when the validation split can tell epochs
apart, else the final weights (`--select-by auto|val|last`, training/selection.py)."""

from __future__ import annotations

import json

import pytest
import torch
from data_writers import two_class_folder

from reslab.checkpoint import load_checkpoint
from reslab.cli import main
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


def test_select_by_val_keeps_the_best_on_validation_epoch(tmp_path):
    test, run = _run(tmp_path, "val", "--select-by", "val")
    errors = [row["val_error"] for row in run["last"]["metrics"]]
    assert test["selected_by"] == "val"
    assert errors[test["best_epoch"] - 1] == min(errors)
    assert run["best"]["epoch"] == test["best_epoch"]


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
