"""The fast inference path agrees with the fp32 eager model (correctness only, never speed).

Tolerances: fp32 (BN folded, channels_last) <= 1e-4 relative logit error; bf16 <= 5e-2 (bf16 keeps
8 mantissa bits, ~4e-3 per rounding, accumulated over ~20 layers) with the same top-1 on >= 99% of
the digits test set, and on the Fashion-MNIST test set where it is installed.
"""

import dataclasses
import warnings

import pytest
import torch
from digits_model import train_tiny_resnet
from torch import nn

from reslab import create_model
from reslab.data import Split, load_data, normalise
from reslab.data.idx import FASHION_MNIST_DIR
from reslab.infer import (
    InferenceModel,
    compare_logits,
    fold_batchnorm,
    optimize_for_inference,
    should_compile,
)
from reslab.models.units import ORDERS

BF16_TOLERANCE = 5e-2


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so folding is really exercised."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


@pytest.fixture(scope="module")
def trained(digits):
    """A resnet8 trained for a few seconds on digits: real weights and real BN statistics."""
    model = train_tiny_resnet(digits, epochs=4, weight_decay=1e-4)
    mean = torch.tensor(digits.mean).view(1, -1, 1, 1)
    std = torch.tensor(digits.std).view(1, -1, 1, 1)
    return model, normalise(digits.test.images, mean, std), digits.test.labels


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name", ["resnet8", "preact_resnet11"])  # basic and bottleneck units
def test_fold_batchnorm_is_exact(order, name):
    torch.manual_seed(1)
    model = _randomise_bn(create_model(name, order=order, shortcut="B"))
    folded = fold_batchnorm(model)
    x = torch.randn(4, 3, 12, 12)
    result = compare_logits(model, folded, x)
    assert result["max_relative_logit_error"] <= 1e-4
    remaining = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    total = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    if order == "pre":
        assert remaining == total  # BN before the conv is never folded by hand
    else:
        assert remaining < total
    assert model.training is False and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_fold_batchnorm_leaves_original_untouched():
    model = _randomise_bn(create_model("resnet8"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold_batchnorm(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fp32_fast_path_matches_eager_on_random_and_real_inputs(trained):
    model, test_x, _ = trained
    fast = optimize_for_inference(model, test_x[:32], precision="fp32", compile=False)
    assert isinstance(fast, InferenceModel) and fast.info.precision == "fp32"
    random = compare_logits(model, fast, torch.randn(64, 1, 8, 8))
    real = compare_logits(model, fast, test_x)
    assert random["max_relative_logit_error"] <= 1e-4
    assert real["max_relative_logit_error"] <= 1e-4
    assert real["top1_agreement"] == 1.0


def test_bf16_fast_path_matches_eager_within_tolerance(trained):
    model, test_x, labels = trained
    fast = optimize_for_inference(model, test_x[:32], precision="bf16", compile=False)
    assert fast.info.channels_last and fast.model.conv1.weight.dtype == torch.bfloat16
    real = compare_logits(model, fast, test_x)
    random = compare_logits(model, fast, torch.randn(64, 1, 8, 8))
    assert real["top1_agreement"] >= 0.99
    assert real["max_relative_logit_error"] <= BF16_TOLERANCE
    assert random["max_relative_logit_error"] <= BF16_TOLERANCE
    # The model learnt something, so agreement is not agreement between two coin flips.
    accuracy = float((fast(test_x).argmax(1) == labels).float().mean())
    assert accuracy > 0.8
    out = fast(test_x[:5])
    assert out.dtype == torch.float32 and out.shape == (5, 10)


@pytest.mark.skipif(
    not any(FASHION_MNIST_DIR.glob("t10k-images*")), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_bf16_fast_path_agrees_on_the_fashion_mnist_test_set():
    bundle = load_data("fashion-mnist")
    # Seconds of training on 2,000 images: real weights and BN statistics, not a good model.
    subset = dataclasses.replace(bundle, train=Split(bundle.train.images[:2000], bundle.train.labels[:2000]))
    model = train_tiny_resnet(subset, epochs=4, weight_decay=1e-4)
    mean = torch.tensor(bundle.mean).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std).view(1, -1, 1, 1)
    test_x = normalise(bundle.test.images, mean, std)
    fast = optimize_for_inference(model, test_x[:500], precision="bf16", compile=False)
    real = compare_logits(model, fast, test_x, batch_size=500)
    assert real["top1_agreement"] >= 0.99 and real["max_relative_logit_error"] <= BF16_TOLERANCE
    accuracy = float((fast(test_x).argmax(1) == bundle.test.labels).float().mean())
    assert len(test_x) == 10000 and accuracy > 0.6, accuracy  # chance is 0.1


def test_auto_rule_never_compiles_a_single_prediction(trained):
    model, test_x, _ = trained
    assert not should_compile(model, test_x[:1], torch.device("cpu"), workload=None)
    assert not should_compile(model, test_x[:1], torch.device("cpu"), workload=1)
    big = create_model("resnet50")
    assert should_compile(big, torch.zeros(16, 3, 224, 224), torch.device("cpu"), workload=10_000)
    fast = optimize_for_inference(model, test_x[:1])
    assert fast.info.compiled is False


def test_compile_failure_falls_back_to_eager(trained, monkeypatch):
    model, test_x, _ = trained

    def broken_compile(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken_compile)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = optimize_for_inference(model, test_x[:32], precision="fp32", compile=True)
    assert fast.info.compiled is False and "no compiler here" in fast.info.fallback_reason
    assert any("torch.compile failed" in str(w.message) for w in caught)
    assert compare_logits(model, fast, test_x)["max_relative_logit_error"] <= 1e-4


def test_compiled_batching_pads_and_chunks(trained):
    """The chunk/pad logic of the compiled path, with an eager stand-in for the compiled callable."""
    model, test_x, _ = trained
    fast = optimize_for_inference(model, test_x[:16], precision="fp32", compile=False)
    seen: list[int] = []

    def fixed_batch(x):
        seen.append(x.shape[0])
        assert torch._inductor.config.freezing  # patched around each compiled call ...
        return fast.model(x)

    fast.__dict__["_compiled"] = fixed_batch
    n = 16 * 3 + 5  # three full batches and a short one
    result = compare_logits(model, fast, test_x[:n], batch_size=n)
    assert set(seen) == {16} and len(seen) == 4
    assert not torch._inductor.config.freezing  # ... and only there
    assert result["max_relative_logit_error"] <= 1e-4 and result["n"] == n
