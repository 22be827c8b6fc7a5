"""Export to the formats serving stacks read (ONNX, TorchScript, torch.export, safetensors), each
verified on load; int8 ONNX (QDQ) and int8 torch.export programs, verified by top-1 agreement."""

from .core import (
    DEFAULT_ATOL,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_RTOL,
    PRECISIONS,
    ExportReport,
    default_out,
    export_checkpoint,
    export_model,
)
from .formats import ALL_FORMATS, DEFAULT_OPSET, FORMATS, WEIGHTS_FORMATS, read_metadata
from .int8 import INT8_FORMATS
from .int8_export import export_int8_model

__all__ = [
    "ALL_FORMATS",
    "DEFAULT_ATOL",
    "DEFAULT_MIN_AGREEMENT",
    "DEFAULT_OPSET",
    "DEFAULT_RTOL",
    "FORMATS",
    "INT8_FORMATS",
    "PRECISIONS",
    "WEIGHTS_FORMATS",
    "ExportReport",
    "default_out",
    "export_checkpoint",
    "export_int8_model",
    "export_model",
    "read_metadata",
]
