"""int8 serving files: post-training static quantization by the library each runtime ships.

- onnx: the fp32 ONNX export (BatchNorm folded), quantized by ONNX Runtime's own `quantize_static` into
  QDQ form: per-channel symmetric int8 weights, per-tensor uint8 activations whose range is the 99.99th
  percentile of each activation on the calibration images. MinMax, ONNX Runtime's default, lets a few
  outliers coarsen every step: on the ResNet-50 of docs/speed.md (64 test images) it agreed with fp32 on
  87.5% of top-1s, the 99.99th percentile on 96.9%. ONNX Runtime fuses each QuantizeLinear /
  DequantizeLinear pair around a Conv, Add or Gemm into its integer kernels when it loads the file.
  Weights use 7 bits (`reduce_range=True`): x86 CPUs without VNNI (AVX2, AVX-512F) multiply u8 x s8 with
  `vpmaddubsw`, whose int16 sums saturate, as ONNX Runtime's quantization docs warn. On the digits run
  of docs/export.md, on such a CPU, 8-bit weights agreed with fp32 on 99.16% of test top-1s (max relative
  logit error 0.44), 7-bit ones on 100% (0.078). The file then runs right on any CPU.
- exported-program: the PT2E program reslab's torchao backend builds (reslab.quantize.torchao_quantize:
  X86InductorQuantizer, per-channel int8 weights, histogram-calibrated uint8 activations), saved with
  `torch.export.save`. Loaded back it runs the reference-quantized graph (exact int8 rounding, fp32
  arithmetic); `torch.compile` with inductor freezing turns it into oneDNN int8 convolutions.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..errors import ReslabError
from ..infer import fold_batchnorm
from . import formats

INT8_FORMATS = ("onnx", "exported-program")
# Per-channel QDQ needs the `axis` attribute of QuantizeLinear/DequantizeLinear: opset 13.
MIN_INT8_OPSET = 13
# A dynamic-batch graph is calibrated in batches of this many images (a static one at its own size).
CALIBRATION_BATCH = 8
CALIBRATION_PERCENTILE = 99.99


def check_int8_format(fmt: str, opset: int | None) -> None:
    """int8 is written as ONNX (opset >= 13) or as a torch.export program; anything else is an error."""
    if fmt not in INT8_FORMATS:
        raise ReslabError(
            f"precision int8 exports fmt onnx or exported-program, not {fmt}", params=("precision", "fmt")
        )
    if fmt == "onnx" and opset is not None and opset < MIN_INT8_OPSET:
        raise ReslabError(
            f"precision int8 needs ONNX opset {MIN_INT8_OPSET} or later (per-channel QDQ), got {opset}",
            params=("precision", "opset"),
        )


class _Batches:
    """onnxruntime.quantization's CalibrationDataReader protocol: one {input name: array} per call;
    `len` and `set_range` let quantize_static calibrate a slice at a time (CalibStridedMinMax)."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self._batches = batches
        self.set_range(0, len(batches))

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next = iter(self._batches[start_index:end_index])

    def get_next(self) -> dict[str, object] | None:
        batch = next(self._next, None)
        return None if batch is None else {formats.INPUT_NAME: batch.numpy()}


@contextlib.contextmanager
def _ort_quiet() -> Iterator[None]:
    """quantize_static logs a 'consider pre-processing' hint on the root logger and prints its histogram
    progress on stdout, which `--json` owns: neither is the user's news."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _stride(n_batches: int, batch: int) -> int:
    """Batches per histogram update: about CALIBRATION_BATCH images, and a divisor of n_batches (ORT
    requires one)."""
    want = max(1, CALIBRATION_BATCH // batch)
    return max(d for d in range(1, want + 1) if n_batches % d == 0)


def quantize_onnx(fp32: Path, out: Path, calibration: list[torch.Tensor]) -> str:
    """ONNX Runtime's quantize_static of the fp32 ONNX file `fp32` into QDQ int8 at `out`, calibrated on
    `calibration` (batches the file accepts); returns a description of what did it."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with _ort_quiet(), formats._quiet():
        quantize_static(
            str(fp32),
            str(out),
            _Batches(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            reduce_range=True,
            # About 8 images at a time into the merged histograms: ORT's histogram calibrator otherwise
            # keeps every activation of every calibration image (ResNet-50, 224 px, 256 images: > 20 GB).
            extra_options={
                "CalibPercentile": CALIBRATION_PERCENTILE,
                "CalibStridedMinMax": _stride(len(calibration), calibration[0].shape[0]),
            },
        )
    return (
        f"onnxruntime {onnxruntime.__version__} quantize_static (QDQ, per-channel 7-bit s8 weights, "
        f"u8 activations at the {CALIBRATION_PERCENTILE}th percentile)"
    )


def write_int8_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    dynamic_batch: bool,
    opset: int,
    metadata: str,
    calibration: torch.Tensor,
) -> formats.Written:
    """The fp32 export of the BN-folded model, quantized by ONNX Runtime on the normalised images
    `calibration`, with the reslab metadata."""
    import onnx

    from ..quantize import calibration_batches

    batches = calibration_batches(calibration, CALIBRATION_BATCH if dynamic_batch else example.shape[0])
    with tempfile.TemporaryDirectory(prefix="reslab-int8-") as folder:
        fp32 = Path(folder) / "fp32.onnx"
        written = formats.write_onnx(fold_batchnorm(model), example, fp32, dynamic_batch, opset, metadata)
        quantizer = quantize_onnx(fp32, path, batches)
    proto = onnx.load(str(path), load_external_data=False)
    onnx.helper.set_model_props(proto, {formats.METADATA_KEY: metadata})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return formats.Written(exporter=f"{written.exporter}, then {quantizer}", opset=version)


def write_int8_program(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    dynamic_batch: bool,
    metadata: str,
    calibration: torch.Tensor,
) -> formats.Written:
    """torchao's PT2E-quantized program of the BN-folded model, calibrated on the normalised images
    `calibration`, exported again and saved."""
    import torchao

    from ..quantize import resolve_backend, torchao_quantize

    resolve_backend("torchao")  # a one-line error when torchao is not installed
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    with formats._quiet():
        converted = torchao_quantize(fold_batchnorm(model), example, calibration, dynamic_shapes)
        with torch.no_grad():
            program = torch.export.export(converted, (example,), dynamic_shapes=dynamic_shapes)
        torch.export.save(program, str(path), extra_files={formats.METADATA_KEY: metadata})
    return formats.Written(
        exporter=f"torchao {torchao.__version__} PT2E X86InductorQuantizer, then torch.export.export"
    )
