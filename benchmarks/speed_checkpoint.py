"""A checkpoint for speed measurements: a model with untrained weights and an image folder's data record
(ImageNet mean/std, RGB, square images). Inference speed does not depend on the weights."""

from __future__ import annotations

from pathlib import Path

import reslab
from reslab.checkpoint import model_payload, save_checkpoint


def speed_checkpoint(model_name: str, size: int, classes: list[str], path: Path) -> Path:
    model = reslab.create_model(model_name, num_classes=len(classes))
    data = {
        "spec": "folder (speed only)",
        "class_names": classes,
        "in_chans": 3,
        "image_size": [size, size],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    return save_checkpoint(path, {**model_payload(model), "data": data})
