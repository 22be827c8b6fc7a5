"""Fine-tuning: start from a reslab checkpoint or a torchvision .pth; a new classifier where the class
count differs."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..checkpoint import read_torch_file
from ..errors import ReslabError


def load_finetune_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load every weight of `path` into `model`; the classifier (`fc`) stays freshly initialised when its
    shape differs. Returns the names of the tensors that were not loaded."""
    path = Path(path)
    if not path.is_file():
        raise ReslabError(f"--weights {str(path)!r} does not exist")
    state = read_torch_file(path, "--weights")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ReslabError(f"--weights {str(path)!r} holds no state_dict")
    own = model.state_dict()
    skipped = [
        k for k in ("fc.weight", "fc.bias") if k in state and k in own and state[k].shape != own[k].shape
    ]
    state = {k: v for k, v in state.items() if k not in skipped}
    missing = sorted(set(own) - set(state) - set(skipped))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[:3]}"
            if missing
            else f"unexpected {unexpected[:3]}"
            if unexpected
            else f"shape of {wrong[0]} is {tuple(state[wrong[0]].shape)}, not {tuple(own[wrong[0]].shape)}"
        )
        raise ReslabError(f"--weights {str(path)!r} do not fit {model.config.name}: {detail}")
    model.load_state_dict(state, strict=False)
    return skipped
