"""The fast inference path: BN folded into convolutions, channels_last, bf16/fp16, torch.compile.

`optimize_for_inference(model, example_input)` returns a module that takes fp32 NCHW images (any
batch size) and returns fp32 logits, computed the fast way the hardware allows:

- eval mode, and every BatchNorm that directly follows a convolution folded into that convolution
  (exact up to fp32 rounding). Pre-activation BNs (BN *before* the conv) are left alone: folding them
  into the next conv is wrong at zero-padded borders; inductor's freezing pass folds what it can.
- channels_last and the weights in bf16 (CPUs with AMX/AVX512-BF16, CUDA) or fp16 (CUDA on request),
  per `reslab.precision.resolve_precision`.
- torch.compile with inductor freezing (weights become constants, so convolutions get pre-packed
  oneDNN/cuDNN kernels) when the workload pays for the compile time; on CUDA also CUDA graphs
  (mode "reduce-overhead"). Otherwise, or when compile is unavailable or fails, the eager path
  (folded + channels_last + bf16) serves the same results.
- precision "fp32" is true fp32 on CUDA too (cuDNN's default TF32 is switched off inside).

Compile rule (`compile="auto"`): compile only when the expected workload, `workload` images times
2 x MACs per image, is at least COMPILE_MIN_FLOP[device] (CPU: 10 TFLOP, about 20 s of eager bf16
on a 2-core AMX machine and comparable to the compile time of a ResNet; CUDA: 1 PFLOP). With no
`workload` given the model is assumed to serve one batch (a single prediction), which never compiles.

A compiled graph is specialised to the example batch size: bigger inputs run in chunks of that size
and a smaller (last) chunk is zero-padded to it and sliced back, so a test set whose last batch is
short runs with no recompilation.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .errors import ReslabError
from .models.resnet import ResNet
from .models.units import ResidualUnit
from .precision import Precision, resolve_precision

COMPILE_MIN_FLOP = {"cpu": 1e13, "cuda": 1e15}


def _fold_pair(owner: nn.Module, conv_name: str, bn_name: str) -> None:
    conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
    if conv is None or bn is None:
        return
    setattr(owner, conv_name, fuse_conv_bn_eval(conv, bn))
    setattr(owner, bn_name, nn.Identity())


def _fold_unit(unit: ResidualUnit) -> None:
    if unit.order == "pre":
        return  # every BN precedes its conv
    pairs = [("conv1", "bn1"), ("conv2", "bn2")] + ([("conv3", "bn3")] if unit.conv3 is not None else [])
    if unit.order == "bn_after_add":
        pairs = pairs[:-1]  # the last BN normalises the sum, not the conv's output
    for conv_name, bn_name in pairs:
        _fold_pair(unit, conv_name, bn_name)
    shortcut = unit.downsample
    if (
        isinstance(shortcut, nn.Sequential)
        and len(shortcut) == 2
        and isinstance(shortcut[0], nn.Conv2d)
        and isinstance(shortcut[1], nn.BatchNorm2d)
    ):
        unit.downsample = nn.Sequential(fuse_conv_bn_eval(shortcut[0], shortcut[1]), nn.Identity())


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with each conv-then-BN pair of a reslab ResNet folded into the conv.

    Exact in real arithmetic (fp32 rounding only). Modules other than reslab ResNets are returned as
    an eval-mode copy unchanged.
    """
    folded = copy.deepcopy(model).eval()
    if not isinstance(folded, ResNet):
        return folded
    if folded.bn1 is not None:
        _fold_pair(folded, "conv1", "bn1")
    for unit in folded.units():
        _fold_unit(unit)
    return folded


def _macs_per_image(model: nn.Module, example_input: torch.Tensor) -> int | None:
    if not isinstance(model, ResNet):
        return None
    from .models.summary import count_macs

    return count_macs(model.config, tuple(example_input.shape[-2:]))


def should_compile(
    model: nn.Module, example_input: torch.Tensor, device: torch.device, workload: int | None
) -> bool:
    """The `compile="auto"` rule (module docstring): compile only when the workload pays for it."""
    if workload is None or device.type not in COMPILE_MIN_FLOP:
        return False
    macs = _macs_per_image(model, example_input)
    if macs is None:
        return False
    return 2 * macs * workload >= COMPILE_MIN_FLOP[device.type]


@dataclass
class InferenceInfo:
    precision: str
    channels_last: bool
    compiled: bool
    batch_size: int
    fallback_reason: str | None = None
    backend: str | None = None  # int8 only: torchao or openvino

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class _ConvertThenRun(nn.Module):
    """The compiled graph: input dtype/layout conversion, the model and the fp32 cast in one graph,
    so inductor fuses the conversion with the first kernels (measured 6-21% faster, three one-process
    comparisons on resnet50 bf16 batch 16, than converting eagerly before the call)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype, channels_last: bool) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x).float()


class InferenceModel(nn.Module):
    """fp32 NCHW images in, fp32 logits out; runs the prepared (and possibly compiled) model."""

    def __init__(
        self, prepared: nn.Module, precision: Precision, device: torch.device, batch_size: int
    ) -> None:
        super().__init__()
        self.model = prepared
        self.precision = precision
        self.device = device
        self.dtype = precision.dtype or torch.float32
        self.info = InferenceInfo(precision.name, precision.channels_last, False, batch_size)
        # Kept out of the module tree: the compiled wrapper shares `self.model`'s parameters.
        self.__dict__["_compiled"] = None
        self.eval()

    def train(self, mode: bool = True) -> InferenceModel:
        """Always eval: callers that restore a training flag (model.train(was_training)) must not put
        unfolded BNs back into batch-statistics mode."""
        return super().train(False)

    def _prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True)
        if self.info.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _run_compiled(self, x: torch.Tensor) -> torch.Tensor:
        compiled: Callable[[torch.Tensor], torch.Tensor] = self.__dict__["_compiled"]
        size = self.info.batch_size
        outputs = []
        for start in range(0, x.shape[0], size):
            chunk = x[start : start + size]
            n = chunk.shape[0]
            if n < size:
                pad = chunk.new_zeros((size - n, *chunk.shape[1:]))
                chunk = torch.cat([chunk, pad])
            # Compilation happens lazily, inside a call (and again for a new image size), so the
            # freezing flag is patched around each call; options={"freezing": True} is not honoured.
            with torch._inductor.config.patch(freezing=True):
                out = compiled(chunk)[:n]
                # On CUDA the output lives in the CUDA graph's memory, which the next call reuses.
                outputs.append(out.clone() if self.device.type == "cuda" else out)
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.precision.strict():
            if self.__dict__["_compiled"] is not None and x.shape[0] > 0:
                # The compiled graph converts dtype and layout itself and returns fp32 (_ConvertThenRun).
                return self._run_compiled(x.to(self.device, non_blocking=True).contiguous())
            return self.model(self._prepare_input(x)).float()

    def enable_compile(self, example: torch.Tensor) -> None:
        """Compile with inductor freezing and run `example` once; on any failure stay eager."""
        try:
            graph = _ConvertThenRun(self.model, self.dtype, self.info.channels_last)
            # On CUDA, CUDA graphs ("reduce-overhead") replay the whole forward in one launch: at small
            # batches the GPU otherwise waits on the CPU launching each kernel.
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            compiled = torch.compile(graph, dynamic=False, mode=mode)
            self.__dict__["_compiled"] = compiled
            self.info.compiled = True
            self(example)
        except Exception as exc:  # noqa: BLE001 - any compiler failure must leave a working model
            self.__dict__["_compiled"] = None
            self.info.compiled = False
            self.info.fallback_reason = _failure_reason(exc)
            warnings.warn(
                f"torch.compile failed, using the eager fast path: {self.info.fallback_reason}", stacklevel=2
            )


def _failure_reason(exc: BaseException) -> str:
    """One line naming why compilation failed. Dynamo wraps the compiler's own exception (e.g.
    `BackendCompilerFailed: backend='inductor' raised:` and the cause on later lines), so the innermost
    cause is named too: `BackendCompilerFailed: CppCompileError: ...`."""
    chain = [exc]
    while len(chain) < 8:
        inner = getattr(chain[-1], "inner_exception", None) or chain[-1].__cause__
        if inner is None:
            break
        chain.append(inner)
    names = dict.fromkeys(type(e).__name__ for e in chain)  # in order, without repeats
    lines = [line.strip() for line in str(chain[-1]).splitlines() if line.strip()]
    return ": ".join([*names, *lines[:1]])


def optimize_for_inference(
    model: nn.Module,
    example_input: torch.Tensor,
    precision: str = "auto",
    *,
    compile: bool | str = "auto",
    workload: int | None = None,
    device: str | torch.device | None = None,
    calibration: torch.Tensor | None = None,
    backend: str = "auto",
) -> InferenceModel:
    """The fastest faithful inference module for `model` on `device` (default: the model's device).

    example_input: a batch shaped like the inputs to come (its batch size is the compiled batch size).
    precision: "auto" (bf16 on CUDA and on CPUs with fast bf16, else fp32), "fp32", "bf16", "fp16", or
    "int8" (CPU; post-training static quantization, reslab.quantize).
    compile: True, False, or "auto" (compile when `workload` images pay for it; see module docstring).
      int8 compiles unless compile is False: its uncompiled graph only simulates int8, slowly.
    workload: how many images the module is expected to serve, for the "auto" rule.
    calibration: int8 only: real input images (N, C, H, W), normalised as the model expects.
    backend: int8 only: "auto", "torchao" or "openvino" (reslab.quantize.BACKENDS).
    """
    if example_input.dim() != 4 or example_input.shape[0] < 1:
        raise ReslabError(
            f"example_input must be a non-empty (N, C, H, W) batch, got shape {list(example_input.shape)}"
        )
    if compile not in (True, False, "auto"):
        raise ReslabError(f"compile must be True, False or 'auto', got {compile!r}")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if precision == "int8":
        from .quantize import Int8Settings, quantize_for_inference

        settings = Int8Settings(backend=backend, compile=compile is not False)
        return quantize_for_inference(model, example_input, calibration, device, settings)
    resolved = resolve_precision(precision, device)

    prepared = fold_batchnorm(model).to(device)
    prepared = prepared.to(resolved.dtype or torch.float32)
    if resolved.channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    for parameter in prepared.parameters():
        parameter.requires_grad_(False)

    wrapper = InferenceModel(prepared, resolved, device, int(example_input.shape[0]))
    do_compile = (
        should_compile(model, example_input, device, workload) if compile == "auto" else bool(compile)
    )
    if do_compile:
        wrapper.enable_compile(example_input)
    return wrapper


def compare_logits(
    reference: Callable[[torch.Tensor], torch.Tensor],
    candidate: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch_size: int = 256,
) -> dict[str, float]:
    """How far `candidate` strays from `reference` on `images` (fp32 NCHW).

    max_relative_logit_error: max over images of max_j |c_j - r_j| / max_j |r_j| (per-image scale, so a
    near-zero logit does not blow it up). top1_agreement: fraction of images with the same arg-max.
    """
    worst, agree, total = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size]
            ref = reference(batch).float().cpu()
            cand = candidate(batch).float().cpu()
            scale = ref.abs().amax(dim=1).clamp_min(1e-12)
            rel = (cand - ref).abs().amax(dim=1) / scale
            worst = max(worst, float(rel.max()))
            agree += int((ref.argmax(1) == cand.argmax(1)).sum())
            total += batch.shape[0]
    return {"max_relative_logit_error": worst, "top1_agreement": agree / max(total, 1), "n": float(total)}
