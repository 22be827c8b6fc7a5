"""The typed run configuration: one request from the CLI or Python, one RunConfig stored in config.json and
checkpoints, and reslab 0.1's checkpoints still readable by eval, predict, export and --weights."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import reslab
from reslab.checkpoint import load_checkpoint, run_config_of
from reslab.cli import main
from reslab.cli.train_cmd import worker_argv
from reslab.data import load_data
from reslab.errors import ReslabError
from reslab.run_config import RECIPE_OVERRIDES, RunConfig, TrainConfig, TrainRequest

LEGACY_RUN = Path(__file__).parent / "fixtures" / "reslab-0.1-run"


def test_the_training_package_and_the_training_function_have_different_names():
    engine = importlib.import_module("reslab.training.engine")
    assert reslab.training.engine is engine is sys.modules["reslab.training.engine"]
    assert callable(reslab.train) and reslab.train.__module__ == "reslab.training.api"


def test_a_request_routes_keywords_to_its_fields_and_the_recipe_overrides():
    request = TrainRequest.from_settings(
        {"model": "resnet8", "seed": 3, "epochs": 2, "lr": None, "label_smoothing": 0.1, "out": Path("x")}
    )
    assert (request.model, request.seed, request.out, request.data) == ("resnet8", 3, "x", "digits")
    assert request.overrides == {"epochs": 2, "label_smoothing": 0.1}
    assert {"epochs", "batch_size", "lr", "label_smoothing", "random_erase", "lr_scaling"} <= set(
        RECIPE_OVERRIDES
    )
    with pytest.raises(TypeError, match="unknown setting.*epoch_count"):
        TrainRequest.from_settings({"epoch_count": 2})


@pytest.mark.parametrize(
    ("settings", "param", "words"),
    [
        ({"epochs": 0}, "epochs", "epochs must be at least 1, got 0"),
        ({"lr": float("nan")}, "lr", "lr must be a positive number"),
        ({"label_smoothing": 1.0}, "label_smoothing", "label_smoothing must be in [0, 1)"),
        ({"threads": 0}, "threads", "threads must be at least 1"),
        ({"lr_scaling": "cubic"}, "lr_scaling", "lr_scaling must be one of none, linear"),
    ],
)
def test_the_library_names_its_parameters_and_the_cli_its_flags(settings, param, words, capsys):
    with pytest.raises(ReslabError) as caught:
        TrainRequest.from_settings(settings)
    assert words in str(caught.value) and caught.value.params == (param,)
    flag = "--" + param.replace("_", "-")
    argv = [arg for key, value in settings.items() for arg in ("--" + key.replace("_", "-"), str(value))]
    if param == "lr_scaling":
        return  # argparse's own choices refuse it before the library sees it
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"reslab train: error: {flag} ") and words.replace(param, flag, 1) in err


def test_every_training_flag_reaches_the_request(monkeypatch, tmp_path):
    import reslab.training.api as api

    seen = {}
    monkeypatch.setattr(api, "train", lambda **kwargs: seen.update(kwargs))
    argv = ["train", "--model", "resnet8", "--data", "digits", "--epochs", "2", "--batch-size", "16"]
    argv += ["--lr", "0.05", "--schedule", "cosine", "--warmup-steps", "3", "--weight-decay", "0.001"]
    argv += ["--precision", "fp32", "--seed", "4", "--out", str(tmp_path / "r"), "--device", "cpu"]
    argv += ["--recipe", "paper", "--compile", "--weights", "w.pt", "--download", "--threads", "1"]
    argv += ["--sync-bn", "--lr-scaling", "linear", "--label-smoothing", "0.2", "--random-erase", "0.3"]
    assert main(argv) == 0
    request = TrainRequest.from_settings(
        {k: v for k, v in seen.items() if k not in ("quiet", "console", "report_error", "resume", "config")}
    )
    assert (request.model, request.recipe, request.seed, request.precision, request.device) == (
        "resnet8", "paper", 4, "fp32", "cpu"
    )  # fmt: skip
    assert request.compile and request.download and request.sync_bn and request.weights == "w.pt"
    assert request.overrides == {
        "epochs": 2, "batch_size": 16, "lr": 0.05, "schedule": "cosine", "warmup_steps": 3,
        "weight_decay": 0.001, "lr_scaling": "linear", "label_smoothing": 0.2, "random_erase": 0.3,
    }  # fmt: skip


def test_every_training_setting_has_its_rule():
    # A new TrainConfig field is a recipe override; a value a user gives it must be checked on entry.
    from reslab.run_config import _RULES

    assert set(RECIPE_OVERRIDES) <= set(_RULES)
    with pytest.raises(ReslabError, match="warmup_mode must be one of linear, constant"):
        TrainRequest.from_settings({"warmup_mode": "cubic"})


def test_nproc_workers_get_the_same_words_without_nproc():
    argv = ["train", "--nproc", "2", "--model", "resnet8", "--nproc=3", "--npr", "4", "--epochs", "1"]
    assert worker_argv(argv) == ["-m", "reslab", "train", "--model", "resnet8", "--epochs", "1"]


@pytest.fixture(scope="module")
def new_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cfg") / "run"
    return reslab.train(
        "resnet8", epochs=1, batch_size=64, precision="fp32", device="cpu", quiet=True, out=out
    )


def test_config_json_and_checkpoints_store_one_run_config(new_run):
    stored = json.loads((new_run.run_dir / "config.json").read_text())
    assert stored["version"] == 2
    config = RunConfig.from_dict(stored)
    assert config == new_run.config
    assert config.to_dict() == stored
    assert (config.model.name, config.data.spec, config.train.epochs, config.seed) == (
        "resnet8",
        "digits",
        1,
        0,
    )
    assert config.device.device == "cpu" and config.device.threads == 1  # 8x8 digits: one thread
    assert run_config_of(load_checkpoint(new_run.run_dir / "last.pt")) == config


def test_a_newer_format_is_refused_with_one_line(new_run):
    stored = json.loads((new_run.run_dir / "config.json").read_text())
    with pytest.raises(ReslabError, match="newer"):
        RunConfig.from_dict({**stored, "version": 99})


def test_a_reslab_01_checkpoint_reads_as_a_run_config():
    payload = load_checkpoint(LEGACY_RUN / "best.pt")
    assert payload["version"] == 1 and "train_config" in payload and "run_config" not in payload
    config = run_config_of(payload)
    assert config == RunConfig.from_dict(json.loads((LEGACY_RUN / "config.json").read_text()))
    assert (config.model.name, config.data.spec, config.seed, config.train.batch_size) == (
        "resnet8",
        "digits",
        0,
        64,
    )
    assert config.train == TrainConfig.from_dict(payload["train_config"]["train"])
    assert config.device.threads == 1 and config.precision.precision in ("bf16", "fp32")


def test_eval_reads_a_reslab_01_checkpoint(capsys):
    old = json.loads((LEGACY_RUN / "test.json").read_text())
    result = reslab.evaluate(LEGACY_RUN, precision="fp32", fast=False)
    # The same weights, split and normalisation; the old run evaluated in its own precision.
    assert result["n"] == old["n"] and abs(result["accuracy"] - old["accuracy"]) < 0.01
    assert (
        reslab.evaluate(LEGACY_RUN, fast=False)["precision"]
        == run_config_of(load_checkpoint(LEGACY_RUN / "best.pt")).precision.precision
    )


def test_predict_export_and_weights_read_a_reslab_01_checkpoint(tmp_path):
    image = tmp_path / "digit.png"
    digits = load_data("digits").test
    Image.fromarray(digits.images[0, 0].numpy(), mode="L").save(image)
    top = reslab.predict(LEGACY_RUN / "best.pt", [image], topk=3, fast=False)[0]["top"]
    assert len(top) == 3 and top[0]["class"] in [str(i) for i in range(10)]
    shutil.copy(LEGACY_RUN / "best.pt", tmp_path / "best.pt")
    report = reslab.export_checkpoint(tmp_path / "best.pt", "torchscript", out=tmp_path / "m.ts.pt")
    assert report.passed and Path(report.path).is_file()
    model = reslab.create_model("resnet8", in_chans=1, num_classes=10, weights=LEGACY_RUN / "best.pt")
    trained = load_checkpoint(LEGACY_RUN / "best.pt")["model"]
    assert torch.equal(model.state_dict()["conv1.weight"], trained["conv1.weight"])


def test_weights_saved_from_ddp_load_without_the_module_prefix(tmp_path):
    source = reslab.create_model("resnet8", in_chans=1, num_classes=10)
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, tmp_path / "ddp.pth")
    model = reslab.create_model("resnet8", in_chans=1, num_classes=10, weights=tmp_path / "ddp.pth")
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), source.state_dict().values(), strict=True)
    )


def test_a_reslab_01_run_resumes(tmp_path):
    # The fixture's best.pt is its only (epoch 1 of 1) checkpoint, optimiser state included: as last.pt,
    # resuming finishes the run. Its optimiser holds one parameter group, as runs without the fine-tuning
    # controls still do.
    run = tmp_path / "old"
    shutil.copytree(LEGACY_RUN, run)
    shutil.copy(run / "best.pt", run / "last.pt")
    result = reslab.train(resume=run, quiet=True)
    old = json.loads((LEGACY_RUN / "test.json").read_text())
    assert result.test["n"] == old["n"] and result.test["best_epoch"] == 1
    assert len(load_checkpoint(run / "last.pt")["optimizer"]["param_groups"]) == 1
