"""`reslab features`: a trained checkpoint, or pretrained weights by name, as a feature extractor (pooled
pre-logits embeddings of images).

Images are read and normalised exactly as `predict` reads them (the checkpoint's channels, image size,
mean and std); the model runs up to its global pooling (forward_head(pre_logits=True)), so each image
gives num_features float32 numbers, ready for a linear probe, clustering or retrieval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .atomic import atomic_write
from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import normalise
from .data.images import read_image, read_resized
from .data.inputs import find_images
from .errors import ReslabError
from .precision import resolve_device

FEATURES_BATCH_SIZE = 64


@dataclass
class _Extractor:
    """A model and how its input images are read: a checkpoint's data, or pretrained weights' transform."""

    model: nn.Module
    read: Callable[[Path], torch.Tensor]
    mean: torch.Tensor
    std: torch.Tensor
    source: str
    name: str


def extract_features(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    batch_size: int = FEATURES_BATCH_SIZE,
    device: str = "auto",
    weights: str | None = None,
) -> dict[str, Any]:
    """Pooled pre-logits features of image files and folders of them with a checkpoint's model, or, with
    `weights` (a torchvision weights name such as "DEFAULT"), with model `checkpoint` ("resnet50") and
    those weights, images read by the weights' eval transform.

    Returns {"features": float32 array (N, num_features), "paths": list of N path strings,
    "checkpoint", "model", "num_features"}. Runs in fp32 under torch.inference_mode, batch_size
    images at a time."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ReslabError(
            f"batch_size must be a positive integer, got {batch_size!r}", params=("batch_size",)
        )
    paths = find_images(inputs)
    dev = resolve_device(device)
    source = _from_weights(str(checkpoint), weights) if weights is not None else _from_checkpoint(checkpoint)
    model = source.model.to(dev).eval()
    chunks: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            pixels = torch.stack([source.read(p) for p in paths[start : start + batch_size]])
            x = normalise(pixels, source.mean, source.std).to(dev)
            feats = model.forward_head(model.forward_features(x), pre_logits=True)
            chunks.append(feats.float().cpu().numpy())
    return {
        "features": np.concatenate(chunks).astype(np.float32, copy=False),
        "paths": [str(p) for p in paths],
        "checkpoint": source.source,
        "model": source.name,
        "num_features": int(model.num_features),
    }


def _as_tensor(values: Sequence[float]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.float32).view(1, -1, 1, 1)


def _from_checkpoint(checkpoint: str | Path) -> _Extractor:
    payload = load_checkpoint(checkpoint)
    info = payload.get("data")
    if not isinstance(info, dict) or not {"mean", "std", "in_chans", "image_size"} <= set(info):
        raise ReslabError(f"checkpoint {payload['path']!r} does not say what data it expects")
    in_chans, size = int(info["in_chans"]), tuple(info["image_size"])
    model = model_from_checkpoint(payload)
    return _Extractor(
        model,
        lambda path: read_image(path, in_chans, size),
        _as_tensor(info["mean"]),
        _as_tensor(info["std"]),
        payload["path"],
        payload.get("model_name", ""),
    )


def _from_weights(model_name: str, weights: str) -> _Extractor:
    from .models import create_model
    from .pretrained import require_weights_name

    require_weights_name(weights)
    model = create_model(model_name, weights=weights, num_classes=0)
    cfg = model.pretrained_cfg
    return _Extractor(
        model,
        lambda path: read_resized(path, cfg["resize_size"], cfg["crop_size"]),
        _as_tensor(cfg["mean"]),
        _as_tensor(cfg["std"]),
        str(cfg["weights"]),
        model_name,
    )


def save_features(path: str | Path, result: dict[str, Any]) -> Path:
    """Write `features` and `paths` of extract_features' result to an .npz, atomically (np.load reads
    it without allow_pickle: paths are a unicode array)."""
    features = np.asarray(result["features"], dtype=np.float32)
    paths = np.asarray([str(p) for p in result["paths"]], dtype=np.str_)

    def write(handle: Any) -> None:
        np.savez(handle, features=features, paths=paths)

    return atomic_write(path, write)
