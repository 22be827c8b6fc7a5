"""`reslab benchmark --against`: every JSON key, the ratio, skipped peers (correctness only, never speed)."""

import json

import pytest

from reslab.cli import main
from reslab.race import JSON_KEYS, RaceSettings, run_race

TINY = ["--model", "resnet8", "--batch-size", "4", "--iters", "2", "--warmup", "1", "--image-size", "16"]


def test_against_reports_every_key_and_lists_a_missing_peer_as_skipped(monkeypatch, capsys, tmp_path):
    pytest.importorskip("onnxruntime", reason="the race test needs onnxruntime (the test extra)")
    import reslab.race

    real = reslab.race.missing_packages
    monkeypatch.setattr(
        reslab.race, "missing_packages", lambda p: ["openvino"] if p == "openvino" else real(p)
    )
    saved = tmp_path / "race.json"
    args = [
        *TINY,
        "--against",
        "onnxruntime,openvino",
        "--paths",
        "fp32",
        "--no-compile",
        "--latency-iters",
        "4",
    ]
    assert main(["benchmark", *args, "--threads", "1", "--json", "--save", str(saved)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert tuple(result) == JSON_KEYS
    assert result["model"] == "resnet8" and result["batch_size"] == 4 and result["threads"] == 1
    assert set(result["contenders"]) == {"reslab-fp32", "onnxruntime", "onnxruntime-int8"}
    assert result["skipped"] == {"openvino": "not installed (openvino)"}
    best = result["best_peer"]
    assert best in ("onnxruntime", "onnxruntime-int8") and result["reslab_best"] == "reslab-fp32"
    assert result["contenders"][best] == max(
        result["contenders"][p] for p in ("onnxruntime", "onnxruntime-int8")
    )
    ratio = result["contenders"]["reslab-fp32"] / result["contenders"][best]
    assert result["ratio_to_best_peer"] == pytest.approx(ratio, rel=0.01)
    assert result["peak_gflops_bf16"] > 0 and result["peak_gops_int8"] > 0
    for name in result["contenders"]:
        p50, p99 = result["latency_ms"][name]["p50"], result["latency_ms"][name]["p99"]
        assert 0 < p50 <= p99
    assert json.loads(saved.read_text())["details"]["fraction_of_peaks"]["onnxruntime"]["gflops"] > 0


def test_against_report_and_errors(capsys):
    pytest.importorskip("onnxruntime", reason="the race test needs onnxruntime (the test extra)")
    args = [*TINY, "--against", "onnxruntime", "--paths", "fp32", "--no-compile", "--latency-iters", "0"]
    assert main(["benchmark", *args, "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "best peer: onnxruntime" in out and "reslab's best: reslab-fp32" in out and "vs best peer" in out
    assert "onnxruntime-int8" in out
    assert main(["benchmark", *TINY, "--against", "tensorrt"]) == 2
    assert "unknown peer 'tensorrt'" in capsys.readouterr().err
    assert main(["benchmark", *TINY, "--against", "--mode", "train"]) == 2
    with pytest.raises(Exception, match="unknown path"):
        run_race(RaceSettings(model="resnet8", paths=["fp64"]))


def test_plain_benchmark_runs_int8(capsys):
    """`reslab benchmark --precision int8` (against plain PyTorch): calibrated on random inputs, speed only."""
    pytest.importorskip("torchao", reason="int8 needs torchao (pip install reslab[int8])")
    args = [*TINY, "--precision", "int8", "--no-compile", "--threads", "1"]
    assert main(["benchmark", *args]) == 0
    out = capsys.readouterr().out
    assert "reslab (int8)" in out and "speedup" in out
