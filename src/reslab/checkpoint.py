"""Checkpoints: one dict of tensors and plain values, written atomically, read with weights_only=True.

Layout (version 2):
  format: "reslab-checkpoint", version: 2
  model_name: str, model_config: ResNetConfig.to_dict(), model: state_dict
  data: dict describing the input the model expects (spec, class_names, in_chans, image_size, mean, std, ...)
  run_config: RunConfig.to_dict() of the run that wrote it (absent in bare weights)
  optional training state: optimizer, scheduler, grad_scaler, epoch, step, rng, best_val_error, ...
Version 1 (reslab 0.1) kept the run's settings as an untyped dict under `train_config`; it still loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .errors import ReslabError
from .models import ResNet, ResNetConfig, build_model
from .run_config import RunConfig
from .weights import read_torch_file

FORMAT = "reslab-checkpoint"
VERSION = 2


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write payload to path atomically (reslab.atomic: temp file, fsync, rename over)."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    return atomic_write(path, lambda handle: torch.save(payload, handle))


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


def run_config_of(payload: dict[str, Any]) -> RunConfig | None:
    """The run configuration a checkpoint was trained with (either format), None for bare weights."""
    stored = payload.get("run_config", payload.get("train_config"))
    if stored is None:
        return None
    try:
        return RunConfig.from_dict(stored)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReslabError(
            f"checkpoint {payload.get('path', '')!r} has an unreadable run configuration ({exc})"
        ) from None


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
