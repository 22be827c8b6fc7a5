"""`reslab eval` and `reslab predict` with --fast and --no-fast agree on a tiny trained checkpoint."""

import json

import pytest
from digits_model import train_tiny_resnet
from PIL import Image

from reslab.checkpoint import model_payload, save_checkpoint
from reslab.cli import main
from reslab.data import load_data
from reslab.evaluate import evaluate


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """resnet8 trained for a few seconds on digits, saved as reslab checkpoints do."""
    bundle = load_data("digits")
    model = train_tiny_resnet(bundle, epochs=3)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(path, {**model_payload(model), "data": bundle.info()})
    return path, bundle


def test_eval_fast_and_no_fast_agree(checkpoint, capsys):
    path, _ = checkpoint
    results = {}
    for flag in ("--fast", "--no-fast"):
        assert main(["eval", str(path), "--json", "--out", str(path.with_suffix(".png")), flag]) == 0
        results[flag] = json.loads(capsys.readouterr().out)
    fast, slow = results["--fast"], results["--no-fast"]
    assert fast["n"] == slow["n"] == 359
    assert fast["accuracy"] > 0.5  # a model that learnt something, so agreement means something
    # bf16 on AMX machines: at most 1% of the test set may change its top-1 (the bar).
    assert abs(fast["accuracy"] - slow["accuracy"]) <= 0.01
    assert fast["loss"] == pytest.approx(slow["loss"], rel=2e-2)


def test_evaluate_fast_fp32_is_exact(checkpoint):
    path, _ = checkpoint
    fast = evaluate(path, precision="fp32", fast=True)
    slow = evaluate(path, precision="fp32", fast=False)
    assert fast["confusion"] == slow["confusion"]
    assert fast["loss"] == pytest.approx(slow["loss"], rel=1e-5)


def test_predict_fast_and_no_fast_agree(checkpoint, tmp_path, capsys):
    path, bundle = checkpoint
    files = []
    for i in range(3):
        file = tmp_path / f"digit{i}.png"
        Image.fromarray(bundle.test.images[i, 0].numpy()).save(file)
        files.append(str(file))
    outputs = {}
    for flag in ("--fast", "--no-fast"):
        assert main(["predict", str(path), *files, "--topk", "2", "--json", flag]) == 0
        outputs[flag] = json.loads(capsys.readouterr().out)
    for fast, slow in zip(outputs["--fast"], outputs["--no-fast"], strict=True):
        assert fast["top"][0]["class"] == slow["top"][0]["class"]
        assert fast["top"][0]["probability"] == pytest.approx(slow["top"][0]["probability"], abs=0.03)
