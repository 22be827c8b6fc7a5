"""Checkpoints: one dict of tensors and plain values, written atomically, read with weights_only=True.

Layout (version 1):
  format: "reslab-checkpoint", version: 1
  model_name: str, model_config: ResNetConfig.to_dict(), model: state_dict
  data: dict describing the input the model expects (spec, class_names, in_chans, image_size, mean, std, ...)
  optional training state: train_config, optimizer, scheduler, epoch, step, rng, best_val_error, ...
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .errors import ReslabError
from .models import ResNet, ResNetConfig, build_model

FORMAT = "reslab-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write payload to path atomically (reslab.atomic: temp file, fsync, rename over)."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def read_torch_file(path: Path, what: str, map_location: str | torch.device = "cpu") -> Any:
    """torch.load(weights_only=True); a file it cannot read is a one-line ReslabError saying why."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zips, pickles that would run code, files of another kind
        raise ReslabError(f"cannot read {what} {str(path)!r}: {_why_unreadable(path, exc)}") from None


def _why_unreadable(path: Path, exc: Exception) -> str:
    text = str(exc).strip()
    if "weights_only" in text or "Unsupported global" in text:
        return "it holds Python objects that weights-only loading refuses to run"
    with open(path, "rb") as handle:
        head = handle.read(4)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                is_torch = any(name.endswith("/data.pkl") for name in archive.namelist())
        except (zipfile.BadZipFile, OSError):
            is_torch = True
        if not is_torch:
            return "it is a zip archive but not a PyTorch checkpoint (no data.pkl in it)"
        first = text.splitlines()[0] if text else type(exc).__name__
        return f"the zip archive is corrupt ({first.split('. ')[0]})"
    if head == b"PK\x03\x04":
        return "the file is truncated or corrupt (its zip archive has no end; was the copy interrupted?)"
    if head[:1] == b"\x80":  # a pickle: torch's legacy (pre-1.6) format, which torch.load still reads
        return text.splitlines()[0] if text else type(exc).__name__
    return "it is not a PyTorch checkpoint (not a zip archive)"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a reslab checkpoint safely; a user-facing ReslabError for anything that is not one."""
    path = Path(path)
    if path.is_dir():
        for candidate in ("best.pt", "last.pt"):
            if (path / candidate).is_file():
                path = path / candidate
                break
    if not path.is_file():
        raise ReslabError(f"checkpoint {str(path)!r} does not exist")
    payload = read_torch_file(path, "checkpoint", map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ReslabError(f"{str(path)!r} is not a reslab checkpoint")
    if payload.get("version", 0) > VERSION:
        raise ReslabError(
            f"{str(path)!r} was written by a newer reslab (format version {payload['version']})"
        )
    payload["path"] = str(path)
    return payload


def model_payload(model: ResNet) -> dict[str, Any]:
    """The model part of a checkpoint (unwraps DDP/compile wrappers)."""
    base = getattr(model, "module", model)
    base = getattr(base, "_orig_mod", base)
    state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    return {"model_name": base.config.name, "model_config": base.config.to_dict(), "model": state}


def model_from_checkpoint(payload: dict[str, Any]) -> ResNet:
    """Rebuild the model a checkpoint describes and load its weights."""
    try:
        config = ResNetConfig.from_dict(payload["model_config"])
    except (KeyError, TypeError) as exc:
        raise ReslabError(
            f"checkpoint {payload.get('path', '')!r} has no valid model config ({exc})"
        ) from None
    model = build_model(config)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError) as exc:
        raise ReslabError(
            f"checkpoint {payload.get('path', '')!r} does not match its architecture {config.name!r}: "
            + str(exc).strip().splitlines()[0]
        ) from None
    return model
