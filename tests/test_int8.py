"""int8 post-training quantization (reslab.quantize): accuracy on the real digits test set, the CLI,
the torchao shared-ReLU fix, and the user errors."""

import json

import pytest
import torch
from digits_model import train_tiny_resnet

from reslab import create_model, quantize
from reslab.cli import main
from reslab.data import load_data, normalise
from reslab.errors import ReslabError
from reslab.infer import compare_logits, fold_batchnorm, optimize_for_inference
from reslab.quantize import (
    calibration_batches,
    installed_backends,
    int8_precision,
    parse_calibration,
    resolve_backend,
)

torchao = pytest.importorskip("torchao", reason="the int8 tests need torchao (pip install torchao)")


@pytest.fixture(scope="module")
def digits():
    """A resnet8 trained on digits, its normalised test set and 256 training images to calibrate on."""
    bundle = load_data("digits")
    model = train_tiny_resnet(bundle, epochs=10)
    mean = torch.tensor(bundle.mean).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std).view(1, -1, 1, 1)
    test = normalise(bundle.test.images, mean, std)
    calibration = normalise(bundle.train.images[:256], mean, std)
    return model, test, bundle.test.labels, calibration


def _accuracy(run, images, labels):
    with torch.no_grad():
        return float((run(images).argmax(1) == labels).float().mean())


@pytest.mark.parametrize("backend", ["torchao", "openvino"])
def test_int8_matches_fp32_on_the_digits_test_set(digits, backend, one_thread):
    if backend not in installed_backends():
        pytest.skip(f"int8 backend {backend} is not installed (pip install reslab[openvino])")
    model, test, labels, calibration = digits
    fast = optimize_for_inference(
        model, test[:64], precision="int8", calibration=calibration, backend=backend
    )
    assert fast.info.precision == "int8" and fast.info.backend == backend
    assert fast.info.compiled and fast.info.fallback_reason is None
    fp32, int8 = _accuracy(model, test, labels), _accuracy(fast, test, labels)
    assert fp32 > 0.9  # a trained model, or the comparison below says nothing
    assert abs(int8 - fp32) <= 0.005
    report = compare_logits(model, fast, test)
    assert report["top1_agreement"] >= 0.99
    assert report["max_relative_logit_error"] < 0.25
    assert report["n"] == len(labels)
    # Any batch size: a short last chunk is padded, an empty batch gives no rows.
    assert torch.equal(fast(test[:5]), fast(test[:64])[:5])
    assert fast(test[:0]).shape[0] == 0


def test_shared_relu_is_why_the_x86_quantizer_failed():
    """One nn.ReLU called twice per unit: with torch.export's non-strict default its calls form one
    source partition with two outputs, which X86InductorQuantizer rejects; reslab un-shares them."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from reslab.quantize import _unshare_activations

    model = fold_batchnorm(create_model("resnet8", in_chans=1, num_classes=10))
    x = torch.randn(2, 1, 8, 8)

    def prepare(unshare: bool) -> None:
        gm = torch.export.export(model, (x,)).module()
        if unshare:
            _unshare_activations(gm)
        quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
        prepare_pt2e(gm, quantizer)

    with pytest.raises(ValueError, match="more than one output node"):
        prepare(unshare=False)
    prepare(unshare=True)


def test_calibration_batches_fill_the_last_batch_with_real_images():
    images = torch.arange(5.0).view(5, 1, 1, 1)
    batches = calibration_batches(images, 4)
    assert [b.flatten().tolist() for b in batches] == [[0, 1, 2, 3], [4, 0, 1, 2]]
    with pytest.raises(ReslabError, match="calibration"):
        calibration_batches(torch.zeros(0, 1, 8, 8), 4)


def test_int8_user_errors(digits):
    model, test, _labels, calibration = digits
    with pytest.raises(ReslabError, match="CPU"):
        int8_precision(torch.device("cuda"))
    with pytest.raises(ReslabError, match="calibration images"):
        optimize_for_inference(model, test[:8], precision="int8")
    with pytest.raises(ReslabError, match="calibration images are"):
        optimize_for_inference(model, test[:8], precision="int8", calibration=torch.zeros(4, 3, 8, 8))
    with pytest.raises(ReslabError, match="unknown int8 backend"):
        resolve_backend("tensorrt")
    with pytest.raises(ReslabError, match="folder:DIR"):
        parse_calibration("imagenet")
    assert parse_calibration("data") is None and parse_calibration("folder:/x") == "/x"


@pytest.mark.parametrize(
    ("installed", "chosen"), [(["torchao", "openvino"], "openvino"), (["torchao"], "torchao")]
)
def test_auto_prefers_the_faster_openvino_where_installed(monkeypatch, installed, chosen):
    monkeypatch.setattr(quantize, "installed_backends", lambda: installed)
    assert resolve_backend("auto") == chosen
    assert resolve_backend("torchao") == "torchao"


def test_cli_int8_errors(digits_run, tmp_path, capsys):
    out = str(tmp_path / "c.png")
    assert main(["eval", str(digits_run), "--precision", "int8", "--no-fast", "--out", out]) == 2
    assert "drop --no-fast" in capsys.readouterr().err
    args = ["eval", str(digits_run), "--precision", "int8", "--calibration", "folder:/nonexistent"]
    assert main([*args, "--out", out]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_cli_eval_int8_on_the_checkpoints_data(digits_run, tmp_path, capsys):
    """`reslab eval --precision int8` calibrates on the checkpoint's own training data by default."""
    out = str(tmp_path / "c.png")
    assert main(["eval", str(digits_run), "--json", "--precision", "fp32", "--out", out]) == 0
    fp32 = json.loads(capsys.readouterr().out)
    assert main(["eval", str(digits_run), "--json", "--precision", "int8", "--out", out]) == 0
    int8 = json.loads(capsys.readouterr().out)
    assert int8["precision"] == "int8" and int8["n"] == fp32["n"]
    assert abs(int8["accuracy"] - fp32["accuracy"]) <= 0.005


def test_cli_predict_int8_calibrated_on_a_folder(digits_run, digit_folder, capsys):
    """`reslab predict --precision int8 --calibration folder:DIR`: the classifier's path (predict and
    serve) calibrates on image files read as the model's inputs, and agrees with fp32."""
    folder, paths, _labels = digit_folder
    args = ["predict", str(digits_run), str(folder), "--json", "--topk", "1"]
    assert main([*args, "--precision", "fp32"]) == 0
    fp32 = {row["path"]: row["top"][0]["index"] for row in json.loads(capsys.readouterr().out)}
    assert main([*args, "--precision", "int8", "--calibration", f"folder:{folder}"]) == 0
    int8 = {row["path"]: row["top"][0]["index"] for row in json.loads(capsys.readouterr().out)}
    assert len(int8) == len(paths) and set(int8) == set(fp32)
    assert sum(int8[p] == fp32[p] for p in fp32) >= len(paths) - 1


def test_pretrained_weights_need_a_calibration_folder(digits):
    """Weights by name carry no training data: int8 asks for --calibration folder:DIR."""
    from reslab.classifier import ImageClassifier
    from reslab.data.eval_transform import EvalTransform
    from reslab.quantize import classifier_calibration

    model = digits[0]
    classifier = ImageClassifier(
        model=model,
        transform=EvalTransform.fit(1, (8, 8)),
        mean=(0.5,),
        std=(0.5,),
        class_names=[str(i) for i in range(10)],
        precision=int8_precision(torch.device("cpu")),
        device=torch.device("cpu"),
        source="ResNet18_Weights.IMAGENET1K_V1",
        name="resnet18",
    )
    with pytest.raises(ReslabError, match="--calibration folder:DIR"):
        classifier_calibration(classifier)
