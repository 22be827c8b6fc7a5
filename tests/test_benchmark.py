"""`reslab benchmark` runs on a tiny model and reports every JSON key (correctness only, never speed)."""

import json

import pytest
import torch

from reslab.benchmark import JSON_KEYS, measure_matmul_peak, run_benchmark
from reslab.cli import main

TINY = ["--model", "resnet8", "--batch-size", "4", "--iters", "2", "--warmup", "1", "--image-size", "16"]


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_benchmark_json_has_every_key(mode, capsys, tmp_path):
    saved = tmp_path / "result.json"
    assert main(["benchmark", *TINY, "--mode", mode, "--no-compile", "--json", "--save", str(saved)]) == 0
    result = json.loads(capsys.readouterr().out)
    full = json.loads(saved.read_text())
    assert {key: full[key] for key in JSON_KEYS} == result and full["details"]["compiled"] is False
    assert tuple(result) == JSON_KEYS
    assert result["model"] == "resnet8" and result["mode"] == mode and result["batch_size"] == 4
    for key in JSON_KEYS[3:]:
        assert isinstance(result[key], float) and result[key] > 0, key
    ratio = result["reslab_images_per_second"] / result["baseline_images_per_second"]
    assert result["speedup"] == pytest.approx(ratio, rel=0.01)


def test_benchmark_report_names_both_sides(capsys):
    assert main(["benchmark", *TINY, "--no-compile", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "baseline (plain PyTorch fp32)" in out and "reslab (fp32)" in out and "speedup" in out


def test_train_mode_honours_precision_and_compile_flags():
    result = run_benchmark(
        "resnet8", "train", 4, iters=1, warmup=0, image_size=16, precision="fp32", compile=False
    )
    details = result["details"]
    assert (
        details["precision"] == "fp32" and details["compiled"] is False and details["channels_last"] is False
    )


def test_bad_arguments_are_one_line_errors(capsys):
    assert main(["benchmark", *TINY, "--mode", "infer", "--precision", "fp64"]) == 2
    assert "unknown precision" in capsys.readouterr().err
    assert main(["benchmark", "--model", "resnet8", "--batch-size", "0"]) == 2
    assert main(["benchmark", "--model", "no_such_net", "--iters", "1"]) == 2


def test_matmul_peak_is_positive():
    assert measure_matmul_peak(torch.float32, torch.device("cpu"), seconds=0.01) > 0
