"""`reslab benchmark --against PEERS`: reslab's inference paths raced against what a user would pick
instead, on the same model, weights, batch and threads, in one process, alternating rounds.

reslab's paths: `optimize_for_inference` in fp32, bf16 (only where the CPU has fast bf16: AMX or
AVX512-BF16; elsewhere bf16 matmul runs at a few GFLOP/s and the path is listed as skipped) and int8
(the default backend as `reslab-int8`, each other installed backend as `reslab-int8-<backend>`).

Peers:
- torch-compile: what a competent user writes by hand: eval, channels_last, autocast bf16 where the CPU
  has fast bf16 (else fp32), `torch.compile` with inductor freezing.
- openvino: the model converted from `torch.export` and compiled for the CPU with OpenVINO's defaults
  (bf16 on AMX, fp32 elsewhere), and `openvino-int8`: the same quantized by NNCF's post-training
  quantization with NNCF's defaults on the same calibration images.
- onnxruntime: the ONNX export (torch.onnx dynamo exporter) in an ORT CPU session, all graph
  optimisations, and `onnxruntime-int8`: the same export quantized by ORT's `quantize_static` (QDQ, as
  `reslab export --precision int8` writes it: reslab.export.int8.quantize_onnx) on the same calibration
  images.

A peer whose package is not installed is skipped and listed as skipped, with why. The model has random
weights and the inputs and int8 calibration images are random normal: this measures speed only (int8's
accuracy on real test sets is tests/test_int8.py's and docs/speed.md's business).

Each contender also gets a batch-1 instance (compiled again, for the compiled paths) whose per-call
latency is recorded image by image, alternating, and reported as p50 and p99 in milliseconds.
The matmul peaks (bf16, fp32 and int8: `torch.ops.quantized.linear`, oneDNN/FBGEMM's int8 GEMM) are
measured in the same process after the race.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .benchmark import Contender, _baseline_infer_model, _time_chunks, measure_matmul_peak
from .errors import ReslabError
from .infer import optimize_for_inference
from .models import create_model
from .models.summary import count_macs
from .precision import cpu_has_fast_bf16

PEERS = ("torch-compile", "openvino", "onnxruntime")
PATHS = ("fp32", "bf16", "int8")
JSON_KEYS = (
    "model",
    "batch_size",
    "threads",
    "contenders",
    "best_peer",
    "reslab_best",
    "ratio_to_best_peer",
    "peak_gflops_bf16",
    "peak_gops_int8",
    "latency_ms",
    "skipped",
)
_PEER_PACKAGES = {
    "torch-compile": (),
    "openvino": ("openvino", "nncf"),
    "onnxruntime": ("onnxruntime", "onnx"),
}


@dataclass
class RaceSettings:
    """peers: names from PEERS (None: those installed). paths: reslab's precisions from PATHS."""

    model: str = "resnet50"
    batch_size: int = 16
    image_size: int | None = None
    threads: int | None = None
    peers: list[str] | None = None
    paths: list[str] = field(default_factory=lambda: list(PATHS))
    iters: int = 20
    warmup: int = 3
    rounds: int = 4
    latency_iters: int = 50
    calibration_images: int = 64
    compile: bool = True  # reslab's paths (the torch-compile peer always compiles)

    def check(self) -> None:
        if self.batch_size < 1 or self.iters < 1 or self.warmup < 0 or self.latency_iters < 0:
            raise ReslabError(
                "batch_size and iters must be positive, warmup and latency_iters not negative",
                params=("batch_size", "iters"),
            )
        if self.threads is not None and self.threads < 1:
            raise ReslabError(f"threads must be at least 1, got {self.threads}", params=("threads",))
        for name in self.peers or []:
            if name not in PEERS:
                raise ReslabError(
                    f"unknown peer {name!r}; choose from {', '.join(PEERS)}", params=("against",)
                )
        for name in self.paths:
            if name not in PATHS:
                raise ReslabError(f"unknown path {name!r}; choose from {', '.join(PATHS)}", params=("paths",))


def parse_peers(text: str | None) -> list[str] | None:
    """'torch-compile,openvino' -> the list; None or 'installed' -> None (every installed peer)."""
    if text is None or text == "installed":
        return None
    return [p.strip() for p in text.split(",") if p.strip()]


def missing_packages(peer: str) -> list[str]:
    return [p for p in _PEER_PACKAGES[peer] if importlib.util.find_spec(p) is None]


Runner = Callable[[torch.Tensor], object]


def _torch_compile_peer(model: nn.Module, x: torch.Tensor) -> Runner:
    """The hand-written fast path: channels_last, bf16 autocast where fast, compile with freezing."""
    bf16 = cpu_has_fast_bf16()
    net = model.to(memory_format=torch.channels_last)
    compiled = torch.compile(net)

    def run(batch: torch.Tensor) -> object:
        autocast = torch.autocast("cpu", torch.bfloat16, enabled=bf16)
        with torch.no_grad(), autocast, torch._inductor.config.patch(freezing=True):
            return compiled(batch.contiguous(memory_format=torch.channels_last))

    run(x)
    return run


def _openvino_peer(model: nn.Module, x: torch.Tensor, threads: int) -> Runner:
    import openvino as ov

    with torch.no_grad():
        program = torch.export.export(model, (x,))
    compiled = ov.Core().compile_model(ov.convert_model(program), "CPU", {"INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    return lambda batch: request.infer([batch.numpy()], share_inputs=True)


def _openvino_int8_peer(model: nn.Module, x: torch.Tensor, calibration: torch.Tensor, threads: int) -> Runner:
    from .quantize import openvino_quantize

    return openvino_quantize(model, x, calibration, threads=threads, nncf_defaults=True)


def _onnx_program(model: nn.Module, x: torch.Tensor):  # torch.onnx.ONNXProgram
    from .export.formats import INPUT_NAME, _quiet

    with _quiet():
        return torch.onnx.export(model, (x,), None, dynamo=True, verbose=False, input_names=[INPUT_NAME])


def _ort_runner(model_bytes: bytes, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch.numpy()})


def _onnxruntime_peer(model: nn.Module, x: torch.Tensor, threads: int) -> Runner:
    return _ort_runner(_onnx_program(model, x).model_proto.SerializeToString(), threads)


def _onnxruntime_int8_peer(
    model: nn.Module, x: torch.Tensor, calibration: torch.Tensor, threads: int
) -> Runner:
    """What an ORT user picks for int8: the export, quantize_static'd (QDQ), in the same session setup."""
    import tempfile
    from pathlib import Path

    from .export.int8 import quantize_onnx
    from .quantize import calibration_batches

    with tempfile.TemporaryDirectory(prefix="reslab-race-") as folder:
        fp32, int8 = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        _onnx_program(model, x).save(str(fp32), external_data=False)
        quantize_onnx(fp32, int8, calibration_batches(calibration, x.shape[0]))
        return _ort_runner(int8.read_bytes(), threads)


def _reslab_path(
    model: nn.Module, x: torch.Tensor, path: str, calibration: torch.Tensor, backend: str, compile: bool
) -> Runner:
    fast = optimize_for_inference(
        model, x, precision=path, compile=compile, calibration=calibration, backend=backend, device="cpu"
    )
    if fast.info.fallback_reason:
        raise RuntimeError(f"compile failed: {fast.info.fallback_reason}")
    return fast


def measure_int8_peak(seconds: float = 0.4, size: int = 2048) -> float:
    """Best observed GOP/s of a size^3 int8 GEMM through `torch.ops.quantized.linear` (the quantized
    engine's oneDNN/FBGEMM kernel: u8 x s8 -> s32, requantized): this machine's practical int8 peak."""
    gen = torch.Generator().manual_seed(0)
    with warnings.catch_warnings():  # torch.ao's quantized ops warn that they are deprecated
        warnings.simplefilter("ignore")
        return _int8_peak(gen, seconds, size)


def _int8_peak(gen: torch.Generator, seconds: float, size: int) -> float:
    x = torch.quantize_per_tensor(torch.randn(size, size, generator=gen), 0.05, 128, torch.quint8)
    w = torch.quantize_per_tensor(torch.randn(size, size, generator=gen), 0.05, 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(w, None)
    torch.ops.quantized.linear(x, packed, 0.1, 128)  # warm-up
    best, deadline = 0.0, time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        torch.ops.quantized.linear(x, packed, 0.1, 128)
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
        if time.perf_counter() > deadline:
            return best


def _fp32_peak(seconds: float = 0.4, size: int = 2048) -> float:
    """Best observed GFLOP/s of a size^3 fp32 matmul. Not measure_matmul_peak: its size search (needed for
    slow bf16) stops at a small size when a loaded machine preempts one 256^3 matmul past 20 ms."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # noqa: B018 - warm-up
    best, deadline = 0.0, time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        a @ b  # noqa: B018
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
        if time.perf_counter() > deadline:
            return best


@dataclass
class _Entry:
    name: str
    is_peer: bool
    build: Callable[[torch.Tensor], Runner]  # an example batch -> a runner compiled for its size
    int8: bool = False


def _entries(
    model: nn.Module, baseline: nn.Module, settings: RaceSettings, calibration: torch.Tensor, threads: int
):
    """What races, and what is skipped (name -> why)."""
    from .quantize import installed_backends, resolve_backend

    entries, skipped = [], {}
    for path in settings.paths:
        if path == "bf16" and not cpu_has_fast_bf16():
            skipped["reslab-bf16"] = "this CPU has no fast bf16 (no AMX or AVX512-BF16)"
            continue
        if path == "int8":
            if not installed_backends():
                skipped["reslab-int8"] = "no int8 backend installed (pip install torchao or reslab[openvino])"
                continue
            default = resolve_backend("auto")
            build = _reslab_builder(model, path, calibration, default, settings.compile)
            entries.append(_Entry("reslab-int8", False, build, True))
            for other in installed_backends():
                if other != default:  # every installed backend races, the default under the plain name
                    build = _reslab_builder(model, path, calibration, other, settings.compile)
                    entries.append(_Entry(f"reslab-int8-{other}", False, build, True))
            continue
        entries.append(
            _Entry(
                f"reslab-{path}", False, _reslab_builder(model, path, calibration, "auto", settings.compile)
            )
        )
    for peer in settings.peers if settings.peers is not None else list(PEERS):
        missing = missing_packages(peer)
        if missing:
            skipped[peer] = f"not installed ({', '.join(missing)})"
            continue
        entries.extend(_peer_entries(peer, baseline, calibration, threads))
    return entries, skipped


def _reslab_builder(model: nn.Module, path: str, calibration: torch.Tensor, backend: str, compile: bool):
    return lambda x: _reslab_path(model, x, path, calibration, backend, compile)


def _peer_entries(peer: str, baseline: nn.Module, calibration: torch.Tensor, threads: int) -> list[_Entry]:
    import copy

    if peer == "torch-compile":
        return [_Entry(peer, True, lambda x: _torch_compile_peer(copy.deepcopy(baseline), x))]
    if peer == "openvino":
        return [
            _Entry(peer, True, lambda x: _openvino_peer(baseline, x, threads)),
            _Entry(
                "openvino-int8", True, lambda x: _openvino_int8_peer(baseline, x, calibration, threads), True
            ),
        ]
    return [
        _Entry(peer, True, lambda x: _onnxruntime_peer(baseline, x, threads)),
        _Entry(
            "onnxruntime-int8",
            True,
            lambda x: _onnxruntime_int8_peer(baseline, x, calibration, threads),
            True,
        ),
    ]


def run_race(settings: RaceSettings, log: Callable[[str], None] | None = None) -> dict[str, object]:
    """Race reslab's paths against the peers; returns the JSON_KEYS dict plus "details"."""
    settings.check()
    saved = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        return _race(settings, log or (lambda _msg: None))
    finally:
        torch.set_num_threads(saved)


def _prepare(entries: list[_Entry], x: torch.Tensor, latency: bool, say, skipped: dict[str, str]):
    """Build each entry for the race batch (and batch 1); one that fails is skipped, with why."""
    from .infer import _failure_reason

    ready, seconds = [], {}
    for entry in entries:
        say(f"preparing {entry.name} (batch {x.shape[0]}{' and 1' if latency else ''}) ...")
        start = time.perf_counter()
        try:
            run, run1 = entry.build(x), (entry.build(x[:1].clone()) if latency else None)
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run this model is reported, not fatal
            skipped[entry.name] = f"failed: {_failure_reason(exc)}"
            continue
        seconds[entry.name] = round(time.perf_counter() - start, 1)
        ready.append((entry, run, run1))
    return ready, seconds


def _latencies(ready, x1: torch.Tensor, iters: int, rounds: int) -> dict[str, dict[str, float]]:
    """Per-call batch-1 latency, contenders alternating in chunks; p50 and p99 in ms."""
    samples: dict[str, list[float]] = {e.name: [] for e, _, _ in ready}
    for _ in range(2):  # warm-up
        for _entry, _run, run1 in ready:
            run1(x1)
    for r in range(rounds):
        order = ready if r % 2 == 0 else ready[::-1]
        for entry, _run, run1 in order:
            for _ in range(max(1, iters // rounds)):
                start = time.perf_counter()
                run1(x1)
                samples[entry.name].append(1000 * (time.perf_counter() - start))
    return {
        name: {"p50": round(statistics.median(s), 3), "p99": round(_percentile(s, 0.99), 3)}
        for name, s in samples.items()
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _race(settings: RaceSettings, say: Callable[[str], None]) -> dict[str, object]:
    from .benchmark import _warm_up

    torch.manual_seed(0)
    net = create_model(settings.model).eval()
    size = settings.image_size or net.config.native_input_size
    shape = (net.config.in_chans, size, size)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(settings.batch_size, *shape, generator=gen)
    calibration = torch.randn(settings.calibration_images, *shape, generator=gen)
    baseline = _baseline_infer_model(settings.model, net)  # torchvision's, for its names: what users run
    baseline.requires_grad_(False)
    threads = torch.get_num_threads()
    entries, skipped = _entries(net, baseline, settings, calibration, threads)
    latency = settings.latency_iters > 0
    ready, prepare_seconds = _prepare(entries, x, latency, say, skipped)
    if not ready:
        raise ReslabError(
            "nothing to race: every contender was skipped (" + "; ".join(skipped.values()) + ")"
        )
    contenders = [Contender(e.name, (lambda run=run: run(x)), settings.batch_size) for e, run, _ in ready]
    cpu = torch.device("cpu")
    _warm_up(contenders, settings.warmup, cpu)
    say(f"timing {settings.iters} batches each, {settings.rounds} alternating rounds ...")
    rates = _time_chunks(contenders, settings.iters, max(1, min(settings.rounds, settings.iters)), cpu)
    ips = {c.name: round(r, 2) for c, r in zip(contenders, rates, strict=True)}
    lat = _latencies(ready, x[:1].clone(), settings.latency_iters, settings.rounds) if latency else {}
    say("measuring this machine's matmul peaks (bf16, fp32, int8) ...")
    peaks = {
        "bf16": measure_matmul_peak(torch.bfloat16, cpu),
        "fp32": _fp32_peak(),
        "int8": measure_int8_peak(),
    }
    return _result(settings, ready, ips, lat, peaks, skipped, prepare_seconds, size, net, threads)


def _result(
    settings, ready, ips, lat, peaks, skipped, prepare_seconds, size, net, threads
) -> dict[str, object]:
    peers = [e.name for e, _, _ in ready if e.is_peer]
    ours = [e.name for e, _, _ in ready if not e.is_peer]
    best_peer = max(peers, key=ips.get) if peers else None
    reslab_best = max(ours, key=ips.get) if ours else None
    ratio = round(ips[reslab_best] / ips[best_peer], 3) if best_peer and reslab_best else None
    flop = 2 * count_macs(net.config, (size, size))
    fractions = {
        name: {
            "gflops": round(rate * flop / 1e9, 2),
            "of_bf16_peak": round(rate * flop / 1e9 / peaks["bf16"], 4),
            "of_fp32_peak": round(rate * flop / 1e9 / peaks["fp32"], 4),
            "of_int8_peak": round(rate * flop / 1e9 / peaks["int8"], 4),
        }
        for name, rate in ips.items()
    }
    return {
        "model": settings.model,
        "batch_size": settings.batch_size,
        "threads": threads,
        "contenders": ips,
        "best_peer": best_peer,
        "reslab_best": reslab_best,
        "ratio_to_best_peer": ratio,
        "peak_gflops_bf16": round(peaks["bf16"], 1),
        "peak_gops_int8": round(peaks["int8"], 1),
        "latency_ms": lat,
        "skipped": skipped,
        "details": {
            "image_size": size,
            "peak_gflops_fp32": round(peaks["fp32"], 1),
            "fraction_of_peaks": fractions,
            "prepare_seconds": prepare_seconds,
            "iters": settings.iters,
            "rounds": settings.rounds,
            "latency_iters": settings.latency_iters,
            "versions": _versions(),
        },
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "torchao", "openvino", "nncf", "onnxruntime"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
