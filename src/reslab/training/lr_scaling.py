"""The learning-rate rule when the global batch differs from the recipe's reference batch.

--batch-size is the GLOBAL batch (all processes together); `reslab train --nproc N` splits it over N
processes, so the same command trains the same recipe on 1 or N processes. The rule matters only when the
global batch is changed from the recipe's:
  none    keep the recipe's lr (the default for the default and paper recipes);
  linear  lr = recipe lr * global batch / recipe batch (Goyal et al. 2017; the imagenet recipe's
          "0.1 per 256 images", hence its default).
An explicit --lr always wins; config.json records the rule, the reference and whether it was applied.
"""

from __future__ import annotations

from typing import Any

from ..run_config import LR_SCALING_RULES

__all__ = ["LR_SCALING_RULES", "default_rule", "scaled_lr"]


def default_rule(recipe: str) -> str:
    return "linear" if recipe == "imagenet" else "none"


def scaled_lr(
    recipe: str,
    reference_batch: int,
    reference_lr: float,
    *,
    batch_size: int | None,
    lr: float | None,
    rule: str | None,
) -> tuple[float | None, dict[str, Any]]:
    """(the lr the run uses, None to keep the recipe's; the record for config.json). `rule` was checked
    where the request was made (run_config.TrainRequest)."""
    rule = rule or default_rule(recipe)
    record: dict[str, Any] = {
        "rule": rule,
        "reference_batch": reference_batch,
        "reference_lr": reference_lr,
        "applied": False,
    }
    if lr is not None or batch_size is None or batch_size == reference_batch or rule == "none":
        return lr, record
    record["applied"] = True
    return reference_lr * batch_size / reference_batch, record
