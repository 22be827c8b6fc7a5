"""export_checkpoint: write a serving file from a checkpoint, read it back, check it against PyTorch."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_path, write_json
from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..errors import ReslabError
from . import formats
from .verify import compare, input_shape, sample_batch

DEFAULT_ATOL = 1e-4
# fp32 kernels that sum in a different order (ONNX Runtime's convolutions) differ by about 1e-6 of the
# largest logit, so an untrained deep net with logits of 1e6 fails a pure 1e-4 bound while exporting
# correctly. The default stays the strict absolute bound; --rtol adds rtol * max|logit| to it.
DEFAULT_RTOL = 0.0
STATIC_BATCH, DYNAMIC_BATCH = 1, 8
PRECISIONS = ("fp32", "int8")
# int8 passes when it picks the fp32 model's class on at least this share of the test images checked.
DEFAULT_MIN_AGREEMENT = 0.99
# torch.export specialises a dimension whose example size is 0 or 1, so a dynamic batch is traced at 2.
TRACE_BATCH = 2


class _Discard(Exception):
    """Raised inside atomic_path to drop the temp file of an export that failed its check."""


@dataclass
class ExportReport:
    """The written file and the outcome of reading it back and comparing it with the PyTorch model."""

    format: str
    path: str
    written: bool  # False when the check failed: nothing is left at path (an older file there is kept)
    size_bytes: int
    model_name: str
    input_shape: list[int | str]  # (N, C, H, W); N is "batch" when dynamic
    dynamic_batch: bool
    opset: int | None
    exporter: str
    runtime: str
    input_source: str
    batch_sizes: list[int]
    max_abs_diff: float
    max_abs_logit: float
    atol: float | None  # fp32 only; None for int8, which is judged by top-1 agreement
    rtol: float | None
    tolerance: float | None  # atol + rtol * max_abs_logit
    top1_agreement: float
    passed: bool
    export_seconds: float
    notes: list[str] = field(default_factory=list)
    config_path: str | None = None  # safetensors: the config.json written beside the weights
    precision: str = "fp32"  # int8: quantized; passes when top1_agreement >= min_agreement
    min_agreement: float | None = None
    max_relative_logit_error: float | None = None  # int8: max over images of max|diff| / max|fp32 logit|
    calibration: str | None = None  # int8: the images the activation ranges were calibrated on

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The check as a person reads it."""
        size = f"{self.size_bytes / 1e6:.2f} MB"
        opset = f", opset {self.opset}" if self.opset is not None else ""
        batch = "dynamic batch" if self.dynamic_batch else f"static batch {self.input_shape[0]}"
        shape = "(" + ", ".join(str(d) for d in self.input_shape) + ")"
        int8 = ", int8" if self.precision == "int8" else ""
        lines = [
            f"format    {self.format}{opset}{int8}, {batch}",
            f"file      {self.path} ({size}{'' if self.written else ', NOT written'})",
            *([f"config    {self.config_path}"] if self.config_path and self.written else []),
            f"model     {self.model_name}, input {shape}",
            f"exporter  {self.exporter} in {self.export_seconds:.1f} s",
            f"runtime   {self.runtime}",
            *([f"calibrate {self.calibration}"] if self.calibration else []),
            f"inputs    {self.input_source}",
            self._check_line(),
        ]
        return lines + [f"note      {note}" for note in self.notes]

    def _check_line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        sizes = ", ".join(map(str, self.batch_sizes))
        if self.precision == "int8":
            sign = ">=" if self.passed else "<"
            return (
                f"check     batch sizes {sizes}: top-1 agreement with pytorch fp32 {self.top1_agreement:.2%} "
                f"{sign} {self.min_agreement:.2%}, max relative logit error "
                f"{self.max_relative_logit_error:.3f} (max |logit| {self.max_abs_logit:.3g}): {verdict}"
            )
        sign = "<=" if self.passed else ">"
        bound = f"{self.atol:.0e}" + (f" + {self.rtol:.0e} x {self.max_abs_logit:.3g}" if self.rtol else "")
        return (
            f"check     batch sizes {sizes}: max |exported - pytorch fp32| = "
            f"{self.max_abs_diff:.2e} {sign} {bound} (max |logit| {self.max_abs_logit:.3g}), "
            f"top-1 agreement {self.top1_agreement:.0%}: {verdict}"
        )


def default_out(checkpoint_path: Path, fmt: str, precision: str = "fp32") -> Path:
    """best.pt -> best.onnx / best.ts.pt / best.pt2 beside the checkpoint (int8: best-int8.onnx /
    best-int8.pt2); safetensors: a folder best-safetensors/ holding model.safetensors and config.json (a
    run directory has its own config.json)."""
    stem = checkpoint_path.name.split(".")[0]
    if fmt == "safetensors":
        return checkpoint_path.with_name(f"{stem}-safetensors") / formats.SAFETENSORS_NAME
    tag = "-int8" if precision == "int8" else ""
    return checkpoint_path.with_name(stem + tag + formats.SUFFIXES[fmt])


def _resolve_out(out: str | Path | None, checkpoint_path: Path, fmt: str, precision: str = "fp32") -> Path:
    path = default_out(checkpoint_path, fmt, precision) if out is None else Path(out)
    if path.is_dir():
        path = path / default_out(checkpoint_path, fmt, precision).name
    _check_writable(path, fmt)
    return path


def _check_writable(path: Path, fmt: str) -> None:
    if fmt == "exported-program" and path.suffix != ".pt2":
        raise ReslabError(f"cannot write {str(path)!r}: torch.export.load reads only files ending in .pt2")
    if fmt == "safetensors":
        _check_safetensors_out(path)
    if path.is_dir():
        raise ReslabError(f"cannot write {str(path)!r}: it is a folder")
    if not path.parent.is_dir():
        raise ReslabError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ReslabError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} is not writable")


def _check_safetensors_out(path: Path) -> None:
    """A .safetensors file name, and a config.json beside it that is ours to replace (never a run's)."""
    if path.suffix != ".safetensors":
        raise ReslabError(
            f"cannot write {str(path)!r}: a safetensors export is a file ending in .safetensors (or name a folder)"
        )
    config = path.with_name(formats.SAFETENSORS_CONFIG)
    if config.exists():
        try:
            ours = json.loads(config.read_text()).get("format") == formats.SAFETENSORS_CONFIG_FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise ReslabError(
                f"cannot write {str(path)!r}: its {formats.SAFETENSORS_CONFIG} would replace {str(config)!r}, "
                "which no safetensors export wrote (a run directory's?); choose another folder with --out"
            )


def _check_format(fmt: str) -> str:
    fmt = fmt.strip().lower()
    if fmt not in formats.ALL_FORMATS:
        raise ReslabError(f"unknown export format {fmt!r}; choose one of: {', '.join(formats.ALL_FORMATS)}")
    return fmt


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _write(
    fmt: str,
    model: nn.Module,
    example: torch.Tensor,
    tmp: Path,
    dynamic_batch: bool,
    opset: int | None,
    metadata: dict[str, Any],
    model_name: str,
) -> formats.Written:
    try:
        return formats.write(fmt, model, example, tmp, dynamic_batch, opset, metadata)
    except ReslabError:
        raise
    except Exception as exc:
        raise ReslabError(
            f"exporting {model_name or 'the model'} to {fmt} failed: {_first_line(exc)}"
        ) from exc


@dataclass(frozen=True)
class _Check:
    runtime: str
    max_abs_diff: float
    max_abs_logit: float
    top1_agreement: float
    failure: str | None = None  # why the file could not be read back or run


def _read_back_and_compare(
    fmt: str, tmp: Path, model: nn.Module, check_batch: torch.Tensor, batch_sizes: tuple[int, ...]
) -> _Check:
    """Load the file as a server would and compare it with the fp32 model; a file that does not load or
    run is a failed check, not an error."""
    runtime = f"loading {fmt} back"
    try:
        runner, runtime = formats.load_runner(fmt, tmp)
        result = compare(model, runner, check_batch, batch_sizes)
    except Exception as exc:
        return _Check(
            runtime, float("inf"), float("nan"), 0.0, f"reading the file back failed: {_first_line(exc)}"
        )
    return _Check(runtime, result.max_abs_diff, result.max_abs_logit, result.top1_agreement)


def export_model(
    model: nn.Module,
    example: torch.Tensor,
    fmt: str,
    path: str | Path,
    *,
    dynamic_batch: bool = False,
    opset: int | None = None,
    check_batch: torch.Tensor | None = None,
    batch_sizes: tuple[int, ...] | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    input_source: str = "the given batch",
    model_name: str = "",
    metadata: dict[str, Any] | None = None,
) -> ExportReport:
    """Export an fp32 model traced at `example`, read the file back, compare on `check_batch` (default:
    example) at each of `batch_sizes`. The file lands at path (atomically) only if the check passes.
    `metadata` (JSON-able) is stored in the file; read it back with `read_metadata(path)`. safetensors
    also writes config.json beside path (the model's config and `metadata`), once the check passed."""
    fmt = _check_format(fmt)
    path = Path(path)
    if fmt != "onnx" and opset is not None:
        raise ReslabError("opset applies only to fmt onnx", params=("opset", "fmt"))
    if fmt == "onnx":
        opset = formats.check_opset(opset)
    check_batch = example if check_batch is None else check_batch
    batch_sizes = batch_sizes or (example.shape[0],)
    if max(batch_sizes) > check_batch.shape[0]:
        raise ValueError(f"check batch has {check_batch.shape[0]} images, batch sizes ask {batch_sizes}")
    _check_writable(path, fmt)
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model = copy.deepcopy(model).float()  # the check is against fp32; leave the caller's model alone
    was_training = model.training
    model.eval()
    config_path = path.with_name(formats.SAFETENSORS_CONFIG) if fmt == "safetensors" else None
    try:
        # The file lands at path only when the check passes; _Discard leaves an older file there alone.
        with atomic_path(path, suffix=path.suffix) as tmp:
            start = time.perf_counter()
            written = _write(fmt, model, example, tmp, dynamic_batch, opset, metadata or {}, model_name)
            seconds = time.perf_counter() - start
            check = _read_back_and_compare(fmt, tmp, model, check_batch, tuple(batch_sizes))
            notes = [note for note in (written.note, check.failure) if note]
            tolerance = atol + (rtol * check.max_abs_logit if rtol else 0.0)
            passed = check.max_abs_diff <= tolerance
            size = tmp.stat().st_size
            if not passed:
                raise _Discard
            if config_path is not None:  # atomically, just before the weights land
                write_json(config_path, formats.safetensors_config(model, metadata or {}, path.name))
    except _Discard:
        pass
    finally:
        model.train(was_training)
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
        runtime=check.runtime,
        input_source=input_source,
        batch_sizes=list(batch_sizes),
        max_abs_diff=check.max_abs_diff,
        max_abs_logit=check.max_abs_logit,
        atol=atol,
        rtol=rtol,
        tolerance=tolerance,
        top1_agreement=check.top1_agreement,
        passed=passed,
        export_seconds=round(seconds, 3),
        notes=notes,
        config_path=str(config_path) if config_path is not None else None,
    )


def export_checkpoint(
    checkpoint: str | Path,
    fmt: str = "onnx",
    out: str | Path | None = None,
    dynamic_batch: bool = False,
    opset: int | None = None,
    *,
    batch_size: int | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    precision: str = "fp32",
    calibration: str | None = None,
    min_agreement: float | None = None,
) -> ExportReport:
    """Export a reslab checkpoint (file or run directory) to onnx | torchscript | exported-program |
    safetensors and verify it. Static exports are traced and checked at `batch_size` (default 1); a
    dynamic batch is checked at 1 and at `batch_size` (default 8). The report says whether the check
    passed. safetensors goes by default to best-safetensors/{model.safetensors,config.json}.

    precision "int8" (onnx or exported-program; reslab.export.int8): quantized after calibrating on
    `calibration` ('data', the default: the checkpoint's training split; or folder:DIR), checked on the
    test split by top-1 agreement with fp32 (at least `min_agreement`, default 0.99; atol and rtol unused)."""
    fmt = _check_format(fmt)
    if fmt != "onnx" and opset is not None:
        raise ReslabError("opset applies only to fmt onnx", params=("opset", "fmt"))
    min_agreement = _check_precision(precision, fmt, opset, calibration, min_agreement)
    if batch_size is not None and batch_size < (2 if dynamic_batch else 1):
        raise ReslabError(f"batch_size must be at least {2 if dynamic_batch else 1}", params=("batch_size",))
    if not atol > 0 or not rtol >= 0:
        raise ReslabError("atol must be positive and rtol not negative", params=("atol", "rtol"))
    payload = load_checkpoint(checkpoint)
    checkpoint_path = Path(payload["path"])
    made_folder = None
    if out is None and fmt == "safetensors":  # the default best-safetensors/ folder
        folder = default_out(checkpoint_path, fmt).parent
        if not folder.exists() and checkpoint_path.parent.is_dir():
            try:
                folder.mkdir()
                made_folder = folder
            except OSError:
                pass  # _check_writable says why in one line
    try:
        path = _resolve_out(out, checkpoint_path, fmt, precision)
        if precision == "int8":
            from .int8_export import export_int8_loaded

            report = export_int8_loaded(
                payload, fmt, path, dynamic_batch, opset, batch_size, calibration, min_agreement
            )
        else:
            report = _export_loaded(payload, fmt, path, dynamic_batch, opset, batch_size, atol, rtol)
    except BaseException:
        _remove_empty(made_folder)
        raise
    if not report.written:
        _remove_empty(made_folder)
    return report


def _check_precision(
    precision: str, fmt: str, opset: int | None, calibration: str | None, min_agreement: float | None
) -> float | None:
    """The int8 options make sense together; returns min_agreement (its default for int8)."""
    if precision not in PRECISIONS:
        raise ReslabError(
            f"export precision must be one of {', '.join(PRECISIONS)}, got {precision!r}",
            params=("precision",),
        )
    if precision != "int8":
        if calibration is not None or min_agreement is not None:
            raise ReslabError(
                "calibration and min_agreement apply only to precision int8",
                params=("calibration", "min_agreement", "precision"),
            )
        return None
    from ..quantize import parse_calibration
    from .int8 import check_int8_format

    check_int8_format(fmt, opset)
    parse_calibration(calibration)
    min_agreement = DEFAULT_MIN_AGREEMENT if min_agreement is None else min_agreement
    if not 0 < min_agreement <= 1:
        raise ReslabError(f"min_agreement must be in (0, 1], got {min_agreement}", params=("min_agreement",))
    return min_agreement


def _remove_empty(folder: Path | None) -> None:
    if folder is not None:
        with contextlib.suppress(OSError):  # not empty (or gone): leave it
            folder.rmdir()


def _export_loaded(
    payload: dict[str, Any],
    fmt: str,
    path: Path,
    dynamic_batch: bool,
    opset: int | None,
    batch_size: int | None,
    atol: float,
    rtol: float,
) -> ExportReport:
    model = model_from_checkpoint(payload)
    shape = input_shape(payload, model)
    if fmt in formats.WEIGHTS_FORMATS:  # weights fit any batch size: checked at 1 and batch_size (8)
        dynamic_batch = True
        sizes: tuple[int, ...] = tuple(sorted({1, batch_size or DYNAMIC_BATCH}))
        trace = TRACE_BATCH
    elif dynamic_batch:
        sizes = (1, batch_size or DYNAMIC_BATCH)
        trace = TRACE_BATCH
    else:
        sizes = (batch_size or STATIC_BATCH,)
        trace = sizes[0]
    batch, source = sample_batch(payload, shape, max(max(sizes), trace))
    return export_model(
        model,
        batch[:trace].contiguous(),
        fmt,
        path,
        dynamic_batch=dynamic_batch,
        opset=opset,
        check_batch=batch,
        batch_sizes=sizes,
        atol=atol,
        rtol=rtol,
        input_source=source,
        model_name=str(payload.get("model_name") or model.config.name),
        metadata=serving_metadata(payload, model, shape),
    )


def serving_metadata(
    payload: dict[str, Any], model: nn.Module, shape: tuple[int, int, int]
) -> dict[str, Any]:
    """How a server must prepare inputs and read outputs, stored in the exported file."""
    data = payload.get("data") or {}
    return {
        "model_name": str(payload.get("model_name") or model.config.name),
        "input": f"float32 (N, {shape[0]}, {shape[1]}, {shape[2]}): (pixels / 255 - mean) / std per channel",
        "mean": list(data.get("mean") or []),
        "std": list(data.get("std") or []),
        "class_names": list(data.get("class_names") or []),
        "output": "logits (N, num_classes); softmax for probabilities",
        "data_spec": data.get("spec"),
    }
