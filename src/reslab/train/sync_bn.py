"""Batch normalisation over the global batch on the CPU: what torch.nn.SyncBatchNorm computes on GPUs.

torch.nn.SyncBatchNorm refuses CPU tensors ("expected input tensor to be on GPU"), so on gloo reslab swaps
each BatchNorm2d for GlobalBatchNorm2d: in training mode the per-channel mean and (biased) variance come
from the sums of every rank's slice, through one all-reduce that autograd differentiates (its backward sums
the gradients over ranks, as SyncBatchNorm's does). The running statistics are updated as BatchNorm2d would
with the whole global batch (unbiased variance). In eval mode, or in one process, it is BatchNorm2d itself;
the state_dict keys are BatchNorm2d's, so checkpoints hold the plain model.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of every rank's input is the sum over ranks of the
    gradients of the output (each rank's loss depends on every rank's slice through the statistics)."""

    @staticmethod
    def forward(ctx: object, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(tensor)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span all ranks of the default process group."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not (dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels = x.shape[1]
        xf = x.float()
        # One all-reduce of shifted sums: sum(x - k), sum((x - k)^2), count. The shift k (the running mean,
        # the same on every rank) sits near the batch mean, so var = E[d^2] - E[d]^2 does not cancel the way
        # E[x^2] - E[x]^2 would; one collective each way instead of two.
        shift = (
            self.running_mean.detach().float()
            if self.running_mean is not None
            else torch.zeros(channels, device=x.device)
        )
        d = xf - shift.view(1, -1, 1, 1)
        count = torch.full((1,), x.numel() / channels, device=x.device, dtype=torch.float32)
        total = all_reduce_sum(torch.cat([d.sum((0, 2, 3)), d.square().sum((0, 2, 3)), count]))
        count = total[2 * channels]
        mean_d = total[:channels] / count
        var = (total[channels : 2 * channels] / count - mean_d.square()).clamp_min(0)
        mean = shift + mean_d
        centred = xf - mean.view(1, -1, 1, 1)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                n = float(count)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                unbiased = var.detach() * (n / max(n - 1.0, 1.0))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)


def convert_to_global_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d in `module` replaced by a GlobalBatchNorm2d holding the same parameters and
    buffers (the objects themselves, so an optimiser built before or after sees the same tensors)."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm2d):
        new = GlobalBatchNorm2d(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            device=None,
        )
        if module.affine:
            new.weight = module.weight
            new.bias = module.bias
        new.running_mean = module.running_mean
        new.running_var = module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        converted = convert_to_global_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module
