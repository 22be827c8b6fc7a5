"""Fine-tuning controls: --freeze, --backbone-lr-scale, no weight decay on norm/bias, --optimizer, --ema."""

from __future__ import annotations

import json

import pytest
import torch
from test_train import Interrupt, _interrupt_after

import reslab
from reslab.checkpoint import load_checkpoint
from reslab.cli import main
from reslab.training.finetune import is_frozen

TINY = dict(model="resnet8", precision="fp32", device="cpu", quiet=True, threads=1, batch_size=256, lr=0.05)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A trained starting point for the fine-tuning runs."""
    out = tmp_path_factory.mktemp("ft") / "base"
    reslab.train(epochs=1, out=out, **TINY)
    return out / "best.pt"


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.parametrize("point", ["stem", "layer2", "backbone"])
def test_frozen_parts_keep_weights_and_bn_statistics_and_get_no_optimiser_state(base, tmp_path, point):
    start = load_checkpoint(base)["model"]
    reslab.train(epochs=1, weights=base, freeze=point, out=tmp_path / "run", **TINY)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    changed = _changed(start, last["model"])
    frozen = {k for k in start if is_frozen(k, point)}
    assert frozen and not (changed & frozen)  # weights and running statistics alike
    assert {"fc.weight", "fc.bias"} <= changed
    if point != "backbone":
        assert "layer3.0.conv1.weight" in changed
    # The optimiser holds state only for what trains.
    trainable = sum(1 for k in start if k.endswith(("weight", "bias")) and not is_frozen(k, point))
    assert len(last["optimizer"]["state"]) == trainable
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["freeze"] == point


def test_a_zero_backbone_lr_moves_only_the_classifier_weights(base, tmp_path):
    start = load_checkpoint(base)["model"]
    # precise BN off: with the backbone's weights unchanged it would recompute the base's statistics.
    run = tmp_path / "run"
    reslab.train(epochs=1, weights=base, backbone_lr_scale=0.0, precise_bn=0, out=run, **TINY)
    changed = _changed(start, load_checkpoint(run / "last.pt")["model"])
    weights = {k for k in changed if k.endswith(("weight", "bias"))}
    assert weights == {"fc.weight", "fc.bias"}
    assert any(k.endswith("running_mean") for k in changed)  # not frozen: BN statistics still follow


def test_norm_and_bias_parameters_get_no_weight_decay_by_default_but_the_paper_recipe_decays_all(tmp_path):
    run = reslab.train(epochs=1, out=tmp_path / "default", **TINY)
    assert run.config.train.decay_norm_and_bias is False
    groups = load_checkpoint(tmp_path / "default" / "last.pt")["optimizer"]["param_groups"]
    decays = sorted((g["weight_decay"], len(g["params"])) for g in groups)
    # resnet8 (option A shortcuts): 7 conv weights + fc.weight decayed; 7 BN layers x 2 + fc.bias not.
    assert decays == [(0.0, 1), (0.0, 14), (5e-4, 1), (5e-4, 7)]
    paper = reslab.train(epochs=1, recipe="paper", out=tmp_path / "paper", **TINY)
    assert paper.config.train.decay_norm_and_bias is True
    groups = load_checkpoint(tmp_path / "paper" / "last.pt")["optimizer"]["param_groups"]
    assert all(g["weight_decay"] == 1e-4 for g in groups)


def test_adamw_brings_its_own_lr_and_weight_decay_unless_given():
    from reslab.training.recipes import resolve_recipe

    adamw = resolve_recipe("default", model_depth=20, train_size=1000, optimizer="adamw")
    assert (adamw.lr, adamw.weight_decay) == (1e-3, 0.05)
    given = resolve_recipe(
        "default", model_depth=20, train_size=1000, optimizer="adamw", lr=0.01, weight_decay=0.0
    )
    assert (given.lr, given.weight_decay) == (0.01, 0.0)


def test_adamw_trains(tmp_path):
    run = reslab.train(epochs=2, optimizer="adamw", out=tmp_path / "run", **{**TINY, "lr": 0.003})
    state = load_checkpoint(tmp_path / "run" / "last.pt")["optimizer"]["state"]
    assert "exp_avg_sq" in next(iter(state.values()))
    # 8 steps: learning, well above chance (10%), not converged.
    assert run.metrics[-1]["train_loss"] < run.metrics[0]["train_loss"] and run.test["accuracy"] > 0.2


def test_ema_weights_are_validated_tested_and_resumed(tmp_path, monkeypatch):
    settings = dict(TINY, epochs=2, ema=0.9)
    full = reslab.train(out=tmp_path / "full", **settings)
    last = load_checkpoint(tmp_path / "full" / "last.pt")
    assert _changed(last["trained_model"], last["model"])  # the average is not the trained weights
    # best.pt's model is the average, and the test line evaluated exactly it.
    test = reslab.evaluate(tmp_path / "full" / "best.pt", precision="fp32", fast=False)
    assert test["accuracy"] == full.test["accuracy"] and test["loss"] == pytest.approx(full.test["loss"])
    # Interrupted after epoch 1 and resumed: the same average as the uninterrupted run.
    with monkeypatch.context() as patch:
        _interrupt_after(patch, full.metrics[0]["step"] + 1)
        with pytest.raises(Interrupt):
            reslab.train(out=tmp_path / "cut", **settings)
    reslab.train(resume=tmp_path / "cut", quiet=True)
    resumed = load_checkpoint(tmp_path / "cut" / "last.pt")
    for key in ("model", "trained_model"):
        assert not _changed(last[key], resumed[key]), key


def test_the_flags_reach_the_run(base, tmp_path):
    argv = ["train", "--model", "resnet8", "--epochs", "1", "--batch-size", "256", "--lr", "0.003"]
    argv += ["--precision", "fp32", "--device", "cpu", "--threads", "1", "--quiet", "--weights", str(base)]
    argv += ["--freeze", "layer1", "--backbone-lr-scale", "0.1", "--optimizer", "adamw", "--ema", "0.5"]
    argv += ["--decay-norm-and-bias", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    train = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (train["freeze"], train["backbone_lr_scale"], train["optimizer"], train["ema"]) == (
        "layer1", 0.1, "adamw", 0.5
    )  # fmt: skip
    assert train["decay_norm_and_bias"] is True
    groups = load_checkpoint(tmp_path / "run" / "last.pt")["optimizer"]["param_groups"]
    # The schedule scales each group's initial lr: the head's is lr, the backbone's 0.1 x lr.
    assert sorted({g["initial_lr"] for g in groups}) == pytest.approx([0.0003, 0.003])
