"""Precise BatchNorm statistics: an exact average over batches, frozen layers untouched, `auto` by the
number of steps an epoch has, and a small folder whose validation it rescues."""

from __future__ import annotations

import json

import pytest
import torch
from data_writers import two_class_folder
from torch import nn

from reslab.cli import main
from reslab.data import DeviceBatches, Split
from reslab.precision import resolve_precision
from reslab.training.precise_bn import AUTO_BATCHES, AUTO_BELOW_STEPS, recompute_bn_statistics
from reslab.training.recipes import DEFAULT_BATCH, DEFAULT_MIN_STEPS, SMALL_TRAIN_SET, resolve_recipe

FP32 = resolve_precision("fp32", torch.device("cpu"))


def _batches(n: int = 96, batch: int = 32) -> DeviceBatches:
    images = torch.randint(
        0, 256, (n, 1, 6, 6), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    return DeviceBatches(Split(images, torch.zeros(n, dtype=torch.long)), batch, (0.5,), (0.25,))


def test_the_statistics_are_the_exact_average_of_the_batches():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2)
    )
    model[1].running_mean.fill_(7.0)  # stale statistics, as after a few momentum steps
    model.eval()
    used = recompute_bn_statistics(model, _batches(), 2, FP32, lambda m: m.train())
    assert used == 2 and not model.training
    with torch.no_grad():
        outs = [model[0](x) for x, _ in list(_batches())[:2]]
    means = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs]).mean(0)
    variances = torch.stack([o.transpose(0, 1).flatten(1).var(dim=1) for o in outs]).mean(0)
    assert torch.allclose(model[1].running_mean, means, atol=1e-6)
    assert torch.allclose(model[1].running_var, variances, atol=1e-5)
    assert model[1].momentum == 0.1  # restored


def test_layers_kept_in_eval_mode_keep_their_statistics():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2))
    model[1].running_mean.fill_(7.0)

    def freeze_first(module: nn.Module) -> None:
        module.train()
        module[1].eval()

    recompute_bn_statistics(model, _batches(), 10, FP32, freeze_first)
    assert torch.equal(model[1].running_mean, torch.full((3,), 7.0))
    assert not torch.equal(model[3].running_mean, torch.zeros(2))


@pytest.mark.parametrize(("train_size", "expected"), [(140, AUTO_BATCHES), (64 * AUTO_BELOW_STEPS, 0)])
def test_auto_is_on_only_when_an_epoch_has_few_steps(train_size, expected):
    config = resolve_recipe("default", model_depth=20, train_size=train_size)
    assert config.precise_bn == expected
    images_per_epoch = max(1, train_size // config.batch_size) * config.batch_size
    assert config.epochs * images_per_epoch >= DEFAULT_MIN_STEPS * DEFAULT_BATCH and config.epochs >= 30
    assert resolve_recipe("default", model_depth=20, train_size=140, precise_bn=7).precise_bn == 7
    assert resolve_recipe("default", model_depth=20, train_size=140, epochs=3).epochs == 3


@pytest.mark.parametrize(
    ("train_size", "batch_size", "weight_decay"), [(140, 16, 5e-3), (SMALL_TRAIN_SET, 64, 5e-4)]
)
def test_a_small_training_set_trains_in_small_batches_with_more_decay(train_size, batch_size, weight_decay):
    config = resolve_recipe("default", model_depth=20, train_size=train_size)
    assert (config.batch_size, config.weight_decay) == (batch_size, weight_decay)
    # 140 images: 8 steps of 16 = 128 images an epoch, 250 epochs for 32,000; 640: 10 of 64, 50 epochs.
    assert config.epochs == {140: 250, SMALL_TRAIN_SET: 50}[train_size]
    assert resolve_recipe("default", model_depth=20, train_size=10).epochs == 3200  # one 10-image batch
    assert resolve_recipe("default", model_depth=20, train_size=140, batch_size=32).batch_size == 32


def test_precise_bn_makes_a_small_folders_validation_honest(tmp_path, capsys):
    folder = two_class_folder(tmp_path / "data")
    common = ["train", "--data", f"folder:{folder}", "--model", "resnet8", "--epochs", "12", "--threads", "1"]
    common += ["--batch-size", "64", "--weight-decay", "5e-4"]  # one step an epoch, where the lag is worst
    common += ["--precision", "fp32", "--quiet"]
    assert main([*common, "--precise-bn", "off", "--out", str(tmp_path / "off")]) == 0
    assert main([*common, "--out", str(tmp_path / "auto")]) == 0
    off = json.loads((tmp_path / "off" / "test.json").read_text())
    auto = json.loads((tmp_path / "auto" / "test.json").read_text())
    config = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert config["train"]["precise_bn"] == AUTO_BATCHES  # "auto" is recorded as what it resolved to
    assert auto["accuracy"] >= 0.9 and auto["accuracy"] > off["accuracy"] + 0.1, (auto, off)


def test_a_bad_value_is_one_line(capsys):
    assert main(["train", "--precise-bn", "-1", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "--precise-bn must be auto or a number of batches (0: off)" in err
    ), err
