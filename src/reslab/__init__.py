"""reslab: the residual networks of He et al. 2016 and 2016b, built, trained, explained and fast."""

# `reslab.train` is the training function; the training package is `reslab.training`.
from .batch_predict import predict
from .errors import DivergedError, ReslabError
from .evaluate import evaluate
from .explain import gradcam
from .export import ExportReport, export_checkpoint
from .host_memory import tune_host_allocator
from .infer import optimize_for_inference
from .models import ResNet, ResNetConfig, create_model, list_models
from .training.api import train

__version__ = "0.1.0"

__all__ = [
    "DivergedError",
    "ExportReport",
    "ReslabError",
    "ResNet",
    "ResNetConfig",
    "create_model",
    "export_checkpoint",
    "list_models",
    "optimize_for_inference",
    "tune_host_allocator",
    "train",
    "evaluate",
    "predict",
    "gradcam",
]
