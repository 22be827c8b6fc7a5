"""`reslab ablation`: its flags and the call of reslab.analysis.ablation.run they ask for."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ...analysis import ablation
from ...analysis.results import Results
from . import add_training_arguments, settings_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth", type=int, default=ablation.DEFAULT_DEPTH)
    add_training_arguments(parser)


def run(args: argparse.Namespace, out: Path, console: Console) -> Results:
    return ablation.run(settings_from_args(args), depth=args.depth, out=out, console=console)
