"""`reslab benchmark` runs on a tiny model and reports every JSON key (correctness only, never speed)."""

import json
import os
import resource
import signal
import stat

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


def _canned_result(*args, **kwargs) -> dict[str, object]:
    """What run_benchmark returns, without running anything (for tests of --save alone)."""
    return {**{key: 1.0 for key in JSON_KEYS}, "model": "resnet8", "mode": "infer", "details": {"note": "é"}}


def test_save_writes_json_atomically_into_new_folders(tmp_path, capsys):
    saved = tmp_path / "new" / "folder" / "result.json"
    argv = ["benchmark", *TINY, "--threads", "1", "--no-compile", "--json", "--save", str(saved)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads(saved.read_text())
    assert {key: written[key] for key in JSON_KEYS} == printed
    assert written["details"]["compiled"] is False and written["details"]["image_size"] == 16
    assert [p.name for p in saved.parent.iterdir()] == ["result.json"]  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600


def test_a_failed_save_keeps_the_previous_file_whole(tmp_path, capsys, monkeypatch):
    """--save at a path that already holds a result, and the write fails part-way (the file-size limit
    stands in for a full disk): one line, exit 2, and the previous file is still there, byte for byte."""
    import reslab.cli.benchmark_cmd as benchmark_cmd

    saved = tmp_path / "result.json"
    previous = json.dumps({"model": "resnet50", "speedup": 10.79}, indent=1) + "\n"
    saved.write_text(previous)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG as an OSError, not a signal

    def run_then_limit_file_size(*args, **kwargs):
        resource.setrlimit(resource.RLIMIT_FSIZE, (20, limits[1]))  # the JSON is about 300 bytes
        return _canned_result()

    monkeypatch.setattr(benchmark_cmd, "run_benchmark", run_then_limit_file_size)
    try:
        code = main(["benchmark", "--json", "--save", str(saved)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, old_handler)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and str(saved) in err, err
    assert saved.read_text() == previous
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    # Without the limit the same command replaces it.
    monkeypatch.setattr(benchmark_cmd, "run_benchmark", _canned_result)
    assert main(["benchmark", "--json", "--save", str(saved)]) == 0
    assert json.loads(saved.read_text())["details"] == {"note": "é"}
