"""The training step: forward under autocast, backward, optimiser and schedule step, no host sync.

Loss and correct-prediction counts accumulate as tensors on the device; the host reads them only when
asked (`TrainStep.read()`), a few times per epoch. Reused as-is by the speed benchmarks and by DDP.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..precision import Precision


class TrainStep:
    """Callable (x, y) -> the step's loss (a detached device tensor). Keeps running sums on the device."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        precision: Precision,
        *,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        grad_scaler: torch.amp.GradScaler | None = None,
        track: bool = True,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.precision = precision
        self.scheduler = scheduler
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        # fp16 needs loss scaling; bf16 has fp32's range and does not.
        if grad_scaler is None and precision.name == "fp16":
            grad_scaler = torch.amp.GradScaler(precision.device_type)
        self.grad_scaler = grad_scaler
        self.track = track
        # Sums the read-out over processes (DDP: every rank reads at the same steps); None for one process.
        self.reduce = reduce
        self.loss_sum: torch.Tensor | None = None
        self.correct: torch.Tensor | None = None
        self.count = 0

    def reset(self) -> None:
        self.loss_sum = None
        self.correct = None
        self.count = 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # fp32 on CUDA: backward's convolutions must not use TF32 either (autocast() covers forward only).
        with self.precision.strict():
            return self._step(x, y)

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            logits = self.model(x)
            loss = self.loss_fn(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        loss = loss.detach()
        if self.track:
            n = y.shape[0]
            batch_loss = loss * n
            batch_correct = (logits.detach().argmax(1) == y).sum()
            if self.loss_sum is None:
                self.loss_sum, self.correct = batch_loss, batch_correct
            else:
                self.loss_sum = self.loss_sum + batch_loss
                self.correct = self.correct + batch_correct
            self.count += n
        return loss

    def read(self) -> tuple[float, float, int]:
        """(mean loss, error fraction, images) since the last reset: the one host sync."""
        if self.reduce is not None:
            device = self.optimizer.param_groups[0]["params"][0].device
            sums = torch.zeros(3, dtype=torch.float64, device=device)
            if self.loss_sum is not None:
                sums[0], sums[1] = self.loss_sum.double(), self.correct.double()
            sums[2] = self.count
            loss_sum, correct, count = self.reduce(sums).tolist()
            count = int(count)
        elif self.loss_sum is None or self.count == 0:
            return float("nan"), float("nan"), 0
        else:
            loss_sum, correct = torch.stack([self.loss_sum.float(), self.correct.float()]).tolist()
            count = self.count
        if count == 0:
            return float("nan"), float("nan"), 0
        return loss_sum / count, 1.0 - correct / count, count


# The documented public name (README, benchmarks): the step is the class itself, nothing wraps it.
make_train_step = TrainStep
