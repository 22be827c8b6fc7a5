"""Speed against plain PyTorch, measured in one process: the baseline and reslab's path alternate.

Inference. Baseline: torchvision's model (for the torchvision names; reslab's own model otherwise,
e.g. the CIFAR nets) with the same weights, eager, fp32, NCHW. reslab: `optimize_for_inference`.

Training. Baseline: a plain fp32 step (SGD, NCHW) fed by a torchvision-style DataLoader whose dataset
applies RandomCrop + RandomHorizontalFlip + ToTensor + Normalize per sample to PIL images (one
process, num_workers=0: on a 2-core machine workers only compete with the model for the cores).
reslab: the engine's `make_train_step` (bf16 autocast + channels_last where the hardware has it,
foreach/fused SGD) fed by `DeviceBatches` over one uint8 copy of the data on the device.

After warm-up (which includes any compilation), `rounds` rounds each time a chunk of baseline
iterations and a chunk of reslab iterations, swapping which goes first every round, so a neighbour's
load on a shared machine hits both sides alike. The matmul peak (bf16 and fp32) is measured in the
same process with a short large matmul.

Host memory: by default both sides run under glibc malloc's defaults, as plain PyTorch does (the
baseline then spends much of its time in page faults: reslab.host_memory). `tune_allocator=True`
(`--tune-allocator`) tunes malloc for the whole process first, so both sides run without them; it
cannot be undone in this process.
"""

from __future__ import annotations

import copy
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .data import DeviceBatches, Split
from .errors import ReslabError
from .host_memory import host_allocator_tuned, tune_host_allocator
from .infer import optimize_for_inference
from .models import create_model
from .models.summary import count_macs
from .precision import Precision, resolve_device, resolve_precision

MODES = ("infer", "train")
JSON_KEYS = (
    "model",
    "mode",
    "batch_size",
    "baseline_images_per_second",
    "reslab_images_per_second",
    "speedup",
    "gflops",
    "peak_gflops_bf16",
    "peak_gflops_fp32",
    "peak_rss_mb",
)
TORCHVISION_NAMES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _square_operands(
    size: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b  # noqa: B018 - warm-up: kernel selection and page faults
    _sync(device)
    return a, b


def measure_matmul_peak(dtype: torch.dtype, device: torch.device, seconds: float = 0.4) -> float:
    """Best observed GFLOP/s of a large square matmul in `dtype` (a practical peak for this machine).

    CUDA: 8192x8192. CPU: 2048x2048, or the first smaller size (from 256, doubling) whose matmul takes
    at least 20 ms: where `dtype` has no fast kernels (bf16 on a CPU without AMX/AVX512-BF16, about
    0.2 GFLOP/s on one AVX2 core) a single 2048 matmul would take over a minute.
    """
    size = 8192 if device.type == "cuda" else 256
    a, b = _square_operands(size, dtype, device)
    while device.type != "cuda" and size < 2048:
        start = time.perf_counter()
        a @ b  # noqa: B018
        if time.perf_counter() - start >= 0.02:
            break
        size *= 2
        a, b = _square_operands(size, dtype, device)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        a @ b  # noqa: B018
        _sync(device)
        elapsed = time.perf_counter() - start
        best = max(best, 2 * size**3 / elapsed / 1e9)
        if time.perf_counter() > deadline:
            return best


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


@dataclass
class Contender:
    """One side of the race: `step()` runs one batch; `sync()` waits for the device."""

    name: str
    step: Callable[[], object]
    images_per_step: int


def _time_chunks(contenders: list[Contender], iters: int, rounds: int, device: torch.device) -> list[float]:
    totals = [0.0] * len(contenders)
    per_round = [iters // rounds + (1 if r < iters % rounds else 0) for r in range(rounds)]
    for r, count in enumerate(per_round):
        order = list(range(len(contenders)))
        if r % 2:
            order.reverse()
        for i in order:
            _sync(device)
            start = time.perf_counter()
            for _ in range(count):
                contenders[i].step()
            _sync(device)
            totals[i] += time.perf_counter() - start
    return [iters * c.images_per_step / t for c, t in zip(contenders, totals, strict=True)]


def _baseline_infer_model(name: str, reslab_model: nn.Module) -> nn.Module:
    if name in TORCHVISION_NAMES and reslab_model.config.family == "imagenet":
        import torchvision

        tv = getattr(torchvision.models, name)(weights=None, num_classes=reslab_model.config.num_classes)
        tv.load_state_dict(reslab_model.state_dict())
        return tv.eval()
    return reslab_model


def _infer_contenders(
    model: nn.Module, name: str, x: torch.Tensor, precision: str, compile: bool
) -> tuple[list[Contender], dict[str, object]]:
    baseline = _baseline_infer_model(name, model).to(x.device)
    # int8 calibrates on inputs like the timed ones (random weights and inputs: speed only).
    calibration = (
        torch.randn(64, *x.shape[1:], generator=torch.Generator().manual_seed(1))
        if precision == "int8"
        else None
    )
    fast = optimize_for_inference(model, x, precision=precision, compile=compile, calibration=calibration)

    def run_baseline() -> object:
        with torch.no_grad():
            return baseline(x)

    def run_fast() -> object:
        return fast(x)

    n = x.shape[0]
    return [Contender("baseline", run_baseline, n), Contender("reslab", run_fast, n)], fast.info.to_dict()


class _PerSampleDataset(torch.utils.data.Dataset):
    """A torchvision-style dataset: uint8 HWC arrays -> PIL -> per-sample transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        self.images = images.permute(0, 2, 3, 1).numpy()  # HWC, as PIL wants
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        array = self.images[index]
        image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
        return self.transform(image), self.labels[index]


def _cycle(make_iter: Callable[[], Iterator]) -> Iterator:
    while True:
        yield from make_iter()


def _train_contenders(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    device: torch.device,
    precision: str,
    compile: bool,
) -> tuple[list[Contender], dict[str, object]]:
    data = _TrainData(images, labels, batch_size, device)
    prec = resolve_precision(precision, device)
    contenders = [
        Contender("baseline", _baseline_train_step(copy.deepcopy(model), data), batch_size),
        Contender("reslab", _reslab_train_step(model, data, prec, compile), batch_size),
    ]
    return contenders, {"precision": prec.name, "channels_last": prec.channels_last, "compiled": compile}


class _TrainData:
    """What both sides of the training race share: the images, their statistics and pad-crop size."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device):
        self.images, self.labels, self.batch_size, self.device = images, labels, batch_size, device
        self.size = images.shape[-1]
        self.pad = max(1, self.size // 8)
        pixels = images.float().div(255)
        self.mean = tuple(float(m) for m in pixels.mean(dim=(0, 2, 3)))
        self.std = tuple(float(s) for s in pixels.std(dim=(0, 2, 3)))


def _baseline_train_step(model: nn.Module, data: _TrainData) -> Callable[[], object]:
    """Plain PyTorch: fp32, NCHW, per-sample transforms on the host through a DataLoader."""
    from torchvision import transforms

    model = model.to(data.device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    transform = transforms.Compose(
        [
            transforms.RandomCrop(data.size, padding=data.pad),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(data.mean, data.std),
        ]
    )
    dataset = _PerSampleDataset(data.images, data.labels, transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=data.batch_size, shuffle=True, drop_last=True)
    batches = _cycle(lambda: iter(loader))

    def step() -> object:
        x, y = next(batches)
        x, y = x.to(data.device), y.to(data.device)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step


def _reslab_train_step(
    model: nn.Module, data: _TrainData, prec: Precision, compile: bool
) -> Callable[[], object]:
    """The engine's step, the data on the device once, augmented there."""
    from .training.step import make_train_step

    device = data.device
    model = model.to(device).train()
    if prec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    fused = device.type == "cuda"
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        foreach=None if fused else True,
        fused=True if fused else None,
    )
    # As `reslab train --compile` does: the optimiser keeps the eager module's parameters.
    train_step = make_train_step(torch.compile(model) if compile else model, optimizer, prec, track=False)
    device_batches = DeviceBatches(
        Split(data.images, data.labels).to(device),
        data.batch_size,
        data.mean,
        data.std,
        shuffle=True,
        augment=True,
        pad=data.pad,
        allow_flip=True,
        drop_last=True,
        generator=torch.Generator(device=device).manual_seed(0),
        channels_last=prec.channels_last,
    )
    batches = _cycle(lambda: iter(device_batches))

    def step() -> object:
        x, y = next(batches)
        return train_step(x, y)

    return step


def run_benchmark(
    model: str = "resnet50",
    mode: str = "infer",
    batch_size: int = 16,
    *,
    iters: int = 20,
    warmup: int = 3,
    rounds: int = 4,
    image_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    compile: bool = True,
    num_classes: int | None = None,
    dataset_size: int | None = None,
    threads: int | None = None,
    tune_allocator: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Run the race; returns the JSON_KEYS dict plus a "details" dict (precision, compiled, ...)."""
    if threads is not None and threads < 1:
        raise ReslabError(f"threads must be at least 1, got {threads}", params=("threads",))
    if tune_allocator:
        tune_host_allocator()
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(
            model,
            mode,
            batch_size,
            iters,
            warmup,
            rounds,
            image_size,
            device,
            precision,
            compile,
            num_classes,
            dataset_size,
            log,
        )
    finally:
        torch.set_num_threads(saved)


def _warm_up(contenders: list[Contender], warmup: int, device: torch.device) -> float:
    """Untimed steps of each side first (compiling happens here); returns their seconds."""
    start = time.perf_counter()
    for _ in range(warmup):
        for contender in contenders:
            contender.step()
    _sync(device)
    return round(time.perf_counter() - start, 2)


def _run(
    model: str,
    mode: str,
    batch_size: int,
    iters: int,
    warmup: int,
    rounds: int,
    image_size: int | None,
    device: str,
    precision: str,
    compile: bool,
    num_classes: int | None,
    dataset_size: int | None,
    log: Callable[[str], None] | None,
) -> dict[str, object]:
    if mode not in MODES:
        raise ReslabError(f"unknown mode {mode!r}; choose infer or train")
    if batch_size < 1 or iters < 1 or warmup < 0:
        raise ReslabError(
            "batch_size and iters must be positive and warmup not negative",
            params=("batch_size", "iters", "warmup"),
        )
    say = log or (lambda _msg: None)
    dev = resolve_device(device)
    torch.manual_seed(0)
    overrides = {"num_classes": num_classes} if num_classes else {}
    net = create_model(model, **overrides).eval()
    size = image_size or net.config.native_input_size
    shape = (net.config.in_chans, size, size)

    if mode == "infer":
        x = torch.randn(batch_size, *shape, device=dev)
        say(f"preparing {model} for inference (batch {batch_size}, {size}x{size}) ...")
        net = net.to(dev)
        contenders, details = _infer_contenders(net, model, x, precision, compile)
    else:
        n = dataset_size or max(4 * batch_size, 512)
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen)
        labels = torch.randint(0, net.config.num_classes, (n,), generator=gen)
        contenders, details = _train_contenders(net, images, labels, batch_size, dev, precision, compile)

    details["warmup_seconds"] = _warm_up(contenders, warmup, dev)
    say(f"warm-up done in {details['warmup_seconds']} s; timing {iters} iterations each, alternating ...")
    baseline_ips, reslab_ips = _time_chunks(contenders, iters, max(1, min(rounds, iters)), dev)

    say("measuring this machine's matmul peak (bf16 and fp32) ...")
    peak_bf16 = measure_matmul_peak(torch.bfloat16, dev)
    peak_fp32 = measure_matmul_peak(torch.float32, dev)
    flop_per_image = 2 * count_macs(net.config, (size, size)) * (3 if mode == "train" else 1)
    gflops = reslab_ips * flop_per_image / 1e9
    details.update(
        baseline_gflops=round(baseline_ips * flop_per_image / 1e9, 2),
        fraction_of_bf16_peak=round(gflops / peak_bf16, 4),
        fraction_of_fp32_peak=round(gflops / peak_fp32, 4),
        image_size=size,
        device=str(dev),
        iters=iters,
        warmup=warmup,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        host_allocator="tuned" if host_allocator_tuned() else "default",
    )
    return {
        "model": model,
        "mode": mode,
        "batch_size": batch_size,
        "baseline_images_per_second": round(baseline_ips, 2),
        "reslab_images_per_second": round(reslab_ips, 2),
        "speedup": round(reslab_ips / baseline_ips, 3),
        "gflops": round(gflops, 2),
        "peak_gflops_bf16": round(peak_bf16, 1),
        "peak_gflops_fp32": round(peak_fp32, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "details": details,
    }
