from .config import ResNetConfig
from .resnet import ResNet
from .units import ResidualUnit, ShortcutA
from .zoo import build_model, create_model, list_models, resolve_config

__all__ = [
    "ResNet",
    "ResNetConfig",
    "ResidualUnit",
    "ShortcutA",
    "build_model",
    "create_model",
    "list_models",
    "resolve_config",
]
