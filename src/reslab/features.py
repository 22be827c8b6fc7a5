"""`reslab features`: a trained checkpoint, or pretrained weights by name, as a feature extractor (pooled
pre-logits embeddings of images).

Images are read and normalised exactly as `predict` reads them (the checkpoint's channels, image size,
mean and std); the model runs up to its global pooling (forward_head(pre_logits=True)), so each image
gives num_features float32 numbers, ready for a linear probe, clustering or retrieval.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write
from .classifier import load_classifier
from .data.inputs import find_images
from .errors import ReslabError

FEATURES_BATCH_SIZE = 64


def extract_features(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    batch_size: int = FEATURES_BATCH_SIZE,
    device: str = "auto",
    weights: str | None = None,
) -> dict[str, Any]:
    """Pooled pre-logits features of image files, folders (recursively) and @lists with a checkpoint's
    model, or with a weights name ("resnet50.IMAGENET1K_V2"), or with `weights` (a torchvision weights name
    such as "DEFAULT") and model `checkpoint` ("resnet50"): images read by the weights' eval transform.

    Returns {"features": float32 array (N, num_features), "paths": list of N path strings,
    "checkpoint", "model", "num_features"}. Runs in fp32 under torch.inference_mode, batch_size
    images at a time."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ReslabError(
            f"batch_size must be a positive integer, got {batch_size!r}", params=("batch_size",)
        )
    classifier = load_classifier(checkpoint, weights=weights, device=device, precision="fp32", fast=False)
    paths = find_images(inputs)
    model = classifier.model
    chunks: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            pixels = torch.stack([classifier.transform.read(p) for p in paths[start : start + batch_size]])
            x = classifier.normalised(pixels)
            feats = model.forward_head(model.forward_features(x), pre_logits=True)
            chunks.append(feats.float().cpu().numpy())
    return {
        "features": np.concatenate(chunks).astype(np.float32, copy=False),
        "paths": [str(p) for p in paths],
        "checkpoint": classifier.source,
        "model": classifier.name,
        "num_features": int(model.num_features),
    }


def save_features(path: str | Path, result: dict[str, Any]) -> Path:
    """Write `features` and `paths` of extract_features' result to an .npz, atomically (np.load reads
    it without allow_pickle: paths are a unicode array)."""
    features = np.asarray(result["features"], dtype=np.float32)
    paths = np.asarray([str(p) for p in result["paths"]], dtype=np.str_)

    def write(handle: Any) -> None:
        np.savez(handle, features=features, paths=paths)

    return atomic_write(path, write)
