"""`reslab train`: parse flags, call reslab.train()."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields

from ..data.crops import CROPS
from ..data.options import DATA_MODES
from ..errors import error_line
from ..run_config import (
    FREEZE_POINTS,
    LR_SCALING_RULES,
    OPTIMIZERS,
    RECIPE_OVERRIDES,
    RECIPES,
    SCHEDULES,
    SELECTIONS,
    TrainRequest,
)
from ..training.selection import MIN_VAL_IMAGES
from .output import console


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (default: resnet20 on the bundled digits)",
        description="Train a model; writes config.json, metrics.jsonl, metrics.csv, TensorBoard events, "
        "test.json, last.pt, best.pt and curves.png to the run directory. Unset numbers come from the recipe. --resume continues a run with "
        "its own settings: only --quiet, --threads, --download, --workers, --strict-data and --nproc may come "
        "with it.",
    )
    # In --help order: what to train and how, where it runs, then several processes and regularisation.
    _add_model_data_and_recipe(p)
    _add_run_options(p)
    _add_processes_and_regularisation(p)
    _add_data_reading(p)
    p.set_defaults(func=run_train)


def _add_model_data_and_recipe(p: argparse.ArgumentParser) -> None:
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


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="settings from a JSON or YAML file, or a run's config.json to repeat that run; flags win",
    )
    p.add_argument("--out", help="run directory (default runs/<model>-<data>-<timestamp>)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR_OR_LAST_PT",
        help="continue an interrupted run from its last.pt, with the settings it started with",
    )
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--recipe", choices=RECIPES, help="default: default")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    # Switches default to None, not False: an unset one must not override a --config file.
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument(
        "--weights",
        metavar="FILE_OR_NAME",
        help="start from these weights: a reslab checkpoint, a .pth or .safetensors state dict, or a "
        "torchvision weights name (IMAGENET1K_V1, DEFAULT); a new classifier when the class count differs",
    )
    p.add_argument(
        "--download", action="store_true", default=None, help="let the data source download (CIFAR)"
    )
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads (default: 1 for images up to 16x16, where more only add overhead)",
    )


def _add_processes_and_regularisation(p: argparse.ArgumentParser) -> None:
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
        default=None,
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
    _add_fine_tuning(p)


def _add_fine_tuning(p: argparse.ArgumentParser) -> None:
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="sgd (default; momentum, nesterov) or adamw")
    p.add_argument(
        "--freeze",
        choices=FREEZE_POINTS,
        help="freeze the stem, the stem and stages up to layerK, or all but the classifier (backbone): "
        "no gradients, no optimiser state, BatchNorm statistics kept; default none",
    )
    p.add_argument(
        "--backbone-lr-scale",
        type=float,
        metavar="F",
        help="lr of everything but the classifier = F x lr (default 1)",
    )
    p.add_argument(
        "--decay-norm-and-bias",
        action=argparse.BooleanOptionalAction,
        help="weight decay on norm-layer parameters and biases too (default: off for the default and "
        "imagenet recipes, on for paper, as the papers did)",
    )
    p.add_argument(
        "--ema",
        type=float,
        metavar="DECAY",
        help="validate, keep best.pt and test with an exponential moving average of the weights "
        "(e.g. 0.999; default 0: off)",
    )
    p.add_argument(
        "--select-by",
        choices=SELECTIONS,
        help="the weights best.pt keeps and the test uses: best on validation, the final ones, or auto "
        f"(default: val when the validation split has at least {MIN_VAL_IMAGES} images, else last)",
    )
    p.add_argument(
        "--precise-bn",
        type=_precise_bn,
        metavar="N|auto|off",
        help="recompute BatchNorm statistics over N training batches before each validation (default "
        "auto: on when an epoch has fewer than 10 steps)",
    )


def _add_data_reading(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image-size",
        type=int,
        metavar="S",
        help="train on S x S images (every data source; default: the data's own size)",
    )
    p.add_argument(
        "--crop",
        choices=CROPS,
        help="training crop: pad (pad-and-crop, default), random-resized (RandomResizedCrop 8-100%%, "
        "the imagenet recipe's) or scale (the ResNet paper's shorter side in [256, 480], crop 224, "
        "scaled to S); box crops evaluate on the centre S of images resized to S / 0.875",
    )
    p.add_argument(
        "--data-mode",
        choices=DATA_MODES,
        help="folder:DIR in memory or streamed by DataLoader workers; default auto: in memory when the "
        "decoded images take at most 1/8 of this machine's memory",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="DataLoader worker processes of a streamed folder (default: the cores left after training)",
    )
    p.add_argument(
        "--strict-data",
        action="store_true",
        default=None,
        help="stop at an image of a streamed folder that cannot be decoded (default: skip and count it)",
    )


def _precise_bn(text: str) -> int | str:
    if text in ("auto", "off"):
        return 0 if text == "off" else "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, off or a number of batches, got {text!r}") from None


# The options that are training settings: TrainRequest's fields and the recipe overrides, by dest.
SETTINGS = tuple(f.name for f in fields(TrainRequest) if f.name != "overrides") + RECIPE_OVERRIDES


def worker_argv(argv: list[str]) -> list[str]:
    """The `reslab train` command line each launched process runs: the same words without --nproc."""
    words: list[str] = []
    skip_value = False
    for word in argv:
        name = word.split("=", 1)[0]
        if skip_value:
            skip_value = False
        elif len(name) > 2 and "--nproc".startswith(name):  # argparse accepts unique prefixes too
            skip_value = "=" not in word
        else:
            words.append(word)
    return ["-m", "reslab", *words]


def run_train(args: argparse.Namespace) -> int:
    if args.nproc is not None:
        from ..training.launch import launch

        return launch(args.nproc, worker_argv(args.argv))

    from ..training.api import train

    # Only what was typed (None: not given), so that a --config file's values stand.
    settings = {name: value for name in SETTINGS if (value := getattr(args, name, None)) is not None}
    try:
        train(
            resume=args.resume,
            config=args.config,
            quiet=args.quiet,
            console=console(),
            report_error=lambda exc: print(error_line("train", exc, args.flags), file=sys.stderr, flush=True),
            **settings,
        )
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") != "0":
            return 130  # every rank got the signal; rank 0 says so
        raise
    return 0
