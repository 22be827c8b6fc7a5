"""`reslab responses`: its flags and the call of reslab.analysis.responses they ask for."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ...analysis import responses
from ...analysis.results import Results
from . import add_training_arguments, settings_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=list(responses.DEFAULT_MODELS))
    parser.add_argument("--ckpt", nargs="+", default=None, help="use these checkpoints instead of training")
    add_training_arguments(parser, "epochs when training the models")


def run(args: argparse.Namespace, out: Path, console: Console) -> Results:
    settings = settings_from_args(args)  # checked even where --ckpt leaves it unused
    if args.ckpt:
        return responses.from_checkpoints(args.ckpt, data=None if args.data == "digits" else args.data)
    return responses.train_and_measure(args.models, settings, out=out, console=console)
