"""`reslab degradation`, `reslab gradients`, `reslab responses`, `reslab ablation`: the papers' experiments.

One command per entry of reslab.analysis.registry, with that experiment's own flags (from the module of
reslab.cli.experiments named as the experiment) then the ones they all share; every command computes the
results (or reads them back with --replot), saves them, then prints the table and draws <experiment>.png
from the results alone.
"""

from __future__ import annotations

import argparse
import importlib
from functools import partial
from pathlib import Path
from types import ModuleType

from ..analysis.registry import EXPERIMENTS
from ..analysis.results import Experiment
from ..plots import save_figure
from .output import console


def register(subparsers: argparse._SubParsersAction) -> None:
    for experiment in EXPERIMENTS:
        command = importlib.import_module(f"{__package__}.experiments.{experiment.name}")
        parser = subparsers.add_parser(experiment.name, help=experiment.help)
        command.add_arguments(parser)
        out = experiment.default_out
        parser.add_argument("--out", default=out, help=f"experiment folder (default {out})")
        parser.add_argument("--seeds", type=int, default=1, help="seeds 0..K-1; tables show mean ± std")
        parser.add_argument(
            "--replot",
            action="store_true",
            help="redraw the plot and table from the saved results, no training",
        )
        parser.set_defaults(func=partial(run_experiment, experiment, command))


def run_experiment(experiment: Experiment, command: ModuleType, args: argparse.Namespace) -> int:
    """`reslab <experiment.name>`: results computed (or read back with --replot) and saved, table, plot."""
    out = Path(args.out)
    results = experiment.results(out, partial(command.run, args, out, console()), replot=args.replot)
    con = console()
    experiment.table(results, con)
    png = save_figure(experiment.plot(results), out / f"{experiment.name}.png")
    con.print(f"results: {experiment.results_path(out)}  plot: {png}", highlight=False)
    return 0
