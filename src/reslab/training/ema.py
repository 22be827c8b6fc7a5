"""An exponential moving average of the weights (`--ema DECAY`): after every step, ema = decay * ema +
(1 - decay) * weights, buffers (BatchNorm statistics) averaged alike. Validation, best.pt and the test use
it; last.pt keeps both, so a resumed run continues the same average."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.averaged.eval()

    @property
    def module(self) -> nn.Module:
        """The averaged network, shaped as the trained one (for validation and checkpoints)."""
        return self.averaged.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)
