"""Export to the formats serving stacks read (ONNX, TorchScript, torch.export), each verified on load."""

from .core import DEFAULT_ATOL, DEFAULT_RTOL, ExportReport, default_out, export_checkpoint, export_model
from .formats import DEFAULT_OPSET, FORMATS, read_metadata

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_OPSET",
    "DEFAULT_RTOL",
    "FORMATS",
    "ExportReport",
    "default_out",
    "export_checkpoint",
    "export_model",
    "read_metadata",
]
