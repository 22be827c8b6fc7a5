"""`reslab degradation`, `reslab gradients`, `reslab responses`, `reslab ablation`: the papers' experiments."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from rich.console import Console

from ..analysis import ablation, degradation, gradients, responses
from ..analysis.plots import plot_ablation, plot_degradation, plot_gradients, plot_responses, save_figure
from ..analysis.results import read_results, results_path, save_results
from ..analysis.runs import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    TrainingSettings,
)
from ..data import load_data
from ..errors import ReslabError
from .output import console


def _common(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("--out", default=out, help=f"experiment folder (default {out})")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..K-1; tables show mean ± std")
    parser.add_argument(
        "--replot", action="store_true", help="redraw the plot and table from the saved results, no training"
    )


def _training(parser: argparse.ArgumentParser, epochs_help: str) -> None:
    parser.add_argument("--data", default="digits", help="data spec (default digits)")
    parser.add_argument("--epochs", type=int, default=None, help=epochs_help)
    parser.add_argument("--batch-size", type=int, default=None, help=f"default {DEFAULT_BATCH_SIZE}")
    parser.add_argument("--lr", type=float, default=None, help=f"peak lr (default {DEFAULT_LR})")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16")


def register(subparsers: argparse._SubParsersAction) -> None:
    deg = subparsers.add_parser(
        "degradation", help="plain vs residual nets of each depth, same recipe and seeds (paper Fig. 6)"
    )
    deg.add_argument("--depths", type=int, nargs="+", default=list(degradation.DEFAULT_DEPTHS))
    _training(deg, f"epochs per run (default {DEFAULT_EPOCHS})")
    _common(deg, "runs/degradation")
    deg.set_defaults(func=run_degradation)

    grad = subparsers.add_parser(
        "gradients", help="loss-gradient norm at each unit and conv weight, with and without BN"
    )
    grad.add_argument("--models", nargs="+", default=["plain56", "resnet56"])
    grad.add_argument("--data", default=None, help="data spec (default digits, or the checkpoints' data)")
    grad.add_argument(
        "--at", nargs="+", default=["init"], metavar="init|CKPT", help="init (default) or checkpoint files"
    )
    grad.add_argument("--no-bn", action="store_true", help="only the nets with BN removed")
    grad.add_argument(
        "--zero-init-residual",
        action="store_true",
        help="add residual nets whose branches start at zero (last BN weight, or last conv without BN)",
    )
    grad.add_argument("--batches", type=int, default=4, help="batches to average over (default 4)")
    grad.add_argument("--batch-size", type=int, default=128)
    _common(grad, "runs/gradients")
    grad.set_defaults(func=run_gradients)

    resp = subparsers.add_parser("responses", help="std of each layer's response (paper Fig. 7)")
    resp.add_argument("--models", nargs="+", default=list(responses.DEFAULT_MODELS))
    resp.add_argument("--ckpt", nargs="+", default=None, help="use these checkpoints instead of training")
    _training(resp, f"epochs when training the models (default {DEFAULT_EPOCHS})")
    _common(resp, "runs/responses")
    resp.set_defaults(func=run_responses)

    abl = subparsers.add_parser(
        "ablation", help="the five activation placements of Identity Mappings Table 2"
    )
    abl.add_argument("--depth", type=int, default=ablation.DEFAULT_DEPTH)
    _training(abl, f"epochs per run (default {DEFAULT_EPOCHS})")
    _common(abl, "runs/ablation")
    abl.set_defaults(func=run_ablation)


def _settings(args: argparse.Namespace) -> TrainingSettings:
    # A flag left out (None) keeps the experiments' own default.
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    return TrainingSettings(
        data=args.data,
        seeds=args.seeds,
        device=args.device,
        precision=args.precision,
        **{key: value for key, value in given.items() if value is not None},
    )


def _experiment(
    args: argparse.Namespace,
    experiment: str,
    compute: Callable[[Path], dict[str, Any]],
    figure: Callable[[dict[str, Any]], Figure],
    table: Callable[[dict[str, Any], Console], None],
) -> int:
    """Every experiment command: compute the results (or read them back with --replot), save them, then
    print the table and draw <experiment>.png from the results alone."""
    out = Path(args.out)
    if args.replot:
        results = read_results(out, experiment)
    else:
        results = compute(out)
        save_results(out, experiment, results)
    con = console()
    table(results, con)
    png = save_figure(figure(results), out / f"{experiment}.png")
    con.print(f"results: {results_path(out, experiment)}  plot: {png}", highlight=False)
    return 0


def run_degradation(args: argparse.Namespace) -> int:
    def compute(out: Path) -> dict[str, Any]:
        return degradation.run(_settings(args), depths=args.depths, out=out, console=console())

    return _experiment(args, "degradation", compute, plot_degradation, degradation.print_table)


def _gradients(args: argparse.Namespace) -> dict[str, Any]:
    checkpoints = [a for a in args.at if a != "init"]
    if checkpoints and len(checkpoints) != len(args.at):
        raise ReslabError("--at takes either init or checkpoint files, not both")
    if checkpoints:
        if args.no_bn or args.zero_init_residual:
            raise ReslabError("--no-bn and --zero-init-residual change the initialisation; use --at init")
        results = gradients.gradients_of_checkpoints(
            checkpoints, args.data, num_batches=args.batches, batch_size=args.batch_size
        )
    else:
        results = gradients.gradients_at_init(
            args.models,
            load_data(args.data or "digits"),
            bn_modes=(False,) if args.no_bn else (True, False),
            zero_init=args.zero_init_residual,
            seeds=args.seeds,
            num_batches=args.batches,
            batch_size=args.batch_size,
        )
    results["settings"] = {
        "at": "checkpoints" if checkpoints else "init",
        "data": args.data or ("from checkpoints" if checkpoints else "digits"),
        "seeds": 1 if checkpoints else args.seeds,
        "batches": args.batches,
        "batch_size": args.batch_size,
    }
    return results


def run_gradients(args: argparse.Namespace) -> int:
    return _experiment(
        args, "gradients", lambda _out: _gradients(args), plot_gradients, gradients.print_table
    )


def run_responses(args: argparse.Namespace) -> int:
    def compute(out: Path) -> dict[str, Any]:
        settings = _settings(args)  # checked even where --ckpt leaves it unused
        if args.ckpt:
            return responses.from_checkpoints(args.ckpt, data=None if args.data == "digits" else args.data)
        return responses.train_and_measure(args.models, settings, out=out, console=console())

    return _experiment(args, "responses", compute, plot_responses, responses.print_table)


def run_ablation(args: argparse.Namespace) -> int:
    def compute(out: Path) -> dict[str, Any]:
        return ablation.run(_settings(args), depth=args.depth, out=out, console=console())

    return _experiment(args, "ablation", compute, plot_ablation, ablation.print_table)
