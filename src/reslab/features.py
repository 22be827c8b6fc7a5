"""`reslab features`: a trained checkpoint as a feature extractor (pooled pre-logits embeddings of images).

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
from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import normalise
from .data.images import IMAGE_EXTENSIONS, read_image
from .errors import ReslabError
from .precision import resolve_device

FEATURES_BATCH_SIZE = 64


def find_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named, and those under folders named (recursively, sorted, by extension: see
    reslab.data.images.IMAGE_EXTENSIONS; hidden files skipped), in the order given."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in IMAGE_EXTENSIONS
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.exists():
            found.append(path)
        else:
            raise ReslabError(f"image {str(path)!r} does not exist")
    if not found:
        raise ReslabError(
            "no images found in " + ", ".join(repr(str(p)) for p in inputs) if inputs else "no images given"
        )
    return found


def extract_features(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    batch_size: int = FEATURES_BATCH_SIZE,
    device: str = "auto",
) -> dict[str, Any]:
    """Pooled pre-logits features of image files and folders of them with a checkpoint's model.

    Returns {"features": float32 array (N, num_features), "paths": list of N path strings,
    "checkpoint", "model", "num_features"}. Runs in fp32 under torch.inference_mode, batch_size
    images at a time. Accepts reslab checkpoints (file or run folder) only, not weights names."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ReslabError(
            f"batch_size must be a positive integer, got {batch_size!r}", params=("batch_size",)
        )
    paths = find_images(inputs)
    payload = load_checkpoint(checkpoint)
    info = payload.get("data")
    if not isinstance(info, dict) or not {"mean", "std", "in_chans", "image_size"} <= set(info):
        raise ReslabError(f"checkpoint {payload['path']!r} does not say what data it expects")
    dev = resolve_device(device)
    model = model_from_checkpoint(payload).to(dev).eval()
    in_chans, size = int(info["in_chans"]), tuple(info["image_size"])
    mean = torch.tensor(info["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(info["std"], dtype=torch.float32).view(1, -1, 1, 1)
    chunks: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            batch = paths[start : start + batch_size]
            pixels = torch.stack([read_image(p, in_chans, size) for p in batch])
            x = normalise(pixels, mean, std).to(dev)
            feats = model.forward_head(model.forward_features(x), pre_logits=True)
            chunks.append(feats.float().cpu().numpy())
    features = np.concatenate(chunks).astype(np.float32, copy=False)
    return {
        "features": features,
        "paths": [str(p) for p in paths],
        "checkpoint": payload["path"],
        "model": payload.get("model_name", ""),
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
