"""`reslab gradients`: its flags and the call of reslab.analysis.gradients.run they ask for."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ...analysis import gradients
from ...analysis.results import Results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=list(gradients.DEFAULT_MODELS))
    parser.add_argument("--data", default=None, help="data spec (default digits, or the checkpoints' data)")
    parser.add_argument(
        "--at", nargs="+", default=["init"], metavar="init|CKPT", help="init (default) or checkpoint files"
    )
    parser.add_argument("--no-bn", action="store_true", help="only the nets with BN removed")
    parser.add_argument(
        "--zero-init-residual",
        action="store_true",
        help="add residual nets whose branches start at zero (last BN weight, or last conv without BN)",
    )
    parser.add_argument(
        "--batches",
        dest="num_batches",  # the library's name, which its errors use
        metavar="BATCHES",
        type=int,
        default=4,
        help="batches to average over (default 4)",
    )
    parser.add_argument("--batch-size", type=int, default=128)


def run(args: argparse.Namespace, _out: Path, _console: Console) -> Results:
    return gradients.run(
        args.models,
        data=args.data,
        at=args.at,
        no_bn=args.no_bn,
        zero_init_residual=args.zero_init_residual,
        seeds=args.seeds,
        num_batches=args.num_batches,
        batch_size=args.batch_size,
    )
