"""`reslab export --precision int8`: calibrate, write the quantized file, load it back as a server would
and keep it only if it picks the fp32 model's class on enough real test images."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_path
from ..checkpoint import model_from_checkpoint
from ..errors import ReslabError
from . import formats
from .core import (
    DEFAULT_MIN_AGREEMENT,
    DYNAMIC_BATCH,
    STATIC_BATCH,
    TRACE_BATCH,
    ExportReport,
    _check_writable,
    _Discard,
    _first_line,
    serving_metadata,
)
from .int8 import check_int8_format, write_int8_onnx, write_int8_program
from .verify import input_shape

# The check runs on the first this-many test images (all of a smaller test split).
CHECK_IMAGES = 1000


@dataclass(frozen=True)
class Int8Inputs:
    """Normalised test images to check on and training (or folder) images to calibrate on."""

    check: torch.Tensor
    source: str
    calibration: torch.Tensor
    calibration_source: str


def int8_inputs(payload: dict[str, Any], shape: tuple[int, int, int], spec: str | None) -> Int8Inputs:
    """The checkpoint's test split (never random inputs: int8 is judged on real images) and the
    calibration images `spec` names (reslab.quantize.eval_calibration)."""
    from ..data import normalise
    from ..data.loaders import split_images
    from ..evaluate import checkpoint_data
    from ..quantize import eval_calibration, parse_calibration

    data = payload.get("data") or {}
    name = data.get("spec")
    try:
        if not name:
            raise ValueError("the checkpoint names no data set")
        bundle = checkpoint_data(payload)
    except Exception as exc:
        raise ReslabError(
            f"precision int8 is checked on the test split of the checkpoint's data ({name!r}), which cannot "
            f"be loaded here: {_first_line(exc)}",
            params=("precision",),
        ) from exc
    images = split_images(bundle.test, bundle.evaluation, CHECK_IMAGES)[:CHECK_IMAGES]
    if tuple(images.shape[1:]) != shape:
        raise ReslabError(f"the test images are {tuple(images.shape[1:])}, the model expects {shape}")
    mean = torch.tensor(data["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(data["std"], dtype=torch.float32).view(1, -1, 1, 1)
    calibration = eval_calibration(spec, payload, bundle)
    folder = parse_calibration(spec)
    where = f"image files under {folder}" if folder else f"the {name} training split"
    return Int8Inputs(
        check=normalise(images, mean, std),
        source=f"{len(images)} images of the {name} test split, normalised with the checkpoint's mean/std",
        calibration=calibration,
        calibration_source=f"{len(calibration)} images of {where} (activation ranges)",
    )


@dataclass(frozen=True)
class Agreement:
    batch_sizes: tuple[int, ...]
    top1_agreement: float
    max_relative_logit_error: float  # max over images of max_j |got_j - fp32_j| / max_j |fp32_j|
    max_abs_diff: float
    max_abs_logit: float


def _spans(n: int, batch: int, dynamic: bool) -> list[tuple[int, int]]:
    """Chunks of `batch` images; a dynamic file is also run on one image alone, first."""
    first = 1 if dynamic and n > 1 else 0
    return ([(0, 1)] if first else []) + [(s, min(s + batch, n)) for s in range(first, n, batch)]


@torch.no_grad()
def agreement(
    model: nn.Module, runner: formats.Runner, images: torch.Tensor, batch: int, dynamic: bool
) -> Agreement:
    """Run both over `images` in chunks of `batch`; a static file's short last chunk is zero-padded."""
    expected, got, sizes = [], [], set()
    for start, stop in _spans(images.shape[0], batch, dynamic):
        x = images[start:stop].contiguous()
        n = x.shape[0]
        if not dynamic and n < batch:
            x = torch.cat([x, x.new_zeros((batch - n, *x.shape[1:]))])
        sizes.add(x.shape[0])
        want, out = model(x[:n]), runner(x)[:n].float()
        if out.shape != want.shape:
            raise RuntimeError(f"output shape {tuple(out.shape)} != PyTorch's {tuple(want.shape)}")
        expected.append(want)
        got.append(out)
    ref, out = torch.cat(expected), torch.cat(got)
    if not torch.isfinite(out).all():
        raise RuntimeError("the file returned non-finite logits")
    diff = (out - ref).abs()
    rel = diff.amax(1) / ref.abs().amax(1).clamp_min(1e-12)
    return Agreement(
        batch_sizes=tuple(sorted(sizes)),
        top1_agreement=float((out.argmax(1) == ref.argmax(1)).float().mean()),
        max_relative_logit_error=float(rel.max()),
        max_abs_diff=float(diff.max()),
        max_abs_logit=float(ref.abs().max()),
    )


def _read_back(
    fmt: str, tmp: Path, model: nn.Module, images: torch.Tensor, batch: int, dynamic: bool
) -> tuple[str, Agreement | None, str | None]:
    """(runtime, agreement, None), or (runtime, None, why) when the file does not load or run."""
    runtime = f"loading {fmt} back"
    try:
        runner, runtime = formats.load_runner(fmt, tmp)
        return runtime, agreement(model, runner, images, batch, dynamic), None
    except Exception as exc:
        return runtime, None, f"reading the file back failed: {_first_line(exc)}"


@dataclass(frozen=True)
class _Job:
    fmt: str
    dynamic_batch: bool
    opset: int | None
    metadata: str  # JSON
    model_name: str


def _write(
    job: _Job, model: nn.Module, example: torch.Tensor, tmp: Path, calibration: torch.Tensor
) -> formats.Written:
    try:
        if job.fmt == "onnx":
            opset = formats.check_opset(job.opset)
            return write_int8_onnx(model, example, tmp, job.dynamic_batch, opset, job.metadata, calibration)
        return write_int8_program(model, example, tmp, job.dynamic_batch, job.metadata, calibration)
    except ReslabError:
        raise
    except Exception as exc:
        name = job.model_name or "the model"
        raise ReslabError(f"exporting {name} to int8 {job.fmt} failed: {_first_line(exc)}") from exc


def export_int8_model(
    model: nn.Module,
    example: torch.Tensor,
    fmt: str,
    path: str | Path,
    calibration: torch.Tensor,
    check_images: torch.Tensor,
    *,
    dynamic_batch: bool = False,
    opset: int | None = None,
    check_batch: int | None = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    input_source: str = "the given images",
    calibration_source: str = "the given images",
    model_name: str = "",
    metadata: dict[str, Any] | None = None,
) -> ExportReport:
    """Quantize an fp32 model (traced at `example`) to int8 `fmt`, calibrated on the normalised images
    `calibration`; load the file back and run it over `check_images` in chunks of `check_batch` (a static
    file: example's batch size). The file lands at path (atomically) only if its top-1 agrees with the
    model's on at least `min_agreement` of them."""
    check_int8_format(fmt, opset)
    opset = formats.check_opset(opset) if fmt == "onnx" else None
    path = Path(path)
    _check_writable(path, fmt)
    batch = (check_batch or DYNAMIC_BATCH) if dynamic_batch else int(example.shape[0])
    model = copy.deepcopy(model).float().eval()  # the caller's model keeps its dtype and mode
    job = _Job(fmt, dynamic_batch, opset, json.dumps({**(metadata or {}), "precision": "int8"}), model_name)
    example = example.detach().float().contiguous()
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:
            start = time.perf_counter()
            written = _write(job, model, example, tmp, calibration)
            seconds = time.perf_counter() - start
            runtime, check, failure = _read_back(fmt, tmp, model, check_images, batch, dynamic_batch)
            passed = check is not None and check.top1_agreement >= min_agreement
            size = tmp.stat().st_size
            if not passed:
                raise _Discard
    except _Discard:
        pass
    check = check or Agreement((batch,), 0.0, float("inf"), float("inf"), float("nan"))
    n: int | str = "batch" if dynamic_batch else int(example.shape[0])
    return ExportReport(
        format=fmt,
        path=str(path),
        written=passed,
        size_bytes=size,
        model_name=model_name,
        input_shape=[n, *example.shape[1:]],
        dynamic_batch=dynamic_batch,
        opset=written.opset,
        exporter=written.exporter,
        runtime=runtime,
        input_source=input_source,
        batch_sizes=list(check.batch_sizes),
        max_abs_diff=check.max_abs_diff,
        max_abs_logit=check.max_abs_logit,
        atol=None,
        rtol=None,
        tolerance=None,
        top1_agreement=check.top1_agreement,
        passed=passed,
        export_seconds=round(seconds, 3),
        notes=[note for note in (written.note, failure) if note],
        precision="int8",
        min_agreement=min_agreement,
        max_relative_logit_error=check.max_relative_logit_error,
        calibration=calibration_source,
    )


def export_int8_loaded(
    payload: dict[str, Any],
    fmt: str,
    path: Path,
    dynamic_batch: bool,
    opset: int | None,
    batch_size: int | None,
    calibration: str | None,
    min_agreement: float,
) -> ExportReport:
    """export_int8_model for a loaded checkpoint: calibrated as `reslab eval --precision int8` is,
    checked on its test split."""
    from ..quantize import calibration_batches

    model = model_from_checkpoint(payload)
    shape = input_shape(payload, model)
    inputs = int8_inputs(payload, shape, calibration)
    trace = TRACE_BATCH if dynamic_batch else (batch_size or STATIC_BATCH)
    return export_int8_model(
        model,
        calibration_batches(inputs.calibration, trace)[0],
        fmt,
        path,
        inputs.calibration,
        inputs.check,
        dynamic_batch=dynamic_batch,
        opset=opset,
        check_batch=batch_size,
        min_agreement=min_agreement,
        input_source=inputs.source,
        calibration_source=inputs.calibration_source,
        model_name=str(payload.get("model_name") or model.config.name),
        metadata=serving_metadata(payload, model, shape),
    )
