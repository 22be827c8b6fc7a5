"""`reslab train`: parse flags, call reslab.train()."""

from __future__ import annotations

import argparse
import os

from ..training.lr_scaling import LR_SCALING_RULES
from ..training.recipes import RECIPES, SCHEDULES
from .output import console


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (default: resnet20 on the bundled digits)",
        description="Train a model; writes config.json, metrics.jsonl, test.json, last.pt, best.pt and "
        "curves.png to the run directory. Unset numbers come from the recipe. --resume continues a run with "
        "its own settings: only --quiet, --threads, --download and --nproc may come with it.",
    )
    p.add_argument("--model", help="model name (see `reslab models`); default resnet20")
    p.add_argument(
        "--data",
        help="data spec: digits, fashion-mnist[:DIR], mnist:DIR, "
        "cifar10:DIR, cifar100:DIR, folder:DIR; default digits",
    )
    p.add_argument("--epochs", type=int, help="epochs (replaces the paper recipe's iteration count)")
    p.add_argument(
        "--batch-size",
        type=int,
        help="the GLOBAL batch: with N processes each takes batch/N (must divide evenly)",
    )
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--weight-decay", type=float)
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="default auto: bf16 + channels_last on CUDA and on CPUs with AMX/AVX512-BF16, else fp32",
    )
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--out", help="run directory (default runs/<model>-<data>-<timestamp>)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR_OR_LAST_PT",
        help="continue an interrupted run from its last.pt, with the settings it started with",
    )
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--recipe", choices=RECIPES, help="default: default")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument(
        "--weights",
        metavar="CKPT_OR_PTH",
        help="start from these weights (reslab checkpoint or torchvision .pth); a new "
        "classifier when the class count differs",
    )
    p.add_argument("--download", action="store_true", help="let the data source download (CIFAR)")
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads (default: 1 for images up to 16x16, where more only add overhead)",
    )
    p.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train with N processes on this machine (DDP; gloo on CPU, nccl on CUDA): the same as "
        "`torchrun --nproc-per-node N -m reslab train ...`; use torchrun itself for several machines",
    )
    p.add_argument(
        "--sync-bn",
        action="store_true",
        help="BatchNorm statistics over the global batch (all processes), so N processes train as one",
    )
    p.add_argument(
        "--lr-scaling",
        choices=LR_SCALING_RULES,
        help="how lr follows a --batch-size that differs from the recipe's: none (keep lr) or linear "
        "(lr x batch / recipe batch); default linear for the imagenet recipe, else none",
    )
    p.add_argument(
        "--label-smoothing",
        type=float,
        metavar="EPS",
        help="cross-entropy label smoothing in [0, 1) (default 0)",
    )
    p.add_argument(
        "--random-erase",
        type=float,
        metavar="P",
        help="probability of erasing one random rectangle of each training image, on the device "
        "(Zhong et al. 2017; torchvision's scale/ratio; default 0)",
    )
    p.set_defaults(func=run_train, _parser=p)


def worker_argv(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The `reslab train` command line of `args`, without --nproc: what each launched process runs."""
    argv = ["-m", "reslab", "train"]
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "nproc"):
            continue
        value = getattr(args, action.dest, None)
        if value is None or value is False or value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def run_train(args: argparse.Namespace) -> int:
    if args.nproc is not None:
        from ..training.launch import launch

        return launch(args.nproc, worker_argv(args, args._parser))

    from ..training.api import train

    try:
        train(
            model=args.model,
            data=args.data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            schedule=args.schedule,
            warmup_steps=args.warmup_steps,
            weight_decay=args.weight_decay,
            precision=args.precision,
            seed=args.seed,
            out=args.out,
            resume=args.resume,
            device=args.device,
            recipe=args.recipe,
            quiet=args.quiet,
            compile=args.compile,
            weights=args.weights,
            download=args.download,
            threads=args.threads,
            sync_bn=args.sync_bn,
            lr_scaling=args.lr_scaling,
            label_smoothing=args.label_smoothing,
            random_erase=args.random_erase,
            console=console(),
        )
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") != "0":
            return 130  # every rank got the signal; rank 0 says so
        raise
    return 0
