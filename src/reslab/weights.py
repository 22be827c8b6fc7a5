"""The one reader of weights: a reslab checkpoint, a torchvision `.pth` state dict, a `.safetensors` file,
either saved from a DDP-wrapped model (`module.`-prefixed keys), or a torchvision weights name
(reslab.pretrained). Used by `create_model(weights=...)` and `train(weights=...)`."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ReslabError

CLASSIFIER = ("fc.weight", "fc.bias")
_DDP_PREFIX = "module."


def read_torch_file(
    path: Path, what: str, map_location: str | torch.device = "cpu", params: tuple[str, ...] = ()
) -> Any:
    """torch.load(weights_only=True); a file it cannot read is a one-line ReslabError saying why.
    what: how the message names the file; params: the settings it names (errors.py)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zips, pickles that would run code, files of another kind
        reason = _why_unreadable(path, exc)
        raise ReslabError(f"cannot read {what} {str(path)!r}: {reason}", params=params) from None


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


def read_safetensors_file(path: Path, what: str, params: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """safetensors.torch.load_file onto the CPU (a safetensors file holds only tensors: nothing runs); a
    file it cannot read is a one-line ReslabError saying why."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ReslabError(
            f"cannot read {what} {str(path)!r}: reading .safetensors needs the safetensors package "
            "(pip install safetensors)",
            params=params,
        ) from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # truncated files, bad headers, another format under the .safetensors name
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReslabError(
            f"cannot read {what} {str(path)!r}: it is not a readable safetensors file ({first})",
            params=params,
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in `path` (weights only: nothing in the file runs), DDP's prefix removed."""
    path = Path(path)
    if not path.is_file():
        raise ReslabError(f"weights {str(path)!r} do not exist", params=("weights",))
    if path.suffix == ".safetensors":
        state = read_safetensors_file(path, "weights", params=("weights",))
    else:
        state = read_torch_file(path, "weights", params=("weights",))
    return clean_state_dict(state, f"weights {str(path)!r}")


def clean_state_dict(
    state: Any, what: str, params: tuple[str, ...] = ("weights",)
) -> dict[str, torch.Tensor]:
    """A loaded file's state dict (a reslab checkpoint's model), DDP's prefix removed; anything else is a
    ReslabError. what: how the message names the file."""
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a reslab checkpoint
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        raise ReslabError(f"{what} hold no state_dict", params=params)
    if all(key.startswith(_DDP_PREFIX) for key in state):
        state = {key[len(_DDP_PREFIX) :]: value for key, value in state.items()}
    return state


def load_weights(
    model: nn.Module, path: str | Path | Any, *, new_classifier: bool = False, progress: bool = True
) -> list[str]:
    """Load every tensor of `path` into `model`, which must match it exactly; with `new_classifier`, a
    classifier (`fc`) of another shape stays freshly initialised (fine-tuning to another class count).
    `path` may also name torchvision's pretrained weights for the model's architecture ("IMAGENET1K_V1",
    "DEFAULT": reslab.pretrained): fetched into torch.hub's cache, the first convolution adapted to the
    model's input channels, their metadata kept as `model.pretrained_cfg`.
    Returns the names of the tensors that were not loaded."""
    from .models.config import ResNetConfig
    from .pretrained import is_weights_name, pretrained_state

    if is_weights_name(path):
        if not isinstance(getattr(model, "config", None), ResNetConfig):
            raise ReslabError(f"weights {str(path)!r} by name need a reslab ResNet", params=("weights",))
        state, cfg = pretrained_state(model.config, path, progress=progress)
        skipped = load_state(model, state, cfg["weights"], new_classifier=new_classifier)
        model.pretrained_cfg = cfg
        return skipped
    return load_state(model, read_state_dict(path), str(path), new_classifier=new_classifier)


def load_state(
    model: nn.Module, state: dict[str, torch.Tensor], source: str, *, new_classifier: bool = False
) -> list[str]:
    """load_weights for a state dict already read; source: how messages name where it came from."""
    own = model.state_dict()
    # A classifier of another shape, or none at all (num_classes=0: a backbone), is not loaded.
    skipped = [
        k
        for k in CLASSIFIER
        if new_classifier and k in state and (k not in own or state[k].shape != own[k].shape)
    ]
    state = {k: v for k, v in state.items() if k not in skipped}
    missing = sorted(set(own) - set(state) - set(skipped))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        if missing:
            detail = f"missing {missing[:3]}"
        elif unexpected:
            detail = f"unexpected {unexpected[:3]}"
        else:
            detail = (
                f"shape of {wrong[0]} is {tuple(state[wrong[0]].shape)}, not {tuple(own[wrong[0]].shape)}"
            )
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        raise ReslabError(f"weights {source!r} do not fit {name}: {detail}", params=("weights",))
    model.load_state_dict(state, strict=False)
    return skipped
