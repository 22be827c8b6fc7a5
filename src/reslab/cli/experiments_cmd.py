"""`reslab degradation`, `reslab gradients`, `reslab responses`, `reslab ablation`: the papers' experiments."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..analysis import ablation, degradation, gradients, responses
from ..analysis.plots import plot_ablation, plot_degradation, plot_gradients, plot_responses, save_figure
from ..analysis.results import read_results, write_json
from ..data import load_data
from ..errors import ReslabError
from .output import console


def _common(parser: argparse.ArgumentParser, out: str, seeds: bool = True) -> None:
    parser.add_argument("--out", default=out, help=f"experiment folder (default {out})")
    if seeds:
        parser.add_argument("--seeds", type=int, default=1, help="seeds 0..K-1; tables show mean ± std")
    parser.add_argument(
        "--replot", action="store_true", help="redraw the plot and table from the saved results, no training"
    )


def _training(parser: argparse.ArgumentParser, epochs_help: str) -> None:
    parser.add_argument("--data", default="digits", help="data spec (default digits)")
    parser.add_argument("--epochs", type=int, default=None, help=epochs_help)
    parser.add_argument(
        "--batch-size", type=int, default=None, help=f"default {degradation.DEFAULT_BATCH_SIZE}"
    )
    parser.add_argument("--lr", type=float, default=None, help=f"peak lr (default {degradation.DEFAULT_LR})")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16")


def register(subparsers: argparse._SubParsersAction) -> None:
    deg = subparsers.add_parser(
        "degradation", help="plain vs residual nets of each depth, same recipe and seeds (paper Fig. 6)"
    )
    deg.add_argument("--depths", type=int, nargs="+", default=list(degradation.DEFAULT_DEPTHS))
    _training(deg, f"epochs per run (default {degradation.DEFAULT_EPOCHS})")
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
    _training(resp, f"epochs when training the models (default {degradation.DEFAULT_EPOCHS})")
    _common(resp, "runs/responses")
    resp.set_defaults(func=run_responses)

    abl = subparsers.add_parser(
        "ablation", help="the five activation placements of Identity Mappings Table 2"
    )
    abl.add_argument("--depth", type=int, default=ablation.DEFAULT_DEPTH)
    _training(abl, f"epochs per run (default {degradation.DEFAULT_EPOCHS})")
    _common(abl, "runs/ablation")
    abl.set_defaults(func=run_ablation)


def _check_seeds(args: argparse.Namespace) -> None:
    if getattr(args, "seeds", 1) < 1:
        raise ReslabError(f"--seeds must be at least 1, got {args.seeds}")
    if getattr(args, "epochs", None) is not None and args.epochs < 1:
        raise ReslabError(f"--epochs must be at least 1, got {args.epochs}")


def _finish(out: Path, json_name: str, png_name: str, results: dict, fig_fn, table_fn) -> None:  # type: ignore[no-untyped-def]
    con = console()
    table_fn(results, con)
    png = save_figure(fig_fn(results), out / png_name)
    con.print(f"results: {out / json_name}  plot: {png}", highlight=False)


def run_degradation(args: argparse.Namespace) -> int:
    _check_seeds(args)
    out = Path(args.out)
    if args.replot:
        results = read_results(out / "results.json", "degradation results")
    else:
        results = degradation.run(
            data=args.data,
            depths=args.depths,
            seeds=args.seeds,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            out=out,
            device=args.device,
            precision=args.precision,
            console=console(),
        )
        write_json(out / "results.json", results)
    _finish(out, "results.json", "degradation.png", results, plot_degradation, degradation.print_table)
    return 0


def run_gradients(args: argparse.Namespace) -> int:
    _check_seeds(args)
    out = Path(args.out)
    if args.replot:
        results = read_results(out / "gradients.json", "gradient results")
    else:
        if args.batches < 1 or args.batch_size < 1:
            raise ReslabError("--batches and --batch-size must be at least 1")
        checkpoints = [a for a in args.at if a != "init"]
        if checkpoints and len(checkpoints) != len(args.at):
            raise ReslabError("--at takes either init or checkpoint files, not both")
        if checkpoints:
            if args.no_bn or args.zero_init_residual:
                raise ReslabError("--no-bn and --zero-init-residual change the initialisation; use --at init")
            results = gradients.gradients_of_checkpoints(
                checkpoints, args.data, num_batches=args.batches, batch_size=args.batch_size
            )
            at = "checkpoints"
        else:
            bundle = load_data(args.data or "digits")
            results = gradients.gradients_at_init(
                args.models,
                bundle,
                bn_modes=(False,) if args.no_bn else (True, False),
                zero_init=args.zero_init_residual,
                seeds=args.seeds,
                num_batches=args.batches,
                batch_size=args.batch_size,
            )
            at = "init"
        results["settings"] = {
            "at": at,
            "data": args.data or ("digits" if at == "init" else "from checkpoints"),
            "seeds": args.seeds if at == "init" else 1,
            "batches": args.batches,
            "batch_size": args.batch_size,
        }
        write_json(out / "gradients.json", results)
    _finish(out, "gradients.json", "gradients.png", results, plot_gradients, gradients.print_table)
    return 0


def run_responses(args: argparse.Namespace) -> int:
    _check_seeds(args)
    out = Path(args.out)
    if args.replot:
        results = read_results(out / "responses.json", "response results")
    else:
        if args.ckpt:
            results = responses.from_checkpoints(args.ckpt, data=None if args.data == "digits" else args.data)
        else:
            results = responses.train_and_measure(
                args.models,
                data=args.data,
                seeds=args.seeds,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                out=out,
                device=args.device,
                precision=args.precision,
                console=console(),
            )
        write_json(out / "responses.json", results)
    _finish(out, "responses.json", "responses.png", results, plot_responses, responses.print_table)
    return 0


def run_ablation(args: argparse.Namespace) -> int:
    _check_seeds(args)
    out = Path(args.out)
    if args.replot:
        results = read_results(out / "results.json", "ablation results")
    else:
        results = ablation.run(
            depth=args.depth,
            data=args.data,
            seeds=args.seeds,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            out=out,
            device=args.device,
            precision=args.precision,
            console=console(),
        )
        write_json(out / "results.json", results)
    _finish(out, "results.json", "ablation.png", results, plot_ablation, ablation.print_table)
    return 0
