"""Export to the formats serving stacks read (ONNX, TorchScript, torch.export, safetensors), each
verified on load."""

from .core import DEFAULT_ATOL, DEFAULT_RTOL, ExportReport, default_out, export_checkpoint, export_model
from .formats import ALL_FORMATS, DEFAULT_OPSET, FORMATS, WEIGHTS_FORMATS, read_metadata

__all__ = [
    "ALL_FORMATS",
    "DEFAULT_ATOL",
    "DEFAULT_OPSET",
    "DEFAULT_RTOL",
    "FORMATS",
    "WEIGHTS_FORMATS",
    "ExportReport",
    "default_out",
    "export_checkpoint",
    "export_model",
    "read_metadata",
]
