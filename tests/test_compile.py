"""torch.compile for real on the CPU: no stand-in for the compiler, inductor generates and builds C++.

Everywhere else the compiled paths are skipped (CUDA-only tests), replaced by an eager stand-in, or turned
off, and `optimize_for_inference` falls back to eager on any compiler failure, so a broken compiled path
would only cost speed. These tests fail instead.

Observables: torch._dynamo's counters (frames compiled, graphs, graph breaks, AOT autograd, inductor's
oneDNN weight-packing passes, which run only with freezing) and the results against eager.
Tolerances (measured here, the resnet8 trained below on digits, its 359 test images): fp32 compiled
inference differs from eager by 9.4e-7 of the largest logit (inductor folds BN and fuses the ReLU and the
add, so sums run in another order): bound 1e-5, same top-1 everywhere; bf16 by 1.2e-2: the README's
bound 5e-2 and >= 99% the same top-1. A 2-step fp32 training run, compiled vs eager: max |weight
difference| 2.5e-7 (per step the compiled forward/backward agrees with eager to ~3e-6 of each gradient):
bound 1e-5.

Time (shared 2-core CPU, one thread): with inductor's on-disk cache cold (a fresh TORCHINDUCTOR_CACHE_DIR)
the fp32 inference test took 14 s, bf16 9 s, the training test 41 s; with it warm 1-4 s each.
"""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
import torch._inductor.compile_fx as inductor_compile_fx
from digits_model import train_tiny_resnet
from torch._dynamo.utils import counters

import reslab
from reslab.checkpoint import load_checkpoint
from reslab.cli import main
from reslab.data import load_data, normalise
from reslab.infer import compare_logits, optimize_for_inference

pytestmark = pytest.mark.skipif(
    not any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++")),
    reason="inductor needs a C++ compiler on the CPU",
)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """One thread (8x8 images; a second thread only waits on a busy machine), and dynamo's caches and
    counters cleared, so each test compiles (and counts) from scratch."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained():
    digits = load_data("digits")
    model = train_tiny_resnet(digits, epochs=4, weight_decay=1e-4)
    mean = torch.tensor(digits.mean).view(1, -1, 1, 1)
    std = torch.tensor(digits.std).view(1, -1, 1, 1)
    return model, normalise(digits.test.images, mean, std)


def _compile_for_inference(model, example, precision):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = optimize_for_inference(model, example, precision=precision, compile=True)
    assert not [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
    return fast


def _assert_compiled_once() -> None:
    assert counters["frames"]["ok"] == 1, dict(counters["frames"])
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert not counters["graph_break"], dict(counters["graph_break"])


@pytest.mark.parametrize(
    "precision,tolerance,agreement", [("fp32", 1e-5, 1.0), ("bf16", 5e-2, 0.99)], ids=["fp32", "bf16"]
)
def test_inference_really_compiles_and_agrees_with_eager(trained, precision, tolerance, agreement):
    model, test_x = trained
    fast = _compile_for_inference(model, test_x[:16], precision)
    # What it reports: compiled, no fallback.
    assert fast.info.compiled is True and fast.info.fallback_reason is None
    assert fast.info.to_dict()["compiled"] is True and fast.info.batch_size == 16
    # What happened: dynamo compiled one graph, whole, and inductor froze the weights: in fp32 its oneDNN
    # weight-packing pass, which runs only on frozen (constant) weights, packed the convolutions (in bf16
    # it packs only where the CPU has fast bf16; on this AVX2-only CPU it does not).
    _assert_compiled_once()
    if precision == "fp32" and torch.backends.mkldnn.is_available():
        assert counters["inductor"]["mkldnn_conv_weight_pack_matcher_count"] > 0, dict(counters["inductor"])
    # All 359 test images: chunks of 16 and a last chunk of 7, zero-padded, through the same graph.
    result = compare_logits(model, fast, test_x)
    assert result["n"] == 359
    assert result["max_relative_logit_error"] <= tolerance, result
    assert result["top1_agreement"] >= agreement, result
    assert counters["stats"]["unique_graphs"] == 1 and counters["frames"]["ok"] == 1  # no recompile
    assert fast(test_x[:3]).shape == (3, 10) and fast(test_x[:3]).dtype == torch.float32


def _broken_inductor(*args, **kwargs):
    raise RuntimeError("inductor broke while generating code [cpp_fused_0]")


def test_a_compile_failure_is_reported_in_info_and_eager_serves(trained, monkeypatch):
    """The compiler fails inside the first compiled call (where inductor's real failures happen: code
    generation or the C++ build), not in torch.compile() itself."""
    monkeypatch.setattr(inductor_compile_fx, "compile_fx", _broken_inductor)
    model, test_x = trained
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = optimize_for_inference(model, test_x[:16], precision="fp32", compile=True)
    info = fast.info.to_dict()
    assert info["compiled"] is False
    # The reason names the compiler's own error, not only dynamo's wrapper around it.
    assert info["fallback_reason"].startswith("BackendCompilerFailed: RuntimeError: "), info
    assert "inductor broke while generating code" in info["fallback_reason"], info
    assert "\n" not in info["fallback_reason"]
    assert any("inductor broke" in str(w.message) for w in caught)  # and a warning says so as well
    assert counters["frames"]["ok"] == 0  # nothing compiled
    result = compare_logits(model, fast, test_x)
    assert result["max_relative_logit_error"] <= 1e-5 and result["top1_agreement"] == 1.0


def test_benchmark_reports_a_compile_fallback(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(inductor_compile_fx, "compile_fx", _broken_inductor)
    saved = tmp_path / "bench.json"
    argv = ["benchmark", "--model", "resnet8", "--batch-size", "4", "--iters", "2", "--warmup", "1"]
    argv += ["--image-size", "16", "--threads", "1", "--precision", "fp32", "--save", str(saved)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    out = capsys.readouterr().out
    # The reason printed whole (its [brackets] are not taken for rich markup).
    assert "note: compile fell back to eager: BackendCompilerFailed: RuntimeError: inductor broke" in out, out
    assert "generating code [cpp_fused_0]" in out, out
    assert "reslab (fp32):" in out and "torch.compile" not in out.split("reslab (fp32")[1].splitlines()[0]
    details = json.loads(saved.read_text())["details"]
    assert details["compiled"] is False and "inductor broke" in details["fallback_reason"]


def _tiny_run(out, compile: bool):
    # 1259 digits / 512 = 2 steps: enough to train through the compiled step twice, few enough that fp32
    # rounding differences between fused and eager kernels stay at rounding level.
    return reslab.train(
        model="resnet8",
        data="digits",
        epochs=1,
        batch_size=512,
        lr=0.05,
        precision="fp32",
        device="cpu",
        threads=1,
        seed=0,
        quiet=True,
        compile=compile,
        out=out,
    )


def test_train_with_compile_really_compiles_and_tracks_eager(tmp_path):
    eager = _tiny_run(tmp_path / "eager", compile=False)
    assert not counters["frames"]  # the eager run compiles nothing
    compiled = _tiny_run(tmp_path / "compiled", compile=True)
    # The training step ran through one compiled graph, forward and backward (AOT autograd), no breaks.
    _assert_compiled_once()
    assert counters["aot_autograd"]["ok"] == 1, dict(counters["aot_autograd"])
    # ... and trained what eager trained.
    a = load_checkpoint(eager.run_dir / "last.pt")["model"]
    b = load_checkpoint(compiled.run_dir / "last.pt")["model"]
    assert a.keys() == b.keys()  # the plain module's keys (no "_orig_mod." prefix)
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-5
    (e,), (c,) = eager.metrics, compiled.metrics
    assert c["step"] == e["step"] == 2
    for key in ("train_loss", "val_loss"):
        assert c[key] == pytest.approx(e[key], rel=1e-5), key
    assert c["train_error"] == e["train_error"] and c["val_error"] == e["val_error"]
    assert compiled.test["accuracy"] == eager.test["accuracy"] and compiled.test["n"] == 359
