"""The CUDA paths end to end (skipped without a GPU, so CPU CI skips the whole file).

Run on a GPU machine by benchmarks/cuda_check.sh. Each test takes seconds on an H100 (the two torch.compile
tests tens of seconds: inductor's cold compile). What is checked:

- training on cuda: precision auto resolves to bf16 + channels_last, the run directory is written and its
  checkpoints load back (weights_only, onto the CPU); fp16 trains through the GradScaler and an interrupted
  fp16 run resumes on cuda (optimiser, scaler and CUDA RNG states come back from a CPU-mapped checkpoint);
  `compile=True` trains an epoch;
- `optimize_for_inference` on cuda against the fp32 eager model: auto (bf16) and fp16 within the stated
  relative tolerances with the same top-1 on >= 99% of the digits (and Fashion-MNIST, when present) test
  set; fp32 within 1e-4; the compiled (inductor freezing) graph with padded chunks;
- `evaluate`/`predict`/`eval --fast/--no-fast` on cuda with the cuda-trained checkpoint, and on the CPU;
- DDP: `reslab train --nproc 1 --device cuda --sync-bn` (nccl; one GPU, so one rank), and
  torch.nn.SyncBatchNorm + DDP over two ranks sharing the GPU (gloo: nccl refuses two ranks on one GPU)
  computing the one-process gradients;
- `reslab benchmark --device cuda --json` (infer and train) emits every key; `reslab export` of the
  cuda-trained checkpoint in every format passes its check and runs on the CPU.

Tolerances: "fp32 eager" references run with TF32 off (PyTorch lets cuDNN convolutions use TF32 by
default, which alone differs from fp32 by ~1e-3). bf16: test_infer.BF16_TOLERANCE (5e-2). fp16 keeps 11
significant bits (3 more than bf16, so ~8x less rounding error per operation): FP16_TOLERANCE = 1e-2.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from test_benchmark import TINY as TINY_BENCHMARK
from test_distributed import _batch, _env, _free_port, _step_state
from test_export import _run_file
from test_infer import BF16_TOLERANCE
from test_train import Interrupt, _interrupt_after
from torch import nn

import reslab
from reslab.benchmark import JSON_KEYS
from reslab.checkpoint import load_checkpoint, model_from_checkpoint
from reslab.cli import main
from reslab.data import load_data, normalise
from reslab.data.idx import FASHION_MNIST_DIR
from reslab.export import FORMATS
from reslab.export import formats as export_formats
from reslab.infer import compare_logits, optimize_for_inference
from reslab.precision import strict_fp32
from reslab.training.distributed import convert_sync_batchnorm, session, wrap_ddp
from reslab.training.recipes import steps_per_epoch
from reslab.training.run_dir import read_metrics

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

FP16_TOLERANCE = 1e-2
CUDA = {"device": "cuda", "quiet": True}


def _eager_fp32(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with strict_fp32("cuda"):
            return model(x.cuda())

    return run


def _normalised_test_images(spec: str) -> tuple[torch.Tensor, torch.Tensor]:
    bundle = load_data(spec)
    mean = torch.tensor(bundle.mean).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std).view(1, -1, 1, 1)
    return normalise(bundle.test.images, mean, std), bundle.test.labels


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory) -> Path:
    """resnet8 trained on digits on cuda with every default (precision auto)."""
    out = tmp_path_factory.mktemp("cuda") / "run"
    reslab.train(model="resnet8", epochs=3, batch_size=32, out=out, **CUDA)
    return out


@pytest.fixture(scope="module")
def trained(cuda_run):
    """The cuda run's best weights as an fp32 model on the GPU, and the normalised digits test set."""
    model = model_from_checkpoint(load_checkpoint(cuda_run / "best.pt")).cuda().eval()
    images, labels = _normalised_test_images("digits")
    return model, images, labels


# -- training -------------------------------------------------------------------------------------
def test_auto_training_is_bf16_and_writes_a_run_that_loads_on_the_cpu(cuda_run):
    for name in ("config.json", "metrics.jsonl", "test.json", "last.pt", "best.pt", "curves.png"):
        assert (cuda_run / name).is_file(), name
    config = json.loads((cuda_run / "config.json").read_text())
    assert config["precision"] == {"precision": "bf16", "channels_last": True}
    assert config["device"]["device"] == "cuda"
    assert config["environment"]["cuda_device"] == torch.cuda.get_device_name()
    rows = read_metrics(cuda_run)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and all(math.isfinite(r["train_loss"]) for r in rows)
    test = json.loads((cuda_run / "test.json").read_text())
    assert test["n"] == 359 and test["accuracy"] > 0.6  # chance is 0.1
    for name in ("best.pt", "last.pt"):  # weights_only=True, mapped onto the CPU
        payload = load_checkpoint(cuda_run / name)
        tensors = [v for v in payload["model"].values() if isinstance(v, torch.Tensor)]
        assert tensors and all(t.device.type == "cpu" for t in tensors)
        assert payload["rng"]["cuda"] and payload["grad_scaler"] is None  # bf16 needs no loss scaling


def test_fp16_trains_through_the_grad_scaler_and_an_interrupted_run_resumes_on_cuda(tmp_path, monkeypatch):
    settings = dict(model="resnet8", precision="fp16", epochs=2, batch_size=128, lr=0.05, **CUDA)
    cut = tmp_path / "cut"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, steps_per_epoch(len(load_data("digits").train), 128) + 2)  # in epoch 2
        with pytest.raises(Interrupt):
            reslab.train(out=cut, **settings)
    first = load_checkpoint(cut / "last.pt")
    assert first["epoch"] == 1 and first["grad_scaler"]["scale"] > 0
    assert json.loads((cut / "config.json").read_text())["precision"]["precision"] == "fp16"

    resumed = reslab.train(resume=cut, quiet=True)
    assert [r["epoch"] for r in read_metrics(cut)] == [1, 2]
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in resumed.metrics)
    last = load_checkpoint(cut / "last.pt")
    assert last["epoch"] == 2 and math.isfinite(last["grad_scaler"]["scale"])
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    assert resumed.test["n"] == 359 and resumed.test["accuracy"] > 0.2


def test_compiled_training_runs_an_epoch(tmp_path):
    result = reslab.train(model="resnet8", epochs=1, batch_size=128, compile=True, out=tmp_path / "c", **CUDA)
    assert result.config.model.compile is True and result.config.precision.precision == "bf16"
    assert math.isfinite(result.metrics[0]["train_loss"]) and result.test["n"] == 359


# -- optimize_for_inference ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "precision, dtype, tolerance",
    [("auto", torch.bfloat16, BF16_TOLERANCE), ("fp16", torch.float16, FP16_TOLERANCE)],
)
def test_fast_path_agrees_with_fp32_eager(trained, precision, dtype, tolerance):
    model, images, labels = trained
    fast = optimize_for_inference(model, images[:64].cuda(), precision=precision)
    assert fast.info.channels_last and fast.model.conv1.weight.dtype == dtype
    assert fast.info.compiled is False  # "auto" never compiles without a workload
    real = compare_logits(_eager_fp32(model), fast, images)
    random = compare_logits(_eager_fp32(model), fast, torch.randn(64, 1, 8, 8))
    assert real["top1_agreement"] >= 0.99 and real["n"] == 359
    assert real["max_relative_logit_error"] <= tolerance
    assert random["max_relative_logit_error"] <= tolerance
    out = fast(images[:5])
    assert out.dtype == torch.float32 and out.device.type == "cuda" and out.shape == (5, 10)
    assert float((out.argmax(1).cpu() == labels[:5]).float().mean()) >= 0.4


def test_fp32_fast_path_matches_eager_tightly(trained):
    model, images, _ = trained
    fast = optimize_for_inference(model, images[:64].cuda(), precision="fp32")
    assert fast.info.precision == "fp32" and not fast.info.channels_last
    tf32 = torch.backends.cudnn.allow_tf32  # PyTorch's default: True
    # No TF32 switch here: the fast model's own fp32 must be strict (the reference's is, by strict_fp32).
    result = compare_logits(_eager_fp32(model), fast, images)
    assert torch.backends.cudnn.allow_tf32 == tf32
    assert result["max_relative_logit_error"] <= 1e-4 and result["top1_agreement"] == 1.0


def test_compiled_fast_path_pads_and_agrees(trained):
    model, images, _ = trained
    fast = optimize_for_inference(model, images[:64].cuda(), precision="auto", compile=True)
    assert fast.info.compiled and fast.info.fallback_reason is None
    # 359 images in calls of 256 and 103: compiled chunks of 64, the last (39) zero-padded.
    result = compare_logits(_eager_fp32(model), fast, images, batch_size=256)
    assert result["top1_agreement"] >= 0.99 and result["max_relative_logit_error"] <= BF16_TOLERANCE


def _fashion_dir() -> Path | None:
    """Fashion-MNIST's IDX files: `.fmnist/` in the repository root (cuda_check.sh), or Debian's path."""
    for folder in (Path(__file__).resolve().parents[1] / ".fmnist", FASHION_MNIST_DIR):
        if any(folder.glob("t10k-images*")):
            return folder
    return None


@pytest.mark.skipif(_fashion_dir() is None, reason="Fashion-MNIST is neither in .fmnist/ nor installed")
def test_fast_path_agrees_on_fashion_mnist(tmp_path):
    spec = f"fashion-mnist:{_fashion_dir()}"
    result = reslab.train(model="resnet8", data=spec, epochs=1, batch_size=256, out=tmp_path / "f", **CUDA)
    assert result.test["n"] == 10000 and result.test["accuracy"] > 0.5
    model = model_from_checkpoint(load_checkpoint(result.run_dir / "best.pt")).cuda().eval()
    images, _ = _normalised_test_images(spec)
    fast = optimize_for_inference(model, images[:500].cuda())
    real = compare_logits(_eager_fp32(model), fast, images, batch_size=500)
    assert real["top1_agreement"] >= 0.99 and real["max_relative_logit_error"] <= BF16_TOLERANCE


# -- evaluate / predict -------------------------------------------------------------------------------
def test_evaluate_on_cuda_repeats_the_run_and_loads_on_the_cpu(cuda_run, tmp_path, capsys):
    test = json.loads((cuda_run / "test.json").read_text())
    slow = reslab.evaluate(cuda_run / "best.pt", device="cuda", fast=False)
    assert slow["precision"] == "bf16" and slow["n"] == 359
    assert abs(slow["accuracy"] - test["accuracy"]) <= 1 / 359  # the run's own test computation
    fast = reslab.evaluate(cuda_run, device="cuda")
    assert abs(fast["accuracy"] - test["accuracy"]) <= 0.01  # bf16 BN-folded weights: <= 1% may flip
    cpu = reslab.evaluate(cuda_run / "best.pt", device="cpu", precision="fp32")
    assert cpu["n"] == 359 and abs(cpu["accuracy"] - test["accuracy"]) <= 0.02
    results = {}
    for flag in ("--fast", "--no-fast"):
        argv = ["eval", str(cuda_run / "best.pt"), "--device", "cuda", "--json", flag]
        assert main([*argv, "--out", str(tmp_path / f"cm{flag}.png")]) == 0
        results[flag] = json.loads(capsys.readouterr().out)
    assert abs(results["--fast"]["accuracy"] - results["--no-fast"]["accuracy"]) <= 0.01


def test_predict_on_cuda_and_on_the_cpu(cuda_run, tmp_path, capsys):
    test = load_data("digits").test
    files, labels = [], []
    for i in range(0, 40, 4):
        files.append(str(tmp_path / f"digit{i}.png"))
        Image.fromarray(test.images[i, 0].numpy(), mode="L").save(files[-1])
        labels.append(str(int(test.labels[i])))
    top1 = {}
    for device in ("cuda", "cpu"):
        for flag in ("--fast", "--no-fast"):
            assert (
                main(["predict", str(cuda_run / "best.pt"), *files, "--device", device, "--json", flag]) == 0
            )
            top1[device, flag] = [r["top"][0]["class"] for r in json.loads(capsys.readouterr().out)]
    reference = top1["cuda", "--no-fast"]
    assert sum(a == b for a, b in zip(reference, labels, strict=True)) >= 7
    for key, classes in top1.items():
        assert sum(a == b for a, b in zip(classes, reference, strict=True)) >= 9, key


# -- DDP ------------------------------------------------------------------------------------------
def test_nproc_1_trains_over_nccl_with_sync_bn(tmp_path, capfd):
    out = tmp_path / "ddp"
    argv = ["train", "--nproc", "1", "--device", "cuda", "--sync-bn", "--model", "resnet8", "--epochs", "1"]
    code = main([*argv, "--batch-size", "128", "--quiet", "--out", str(out)])
    assert code == 0, capfd.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["device"]["device"] == "cuda:0"  # the rank's own GPU
    dist_info = config["distributed"]
    assert dist_info["world_size"] == 1 and "nccl" in dist_info["backend"] and dist_info["sync_bn"] is True
    assert json.loads((out / "test.json").read_text())["n"] == 359
    assert (
        load_checkpoint(out / "last.pt")["model"].keys() == load_checkpoint(out / "best.pt")["model"].keys()
    )


def _cuda_grads_worker(rank: int, port: int, out: str, sync_bn: bool) -> None:
    _env(rank, port)
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    dist.init_process_group("gloo")  # both ranks share the one GPU, which nccl refuses
    try:
        with session() as ctx, strict_fp32("cuda"):  # session() uses the group given to it
            torch.manual_seed(0)
            model = reslab.create_model("resnet8", in_chans=1, num_classes=10).to(device)
            if sync_bn:
                model = convert_sync_batchnorm(model, device)
                assert any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
            ddp = wrap_ddp(model, ctx, device)
            x, y = (t.to(device) for t in _batch())
            state = _step_state(ddp, x[16 * rank : 16 * (rank + 1)], y[16 * rank : 16 * (rank + 1)])
            if ctx.is_main:
                torch.save({k: v.cpu() for k, v in state.items()}, out)
    finally:
        dist.destroy_process_group()


def test_sync_batchnorm_over_two_ranks_computes_the_one_process_gradients(tmp_path):
    torch.manual_seed(0)
    with strict_fp32("cuda"):
        model = reslab.create_model("resnet8", in_chans=1, num_classes=10).cuda()
        single = {k: v.cpu() for k, v in _step_state(model, *(t.cuda() for t in _batch())).items()}
    differences = {}
    for sync_bn in (True, False):
        out = tmp_path / f"sync{sync_bn}.pt"
        # spawn, not fork: this process has already initialised CUDA.
        mp.start_processes(
            _cuda_grads_worker, args=(_free_port(), str(out), sync_bn), nprocs=2, start_method="spawn"
        )
        ddp = torch.load(out)
        assert ddp.keys() == single.keys()
        differences[sync_bn] = max((ddp[k] - single[k]).abs().max().item() for k in single)
    assert differences[True] < 1e-4, differences
    assert differences[False] > 1e-3, differences


# -- benchmark and export ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["infer", "train"])
def test_benchmark_on_cuda_emits_every_key(mode, tmp_path, capsys):
    saved = tmp_path / "result.json"
    argv = ["benchmark", *TINY_BENCHMARK, "--mode", mode, "--device", "cuda", "--no-compile", "--json"]
    assert main([*argv, "--save", str(saved)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert tuple(result) == JSON_KEYS and result["mode"] == mode
    for key in JSON_KEYS[3:]:
        assert isinstance(result[key], float) and result[key] > 0, key
    details = json.loads(saved.read_text())["details"]
    assert details["device"] == "cuda" and details["precision"] == "bf16" and details["channels_last"]
    assert result["peak_gflops_bf16"] > result["peak_gflops_fp32"]  # tensor cores


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_of_a_cuda_trained_checkpoint_runs_on_the_cpu(cuda_run, tmp_path, capsys, fmt):
    out = tmp_path / f"model{export_formats.SUFFIXES[fmt]}"
    argv = ["export", str(cuda_run), "--format", fmt, "--out", str(out), "--dynamic-batch", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["batch_sizes"] == [1, 8] and out.is_file()
    assert report["input_source"].startswith("digits test split")
    model = model_from_checkpoint(load_checkpoint(cuda_run / "best.pt")).eval()
    x, _ = _normalised_test_images("digits")
    with torch.no_grad():
        torch.testing.assert_close(_run_file(fmt, out, x[:3]), model(x[:3]), atol=1e-4, rtol=0)
