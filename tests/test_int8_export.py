"""`reslab export --precision int8`: the quantized file loads in its own runtime, agrees with fp32 on the
real digits test set, refuses (and keeps an older file) below the agreement threshold; bad options are
one line and exit 2."""

import json

import onnx
import onnxruntime as ort
import pytest
import torch

from reslab.checkpoint import model_payload, save_checkpoint
from reslab.cli import main
from reslab.data import load_data, normalise
from reslab.evaluate import checkpoint_and_model
from reslab.export import formats as export_formats
from reslab.export import read_metadata
from reslab.models import create_model


@pytest.fixture(scope="module")
def digits_fp32(digits_run):
    """The digits run's fp32 model, its whole normalised test split and the model's top-1 on it."""
    payload, model = checkpoint_and_model(digits_run, torch.device("cpu"))
    bundle = load_data("digits")
    mean = torch.tensor(payload["data"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(payload["data"]["std"]).view(1, -1, 1, 1)
    test = normalise(bundle.test.images, mean, std)
    with torch.no_grad():
        return test, model(test).argmax(1)


def test_int8_onnx_runs_in_onnxruntime_and_agrees_with_fp32(digits_run, digits_fp32, tmp_path, capsys):
    test, fp32_top1 = digits_fp32
    out = tmp_path / "m.onnx"
    argv = ["export", str(digits_run), "--precision", "int8", "-o", str(out), "--dynamic-batch", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["written"] and report["precision"] == "int8"
    assert report["top1_agreement"] >= 0.99 and report["min_agreement"] == 0.99
    assert report["batch_sizes"] == [1, 6, 8] and report["atol"] is None
    assert report["calibration"].startswith("256 images of the digits training split")
    assert report["input_source"].startswith("359 images of the digits test split")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    # Independently of reslab: ONNX Runtime runs the QDQ graph at any batch size.
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"input": test.numpy()})[0])
    assert got.shape == (len(test), 10)
    assert (got.argmax(1) == fp32_top1).float().mean() >= 0.99
    assert read_metadata(out)["precision"] == "int8"


def test_int8_exported_program_loads_with_torch_export(digits_run, digits_fp32, tmp_path, capsys):
    pytest.importorskip("torchao", reason="int8 exported-program needs torchao (pip install reslab[int8])")
    test, fp32_top1 = digits_fp32
    args = ["export", str(digits_run), "--precision", "int8", "-f", "exported-program", "-o", str(tmp_path)]
    assert main([*args, "--batch-size", "32"]) == 0
    text = capsys.readouterr().out
    assert "format    exported-program, int8, static batch 32" in text and text.rstrip().endswith("PASS")
    out = tmp_path / "best-int8.pt2"
    import torch.ao.quantization.fx._decomposed  # noqa: F401 - registers the quantized_decomposed ops

    program = torch.export.load(str(out)).module()
    padded = torch.cat([test, test[: 32 - len(test) % 32]])
    with torch.no_grad():
        got = torch.cat([program(batch) for batch in padded.split(32)])[: len(test)]
    assert (got.argmax(1) == fp32_top1).float().mean() >= 0.99


def test_low_agreement_refuses_and_keeps_the_old_file(digits_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "best-int8.onnx"
    out.write_bytes(b"previous good export")
    real = export_formats.load_runner

    def swapped_classes(fmt, file):
        run, name = real(fmt, file)
        return (lambda x: run(x).flip(1)), name

    monkeypatch.setattr(export_formats, "load_runner", swapped_classes)
    assert main(["export", str(digits_run), "--precision", "int8", "-o", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and captured.err.count("\n") == 1
    assert "check FAILED: the int8 onnx file picks the fp32 model's class on" in captured.err
    assert out.read_bytes() == b"previous good export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-int8.onnx"]


@pytest.fixture(scope="module")
def elsewhere_ckpt(tmp_path_factory):
    """A checkpoint whose data set is not on this machine."""
    model = create_model("resnet8", in_chans=1, num_classes=3)
    info = {
        "spec": "folder:/nonexistent/data",
        "class_names": ["a", "b", "c"],
        "in_chans": 1,
        "image_size": [8, 8],
        "mean": [0.5],
        "std": [0.25],
    }
    path = tmp_path_factory.mktemp("elsewhere") / "best.pt"
    save_checkpoint(path, {**model_payload(model), "data": info})
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        (["-f", "torchscript", "--precision", "int8"], "--precision int8 exports --format onnx or exported"),
        (["-f", "safetensors", "--precision", "int8"], "not safetensors"),
        (["--calibration", "folder:{tmp}"], "apply only to --precision int8"),
        (["--min-agreement", "0.9"], "apply only to --precision int8"),
        (["--precision", "int8", "--atol", "1e-3"], "apply to --precision fp32"),
        (["--precision", "int8", "--min-agreement", "1.5"], "--min-agreement must be in (0, 1]"),
        (["--precision", "int8", "--calibration", "imagenet"], "folder:DIR"),
        (["--precision", "int8", "--calibration", "folder:{tmp}/none"], "is not a folder"),
        (["--precision", "int8", "--opset", "12"], "opset 13 or later"),
        (["{elsewhere}", "--precision", "int8"], "cannot be loaded here"),
    ],
)
def test_bad_int8_options_are_one_line_exit_2(digits_run, elsewhere_ckpt, tmp_path, capsys, args, message):
    values = {"tmp": tmp_path, "elsewhere": elsewhere_ckpt}
    args = [a.format(**values) for a in args]
    checkpoint = [] if args[0] == str(elsewhere_ckpt) else [str(digits_run)]
    assert main(["export", *checkpoint, *args, "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())
