"""Recipes: the optimiser and learning-rate schedule of a run, resolved to plain numbers.

default   fast to a strong result on small bundled data (SGD + Nesterov, one-cycle), measured on digits.
paper     He et al. 2016's CIFAR recipe exactly, counted in iterations: lr 0.1, /10 at 32k and 48k, stop at
          64k, batch 128, momentum 0.9, wd 1e-4; ResNet-110 and deeper warm up at 0.01 for 400 iterations.
imagenet  the paper's ImageNet optimiser and schedule: SGD 0.9, wd 1e-4, lr 0.1 per 256 images, /10 every 30
          epochs, 90 epochs, with torchvision's random-resized crop + flip (crop="scale": the paper's own
          scale augmentation) and evaluation on the centre crop of images resized to S / 0.875.

A schedule is a pure function of the iteration (`LRSchedule.lr_at(step)`), so resuming at any step gives the
same learning rate as the uninterrupted run.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from ..run_config import RECIPES, SCHEDULES, TrainConfig
from .finetune import parameter_groups
from .lr_scaling import scaled_lr
from .precise_bn import auto_batches

__all__ = ["RECIPES", "SCHEDULES", "LRSchedule", "TrainConfig", "resolve_recipe", "steps_per_epoch"]


# The default recipe's run sees at least this many steps of DEFAULT_BATCH images: on a small folder (a few
# hundred images, 2-3 steps an epoch) 30 epochs are too few to learn (docs/training.md, "Small data").
DEFAULT_MIN_STEPS = 500
DEFAULT_BATCH = 64
# A training set smaller than this (10 batches of 64) trains in batches of 16 with weight decay 5e-3:
# on issue 12's 140-image Fashion-MNIST folder that lifted held-out accuracy by 1.1 points on average
# over five seeds, none lower (docs/training.md, "Small data").
SMALL_TRAIN_SET = 10 * DEFAULT_BATCH
IMAGENET_CROP = "random-resized"


def _default_recipe(model_depth: int, train_size: int) -> TrainConfig:
    del model_depth
    # Measured on digits with resnet20 (see README "Training"): reaches >= 97.5% test accuracy in well
    # under three minutes on a 2-core CPU, with margin across seeds.
    small = train_size < SMALL_TRAIN_SET
    batch_size = 16 if small else DEFAULT_BATCH
    images_per_epoch = min(train_size, steps_per_epoch(train_size, batch_size) * batch_size)
    return TrainConfig(
        recipe="default",
        epochs=max(30, math.ceil(DEFAULT_MIN_STEPS * DEFAULT_BATCH / images_per_epoch)),
        batch_size=batch_size,
        lr=0.1,
        schedule="onecycle",
        warmup_steps=-1,  # -1: a quarter of the run (one-cycle's rise)
        weight_decay=5e-3 if small else 5e-4,
        momentum=0.9,
        nesterov=True,
        label_smoothing=0.0,
        decay_norm_and_bias=False,
        precise_bn="auto",
        select_by="auto",
    )


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    """Full batches only (BatchNorm dislikes a tiny last batch), unless the set is smaller than a batch."""
    return max(1, train_size // batch_size)


def _paper_recipe(model_depth: int, train_size: int) -> TrainConfig:
    batch_size = 128
    max_steps = 64_000
    deep = model_depth >= 110
    return TrainConfig(
        recipe="paper",
        epochs=math.ceil(max_steps / steps_per_epoch(train_size, batch_size)),
        batch_size=batch_size,
        lr=0.1,
        schedule="step",
        # "we use 0.01 to warm up the training until the training error is below 80% (about 400 iterations)"
        warmup_steps=400 if deep else 0,
        weight_decay=1e-4,
        momentum=0.9,
        nesterov=False,
        milestones=(32_000, 48_000),
        milestones_are_steps=True,
        gamma=0.1,
        warmup_mode="constant",
        warmup_factor=0.1,
        max_steps=max_steps,
        precise_bn="auto",
        select_by="auto",
    )


def _imagenet_recipe(model_depth: int, train_size: int) -> TrainConfig:
    del model_depth, train_size
    batch_size = 256
    return TrainConfig(
        recipe="imagenet",
        epochs=90,
        batch_size=batch_size,
        lr=0.1 * batch_size / 256,
        schedule="step",
        warmup_steps=0,
        weight_decay=1e-4,
        momentum=0.9,
        nesterov=False,
        milestones=(30 / 90, 60 / 90),
        gamma=0.1,
        decay_norm_and_bias=False,
        precise_bn="auto",
        select_by="auto",
        crop=IMAGENET_CROP,
        extra={"lr_per_256_images": 0.1},
    )


def recipe_crop(recipe: str, overrides: dict[str, Any]) -> str:
    """The training crop a request will train with (the data is prepared for it before the recipe is
    resolved, which needs the training set's size)."""
    return overrides.get("crop") or (IMAGENET_CROP if recipe == "imagenet" else "pad")


BUILDERS = {"default": _default_recipe, "paper": _paper_recipe, "imagenet": _imagenet_recipe}


# Overrides that become the TrainConfig field of the same name as they are, but for these: lr (scaled
# first), epochs (it replaces the paper recipe's iteration budget) and the lr rule (recorded in extra).
_SPECIAL = ("lr", "epochs", "lr_scaling")


# The recipes' lr and weight decay are SGD's; AdamW wants an lr two orders smaller and a larger,
# decoupled weight decay (its usual values, e.g. timm's and torch's fine-tuning references).
ADAMW_LR = 1e-3
ADAMW_WEIGHT_DECAY = 0.05


def _adamw_defaults(config: TrainConfig, user: dict[str, Any]) -> dict[str, Any]:
    """AdamW's own lr and weight decay where the user chose AdamW over a recipe's SGD and gave neither."""
    if user.get("optimizer") != "adamw" or config.optimizer == "adamw":
        return {}
    defaults = {"lr": ADAMW_LR, "weight_decay": ADAMW_WEIGHT_DECAY}
    return {key: value for key, value in defaults.items() if user.get(key) is None}


def _milestones_as_fractions(config: TrainConfig) -> dict[str, Any]:
    """The paper's milestones (step numbers out of max_steps) restated as fractions of the run."""
    return {
        "milestones": tuple(m / config.max_steps for m in config.milestones),
        "milestones_are_steps": False,
    }


def resolve_recipe(name: str, *, model_depth: int, train_size: int, **user: Any) -> TrainConfig:
    """The recipe's settings with the user's overrides (RECIPE_OVERRIDES, validated by TrainRequest;
    absent or None keeps the recipe's value). lr_scaling: how lr follows a batch size other than the
    recipe's (lr_scaling.py); the outcome is recorded in extra["lr_scaling"]."""
    epochs, batch_size = user.get("epochs"), user.get("batch_size")
    schedule, warmup_steps = user.get("schedule"), user.get("warmup_steps")
    config = BUILDERS[name](model_depth, train_size)
    lr, lr_record = scaled_lr(
        name,
        config.batch_size,
        config.lr,
        batch_size=batch_size,
        lr=user.get("lr"),
        rule=user.get("lr_scaling"),
    )
    overrides: dict[str, Any] = {
        key: value for key, value in user.items() if key not in _SPECIAL and value is not None
    }
    if lr is not None:
        overrides["lr"] = lr
    overrides.update(_adamw_defaults(config, user))
    extra = {**config.extra, "lr_scaling": lr_record}
    run_steps_per_epoch = steps_per_epoch(train_size, batch_size or config.batch_size)
    if config.max_steps and epochs is None and batch_size is not None:
        # The paper counts iterations: another batch size keeps the 64k of them.
        overrides["epochs"] = math.ceil(config.max_steps / run_steps_per_epoch)
    if config.max_steps and epochs is not None:
        # An explicit epoch count replaces the iteration budget; the schedule keeps its shape: the lr
        # drops at the same fractions of the run (32k/64k = 0.5, 48k/64k = 0.75) and the warm-up
        # lasts the same fraction of it (400/64k), else a short run would never lower its lr.
        total = epochs * run_steps_per_epoch
        overrides.update(epochs=epochs, max_steps=0, **_milestones_as_fractions(config))
        if warmup_steps is None and config.warmup_steps > 0:
            overrides["warmup_steps"] = max(1, round(config.warmup_steps * total / config.max_steps))
        extra["scaled_to_epochs"] = {
            "recipe_steps": config.max_steps,
            "run_steps": total,
            "recipe_milestones": list(config.milestones),
            "recipe_warmup_steps": config.warmup_steps,
        }
    elif epochs is not None:
        overrides["epochs"] = epochs
    new_schedule = schedule is not None and schedule != config.schedule
    if new_schedule and config.milestones_are_steps:
        overrides.update(_milestones_as_fractions(config))
    config = replace(config, **overrides, extra=extra)
    if config.warmup_steps == -1:
        # Resolve "a quarter of the run" now, so config.json records the number of steps.
        total = config.max_steps or config.epochs * steps_per_epoch(train_size, config.batch_size)
        config = replace(config, warmup_steps=int(0.25 * total) if config.schedule == "onecycle" else 0)
    if config.precise_bn == "auto":
        config = replace(config, precise_bn=auto_batches(steps_per_epoch(train_size, config.batch_size)))
    return config


class LRSchedule:
    """lr as a pure function of the iteration: warm-up, then step / cosine / one-cycle."""

    def __init__(self, config: TrainConfig, total_steps: int) -> None:
        self.config = config
        self.total_steps = max(1, total_steps)
        self.warmup_steps = min(config.warmup_steps, self.total_steps)  # resolve_recipe resolved -1
        if config.milestones_are_steps:
            self.milestones = tuple(int(m) for m in config.milestones)
        else:
            self.milestones = tuple(int(round(m * self.total_steps)) for m in config.milestones)

    def lr_at(self, step: int) -> float:
        c = self.config
        if step < self.warmup_steps:
            if c.schedule == "onecycle":
                # One-cycle's rise: from lr/25 to lr along half a cosine.
                start = c.lr / 25
                return start + (c.lr - start) * (1 - math.cos(math.pi * step / self.warmup_steps)) / 2
            if c.warmup_mode == "constant":
                return c.lr * c.warmup_factor
            return c.lr * (step + 1) / (self.warmup_steps + 1)
        if c.schedule == "step":
            return c.lr * c.gamma ** sum(step >= m for m in self.milestones)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = c.lr / 1e4 if c.schedule == "onecycle" else 0.0
        return floor + (c.lr - floor) * (1 + math.cos(math.pi * progress)) / 2

    def factor(self, step: int) -> float:
        return self.lr_at(step) / self.config.lr


def make_optimizer(
    model: torch.nn.Module, config: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov) or AdamW over the trainable parameters in finetune.parameter_groups, fused
    on CUDA and foreach on CPU: one kernel launch per parameter group instead of one per tensor."""
    fused = device.type == "cuda"
    groups = parameter_groups(model, config)
    kernels = {"foreach": None if fused else True, "fused": True if fused else None}
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, **kernels)
    return torch.optim.SGD(
        groups,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
        **kernels,
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: LRSchedule
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per iteration; its state (the iteration) goes into checkpoints."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.factor)
