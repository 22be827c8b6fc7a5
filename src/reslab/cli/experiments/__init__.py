"""The experiments' flags: a module per entry of reslab.analysis.registry, named as the experiment, with
`add_arguments(parser)` (its own flags) and `run(args, out, console)` (the library call those flags ask
for, returning the results dict); reslab.cli.experiments_cmd finds it by the experiment's name. Here: the
flags of the experiments that train, shared by those modules."""

from __future__ import annotations

import argparse

from ...analysis.runs import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR, TrainingSettings


def add_training_arguments(parser: argparse.ArgumentParser, epochs: str = "epochs per run") -> None:
    """The flags of the experiments that train: TrainingSettings but --seeds (every experiment has it)."""
    parser.add_argument("--data", default="digits", help="data spec (default digits)")
    parser.add_argument("--epochs", type=int, default=None, help=f"{epochs} (default {DEFAULT_EPOCHS})")
    parser.add_argument("--batch-size", type=int, default=None, help=f"default {DEFAULT_BATCH_SIZE}")
    parser.add_argument("--lr", type=float, default=None, help=f"peak lr (default {DEFAULT_LR})")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16")


def settings_from_args(args: argparse.Namespace) -> TrainingSettings:
    """The settings those flags (and --seeds) ask for; a flag left out (None) keeps the default."""
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    return TrainingSettings(
        data=args.data,
        seeds=args.seeds,
        device=args.device,
        precision=args.precision,
        **{key: value for key, value in given.items() if value is not None},
    )
