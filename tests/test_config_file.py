"""`reslab train --config FILE`: settings from JSON or YAML, a run's config.json repeats the run, flags win."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from reslab.checkpoint import load_checkpoint
from reslab.cli import main
from reslab.errors import ReslabError
from reslab.settings_file import settings_from_file

LEGACY_RUN = Path(__file__).parent / "fixtures" / "reslab-0.1-run"
TINY = ["--model", "resnet8", "--precision", "fp32", "--device", "cpu", "--threads", "1", "--quiet"]


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def test_a_yaml_file_sets_the_run_and_a_flag_wins(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("model: resnet8\nepochs: 1\nbatch-size: 256\nlabel_smoothing: 0.1\nlr: 0.05\n")
    assert settings_from_file(path) == {
        "model": "resnet8", "epochs": 1, "batch_size": 256, "label_smoothing": 0.1, "lr": 0.05
    }  # fmt: skip
    assert main(["train", "--config", str(path), *TINY, "--lr", "0.02", "--out", str(tmp_path / "r")]) == 0
    config = _config(tmp_path / "r")
    assert config["train"]["batch_size"] == 256 and config["train"]["label_smoothing"] == 0.1
    assert config["train"]["lr"] == 0.02  # the flag, not the file's 0.05
    assert config["request"]["lr"] == 0.02 and config["request"]["epochs"] == 1


def test_a_runs_config_json_repeats_the_run(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    flags = ["--epochs", "1", "--batch-size", "256", "--random-erase", "0.5", "--seed", "3"]
    assert main(["train", *TINY, *flags, "--out", str(first)]) == 0
    # Its out is not taken from the file (that folder holds the run); --out picks the new one.
    assert main(["train", "--config", str(first / "config.json"), "--quiet", "--out", str(second)]) == 0
    a, b = _config(first), _config(second)
    # The repeat asked for what the first run asked for, and for every training number as it resolved.
    assert {k: v for k, v in a["request"].items() if k != "out"}.items() <= b["request"].items()
    assert a["train"] == b["train"] and a["model"] == b["model"] and a["seed"] == b["seed"] == 3
    weights_a, weights_b = (load_checkpoint(run / "last.pt")["model"] for run in (first, second))
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_a_reslab_01_config_json_reads_as_its_settings():
    settings = settings_from_file(LEGACY_RUN / "config.json")
    assert settings["model"] == "resnet8" and settings["data"] == "digits" and settings["recipe"] == "default"
    assert settings["epochs"] == 1 and settings["batch_size"] == 64 and settings["lr"] == 0.1
    # 0.1 decayed every weight; today's default recipe would not, so the repeat says so.
    assert settings["decay_norm_and_bias"] is True and settings["warmup_steps"] == 4


def test_a_run_config_without_a_recorded_request_repeats_its_resolved_settings(tmp_path):
    stored = {**json.loads((LEGACY_RUN / "config.json").read_text())}
    legacy = settings_from_file(LEGACY_RUN / "config.json")
    from reslab.checkpoint import run_config_of

    config = run_config_of(load_checkpoint(LEGACY_RUN / "best.pt")).to_dict()  # version 2, request None
    assert config["request"] is None and stored["model"] == "resnet8"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert settings_from_file(path) == legacy


def test_yaml_numbers_are_numbers_and_wrong_types_are_one_line(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("lr: 1e-3\nepochs: 1\n")
    assert settings_from_file(path) == {"lr": 0.001, "epochs": 1}
    path.write_text("compile: 'false'\n")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == "reslab train: error: --compile must be bool, got 'false'"


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("bad.json", '{"epochs": 1, "epoch_count": 2}', "unknown setting(s) epoch_count"),
        ("bad.yaml", "model: [resnet8\n", "is not valid yaml"),
        ("list.json", "[1, 2]", "holds no mapping of settings"),
    ],
)
def test_a_bad_file_is_one_line(tmp_path, capsys, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ReslabError, match="config"):
        settings_from_file(path)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"reslab train: error: --config '{path}'") and words in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_resume_refuses_a_config_file(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nothing"), "--config", str(tmp_path / "x.json")]) == 2
    assert "drop --config" in capsys.readouterr().err
