"""`reslab degradation`: its flags and the call of reslab.analysis.degradation.run they ask for."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ...analysis import degradation
from ...analysis.results import Results
from . import add_training_arguments, settings_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depths", type=int, nargs="+", default=list(degradation.DEFAULT_DEPTHS))
    add_training_arguments(parser)


def run(args: argparse.Namespace, out: Path, console: Console) -> Results:
    return degradation.run(settings_from_args(args), depths=args.depths, out=out, console=console)
