"""`reslab forecast simulate|train|evaluate|experiment`: WeatherBench's task with residual networks."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import ReslabError
from .output import console


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "forecast",
        help="forecast gridded weather fields (WeatherBench's ResNet, baselines, a simulated atmosphere)",
        description="Data-driven weather forecasting on (lat, lon) grids: a built-in two-layer QG atmosphere, "
        "Rasp & Thuerey's ResNet and its plain twin, WeatherBench's CNN and scores. See docs/weather.md.",
    )
    commands = p.add_subparsers(dest="forecast_command", metavar="STEP")
    commands.required = True
    for add in (add_simulate, add_train, add_evaluate, add_experiment):
        sub = add(commands)
        sub.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
        # The top-level CLI turns parameter names into flags with the `forecast` parser's table.
        p.flags.update(sub.flags)


def add_simulate(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    s = commands.add_parser(
        "simulate", help="write train/val/test trajectories of the two-layer QG channel as netCDF"
    )
    s.add_argument("--out", required=True, help="folder for train.nc, val.nc, test.nc")
    s.add_argument(
        "--years", type=float, default=3.0, help="length of the training trajectory (365-day years)"
    )
    s.add_argument("--val-years", type=float, default=0.5)
    s.add_argument("--test-years", type=float, default=1.0)
    s.add_argument("--spinup-days", type=float, default=200.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--grid", default="32x64", help="output grid, lat x lon (default 32x64)")
    s.set_defaults(func=run_simulate)
    return s


def add_train(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    t = commands.add_parser("train", help="train a forecast network (direct at one lead, or --rollout)")
    t.add_argument(
        "--data",
        required=True,
        help="netcdf:FILE_OR_GLOB, or a folder of .nc files (reslab forecast simulate's)",
    )
    t.add_argument("--vars", default="z250,t500", help="variables, comma-separated; z500 is z at level 500")
    t.add_argument("--levels", default="", help="levels to take of variables that have them, e.g. 500,850")
    t.add_argument(
        "--history", type=int, default=3, help="input states (t, t-step, ...), stacked as channels"
    )
    t.add_argument("--val-years", default="", help="years for validation (files without a split attribute)")
    t.add_argument("--test-years", default="", help="years for testing (files without a split attribute)")
    t.add_argument("--model", default="resnet", help="resnet, plain (its twin without identity adds) or cnn")
    t.add_argument("--lead", default="24h", help="direct mode's lead, a multiple of the data's time step")
    t.add_argument("--rollout", action="store_true", help="learn one time step; evaluation rolls it out")
    t.add_argument("--unroll", type=int, default=1, help="with --rollout: the loss averages this many steps")
    t.add_argument(
        "--predict",
        choices=("change", "field"),
        default="change",
        help="the net's output: the change from the latest state, or the state (the paper)",
    )
    t.add_argument("--channels", type=int, default=128)
    t.add_argument("--blocks", type=int, default=19)
    t.add_argument("--kernel", type=int, default=3)
    t.add_argument("--dropout", type=float, default=0.0)
    t.add_argument(
        "--bn",
        default="after",
        help="after: conv -> LeakyReLU -> BN (the paper); before: conv -> BN -> LeakyReLU",
    )
    t.add_argument("--loss", default="mae", help="mae or mse, both latitude-weighted")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--epochs", type=int, default=50)
    t.add_argument("--samples-per-epoch", type=int, default=0, help="0: the whole training split")
    t.add_argument(
        "--max-minutes", type=float, default=0.0, help="stop after the epoch that passes this (0: no limit)"
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--label", default="", help="the model's name in scores (default: --model)")
    t.add_argument("--out", help="run directory (default runs/forecast-<model>-<time>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.set_defaults(func=run_train)
    return t


def add_evaluate(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    e = commands.add_parser(
        "evaluate", help="score runs and baselines on the test split; forecast_scores.json and plots"
    )
    e.add_argument("run", nargs="+", metavar="RUN", help="run directories, or folders of them")
    e.add_argument("--leads", default="6h,24h,72h,120h")
    e.add_argument("--every", type=int, default=2, help="initial times: every Nth test time")
    e.add_argument("--no-baselines", dest="baselines", action="store_false")
    e.add_argument("--out", help="folder for the scores and plots (default: the first RUN)")
    e.set_defaults(func=run_evaluate)
    return e


def add_experiment(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    x = commands.add_parser(
        "experiment", help="simulate -> train ResNet, plain twin, CNN -> evaluate, in one command"
    )
    x.add_argument("--size", choices=("small", "default"), default="default")
    x.add_argument("--out", help="folder (default runs/forecast-experiment-<size>)")
    x.add_argument("--seed", type=int, default=0)
    x.set_defaults(func=run_experiment_cmd)
    return x


def set_threads(args: argparse.Namespace) -> None:
    if args.threads < 0:
        raise ReslabError("threads must be 0 or more", params=("threads",))
    if args.threads:
        torch.set_num_threads(args.threads)


def split_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in split_list(text))
    except ValueError:
        raise ReslabError(
            f"{what} must be whole numbers separated by commas, not {text!r}", params=(what,)
        ) from None


def day_progress() -> Progress:
    return Progress(
        TextColumn("[bold]simulating (days)"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console(stderr=True),
        transient=True,
    )


def run_simulate(args: argparse.Namespace) -> int:
    from ..forecast.plots import plot_simulation
    from ..forecast.simulate import QGConfig, SimulationConfig, simulate, split_days

    set_threads(args)
    try:
        ny, nx = (int(n) for n in args.grid.lower().split("x"))
    except ValueError:
        raise ReslabError(f"grid must look like 32x64, not {args.grid!r}", params=("grid",)) from None
    if ny < 4 or nx < 4 or ny % 2 or nx % 2:
        raise ReslabError(f"grid {args.grid} must be even and at least 4x4", params=("grid",))
    if min(args.years, args.val_years, args.test_years) <= 0 or args.spinup_days < 0:
        raise ReslabError(
            "years, val_years and test_years must be positive", params=("years", "val_years", "test_years")
        )
    model = replace(QGConfig(), ny=ny, nx=nx, length_x=QGConfig().length_x * nx / 64)
    config = SimulationConfig(args.years, args.val_years, args.test_years, args.seed, args.spinup_days, model)
    total = round(sum(split_days(config).values()) + 3 * config.spinup_days)
    started = time.perf_counter()
    with day_progress() as progress:
        task = progress.add_task("simulate", total=total)
        paths = simulate(args.out, config, on_day=lambda: progress.advance(task))
    for path in paths:
        console().print(f"{path}", highlight=False)
    print_stationarity(plot_simulation(Path(args.out)))
    console().print(
        f"simulated in {time.perf_counter() - started:.0f}s; plot: {Path(args.out) / 'spinup_spectrum.png'}",
        highlight=False,
    )
    return 0


def print_stationarity(summary: dict) -> None:
    for split, halves in summary.items():
        text = ", ".join(f"{half} {v['mean']:.1f} ± {v['std']:.1f}" for half, v in halves.items())
        console().print(f"{split}: eddy energy (m^2/s^2) {text}", highlight=False)


def run_train(args: argparse.Namespace) -> int:
    from ..forecast.data import DataConfig, parse_hours
    from ..forecast.models import NetConfig
    from ..forecast.train import TrainConfig, train_forecaster

    set_threads(args)
    data = DataConfig(
        spec=args.data,
        variables=split_list(args.vars),
        levels=int_list(args.levels, "levels"),
        history=args.history,
        val_years=int_list(args.val_years, "val_years"),
        test_years=int_list(args.test_years, "test_years"),
    )
    if not data.variables or args.history < 1:
        raise ReslabError(
            "vars must name at least one variable and history must be 1 or more", params=("vars", "history")
        )
    net = NetConfig(
        name=args.model,
        channels=args.channels,
        blocks=args.blocks,
        kernel=args.kernel,
        dropout=args.dropout,
        bn=args.bn,
    )
    config = TrainConfig(
        data=data,
        net=net,
        lead_hours=parse_hours(args.lead),
        rollout=args.rollout,
        unroll=args.unroll,
        predict_change=args.predict == "change",
        loss=args.loss,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        samples_per_epoch=args.samples_per_epoch,
        max_minutes=args.max_minutes,
        seed=args.seed,
        label=args.label,
    )
    if args.resume and not args.out:
        raise ReslabError("resume needs out, the run directory to continue", params=("resume", "out"))
    out = Path(args.out or f"runs/forecast-{args.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    train_forecaster(config, out, resume=args.resume, console=console(stderr=True))
    console().print(f"run: {out}", highlight=False)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..forecast.data import parse_hours
    from ..forecast.evaluate import EvalConfig, evaluate_runs

    set_threads(args)
    leads = tuple(parse_hours(text, "leads") for text in split_list(args.leads))
    if not leads or args.every < 1:
        raise ReslabError(
            "leads must name at least one lead and every must be 1 or more", params=("leads", "every")
        )
    out = Path(args.out or args.run[0])
    result = evaluate_runs(
        args.run, out, EvalConfig(leads_hours=leads, every=args.every, baselines=args.baselines)
    )
    print_scores(result)
    console().print(f"scores: {out / 'forecast_scores.json'}", highlight=False)
    return 0


def run_experiment_cmd(args: argparse.Namespace) -> int:
    from ..forecast.experiment import SIZES, run_experiment
    from ..forecast.simulate import split_days

    set_threads(args)
    out = Path(args.out or f"runs/forecast-experiment-{args.size}")
    started = time.perf_counter()
    with day_progress() as progress:
        simulation = SIZES[args.size].simulation
        task = progress.add_task(
            "simulate", total=round(sum(split_days(simulation).values()) + 3 * simulation.spinup_days)
        )
        result = run_experiment(
            out, args.size, seed=args.seed, console=progress.console, on_day=lambda: progress.advance(task)
        )
    print_scores(result)
    console().print(f"experiment: {out} ({time.perf_counter() - started:.0f}s)", highlight=False)
    return 0


def print_scores(result: dict) -> None:
    from rich.table import Table

    for metric in ("rmse", "acc"):
        variables = list(next(iter(result["models"].values()))[metric])
        for var in variables:
            table = Table(title=f"{metric.upper()} {var}")
            table.add_column("model")
            for hours in result["leads_hours"]:
                table.add_column(f"{hours:g}h", justify="right")
            for name, scores in result["models"].items():
                table.add_row(
                    name,
                    *(
                        "-" if v is None else f"{v:.3f}" if metric == "acc" else f"{v:.4g}"
                        for v in scores[metric][var]
                    ),
                )
            console().print(table)
