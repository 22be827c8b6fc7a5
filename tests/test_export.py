"""Export round trips: each format read back the way a server reads it, against the PyTorch model."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from reslab.checkpoint import model_payload, save_checkpoint
from reslab.cli import main
from reslab.data import load_data
from reslab.errors import ReslabError
from reslab.export import FORMATS, export_checkpoint, export_model, read_metadata
from reslab.export import formats as export_formats
from reslab.models import create_model


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    """A CIFAR-family resnet20 on digits (1x8x8), with BN statistics that are not the init ones."""
    torch.manual_seed(0)
    bundle = load_data("digits")
    model = create_model("resnet20", in_chans=1, num_classes=10)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("digits") / "best.pt"
    save_checkpoint(path, {**model_payload(model), "data": bundle.info()})
    return path, model.eval(), bundle


@pytest.fixture(scope="module")
def imagenet_ckpt(tmp_path_factory):
    """An ImageNet-family resnet18 at 64x64 whose data set is not on this machine."""
    torch.manual_seed(1)
    model = create_model("resnet18", num_classes=5)
    info = {
        "spec": "folder:/nonexistent/imagenet-subset",
        "class_names": [f"c{i}" for i in range(5)],
        "in_chans": 3,
        "image_size": [64, 64],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    path = tmp_path_factory.mktemp("imagenet") / "last.pt"
    save_checkpoint(path, {**model_payload(model), "data": info})
    return path, model.eval()


def _run_file(fmt, path, x):
    """Load and run an exported file independently of reslab's own checker."""
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    if fmt == "torchscript":
        return torch.jit.load(str(path))(x)
    return torch.export.load(str(path)).module()(x)


@pytest.mark.parametrize("fmt", FORMATS)
def test_cifar_model_round_trip_dynamic_batch(digits_ckpt, tmp_path, fmt):
    path, model, bundle = digits_ckpt
    out = tmp_path / f"model{export_formats.SUFFIXES[fmt]}"
    report = export_checkpoint(path, fmt, out=out, dynamic_batch=True, batch_size=3)
    assert report.passed and report.written and out.is_file()
    assert report.batch_sizes == [1, 3] and report.max_abs_diff <= 1e-4
    assert report.input_source.startswith("digits test split")
    assert report.size_bytes == out.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temp files left
    meta = read_metadata(out)
    assert meta["class_names"] == bundle.class_names and meta["mean"] == pytest.approx(list(bundle.mean))
    mean = torch.tensor(bundle.mean).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std).view(1, -1, 1, 1)
    x = (bundle.test.images[:3].float() / 255 - mean) / std
    with torch.no_grad():
        for n in (1, 3):
            got, expected = _run_file(fmt, out, x[:n]), model(x[:n])
            assert got.shape == (n, 10)
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    if fmt == "onnx":
        proto = onnx.load(str(out))
        assert report.opset == 20 and [o.version for o in proto.opset_import if o.domain == ""] == [20]
        # What a serving client relies on: float32 'input' (N, C, H, W) with a symbolic N, 'logits' out.
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        (inp,), (outp,) = session.get_inputs(), session.get_outputs()
        assert (inp.name, inp.type, inp.shape[1:], outp.name) == (
            "input",
            "tensor(float)",
            [1, 8, 8],
            "logits",
        )
        assert isinstance(inp.shape[0], str)
        assert session.run(None, {"input": np.zeros((5, 1, 8, 8), np.float32)})[0].shape == (5, 10)


@pytest.mark.parametrize("fmt", FORMATS)
def test_imagenet_model_round_trip_static(imagenet_ckpt, fmt):
    path, model = imagenet_ckpt
    report = export_checkpoint(path, fmt, batch_size=2)
    out = path.with_name("last" + export_formats.SUFFIXES[fmt])  # default name beside the checkpoint
    assert report.passed and report.path == str(out) and out.is_file()
    assert report.input_shape == [2, 3, 64, 64] and report.batch_sizes == [2]
    assert report.input_source.startswith("random normal batch (could not load data")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(_run_file(fmt, out, x), model(x), atol=1e-4, rtol=0)


def test_onnx_opset_below_18_uses_torchscript_exporter(digits_ckpt, tmp_path):
    path, _, _ = digits_ckpt
    report = export_checkpoint(path, "onnx", out=tmp_path, opset=17, dynamic_batch=True, batch_size=3)
    assert report.passed and report.opset == 17 and "TorchScript-based" in report.exporter
    proto = onnx.load(str(tmp_path / "best.onnx"))
    assert [o.version for o in proto.opset_import if o.domain == ""] == [17]


def test_cli_prints_the_check_and_json(digits_ckpt, tmp_path, capsys):
    path, _, _ = digits_ckpt
    out = tmp_path / "served.ts.pt"
    assert main(["export", str(path), "--format", "torchscript", "--out", str(out), "--dynamic-batch"]) == 0
    text = capsys.readouterr().out
    assert "format    torchscript, dynamic batch" in text and "batch sizes 1, 8" in text
    assert text.rstrip().endswith("PASS") and out.is_file()
    assert main(["export", str(path.parent), "-f", "exported-program", "-o", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["format"] == "exported-program" and report["opset"] is None
    assert report["path"] == str(tmp_path / "best.pt2") and report["batch_sizes"] == [1]


def test_failed_check_exits_nonzero_and_keeps_the_old_file(digits_ckpt, tmp_path, capsys, monkeypatch):
    path, _, _ = digits_ckpt
    out = tmp_path / "best.ts.pt"
    out.write_bytes(b"previous good export")
    real = export_formats.load_runner

    def drifting_runtime(fmt, file):
        run, name = real(fmt, file)
        return (lambda x: run(x) + 1e-3), name

    monkeypatch.setattr(export_formats, "load_runner", drifting_runtime)
    assert main(["export", str(path), "-f", "torchscript", "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "check FAILED" in captured.err and "1.00e-03" in captured.err
    assert out.read_bytes() == b"previous good export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ts.pt"]


def test_unloadable_file_is_a_failed_check(digits_ckpt, tmp_path, capsys, monkeypatch):
    path, _, _ = digits_ckpt

    def broken_loader(fmt, file):
        raise RuntimeError("file is corrupt")

    monkeypatch.setattr(export_formats, "load_runner", broken_loader)
    report = export_checkpoint(path, "exported-program", out=tmp_path)
    assert not report.passed and not report.written and not any(tmp_path.iterdir())
    assert any("file is corrupt" in note for note in report.notes)


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}"], "does not exist"),
        (["{corrupt}"], "cannot read checkpoint"),
        (["{ckpt}", "--out", "{tmp}/no/such/dir/m.onnx"], "does not exist"),
        (["{ckpt}", "--out", "{corrupt}/m.onnx"], "does not exist"),
        (["{ckpt}", "-f", "exported-program", "-o", "{tmp}/m.pt"], "only files ending in .pt2"),
        (["{ckpt}", "-f", "torchscript", "--opset", "18"], "--opset applies only to --format onnx"),
        (["{ckpt}", "--opset", "99"], "out of range"),
        (["{ckpt}", "--dynamic-batch", "--batch-size", "1"], "--batch-size must be at least 2"),
    ],
)
def test_bad_input_is_one_line_exit_2(digits_ckpt, tmp_path, capsys, args, message):
    path, _, _ = digits_ckpt
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    values = {"missing": tmp_path / "missing.pt", "corrupt": corrupt, "ckpt": path, "tmp": tmp_path}
    argv = ["export", *(a.format(**values) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.pt"]


def test_unknown_format_in_python_api(digits_ckpt):
    with pytest.raises(ReslabError, match="unknown export format 'tflite'"):
        export_checkpoint(digits_ckpt[0], "tflite")


def test_export_model_leaves_the_callers_model_as_it_was(tmp_path):
    model = create_model("resnet8", in_chans=1, num_classes=3).train()
    example = torch.randn(2, 1, 8, 8)
    report = export_model(model, example, "torchscript", tmp_path / "m.ts.pt", batch_sizes=(2,))
    assert report.passed and report.input_shape == [2, 1, 8, 8] and report.input_source == "the given batch"
    assert model.training
    with pytest.raises(ReslabError, match="is a folder"):
        export_model(model, example, "torchscript", tmp_path)


def test_rtol_accepts_fp32_rounding_of_huge_logits(digits_ckpt, tmp_path, capsys, monkeypatch):
    """A relative error of 5e-6 (fp32 kernel rounding) fails a strict atol, with a hint; --rtol accepts it."""
    path, _, _ = digits_ckpt
    real = export_formats.load_runner

    def rounding_runtime(fmt, file):
        run, name = real(fmt, file)
        return (lambda x: run(x) * (1 + 5e-6)), name

    monkeypatch.setattr(export_formats, "load_runner", rounding_runtime)
    argv = ["export", str(path), "-f", "torchscript", "-o", str(tmp_path), "--atol", "1e-9"]
    assert main(argv) == 1
    assert "--rtol 1e-5 accepts that" in capsys.readouterr().err
    assert main([*argv, "--rtol", "1e-5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["max_abs_diff"] <= report["tolerance"]
    assert report["tolerance"] == pytest.approx(1e-9 + 1e-5 * report["max_abs_logit"])
