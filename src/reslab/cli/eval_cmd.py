"""`reslab eval`: a checkpoint's loss, accuracy, per-class accuracy and confusion matrix on a split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from .int8_options import add_calibration_argument
from .output import console


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate a checkpoint: accuracy, per-class, confusion matrix")
    p.add_argument("checkpoint", help="a checkpoint file or a run directory (its best.pt)")
    p.add_argument("--data", help="data spec (default: the one the checkpoint was trained on)")
    p.add_argument("--split", default="test", choices=("test", "val", "train"))
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--out", help="confusion-matrix PNG (default: beside the checkpoint)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16", "int8"),
        help="default: the precision the checkpoint was trained in; int8: post-training quantization (CPU)",
    )
    add_calibration_argument(p)
    p.add_argument("--download", action="store_true")
    p.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="optimised inference: BN folded, bf16 where fast, compiled for big splits (default on)",
    )
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate
    from ..plots import plot_confusion

    result = evaluate(
        args.checkpoint,
        data=args.data,
        split=args.split,
        device=args.device,
        precision=args.precision,
        download=args.download,
        fast=args.fast,
        calibration=args.calibration,
    )
    ckpt = Path(result["checkpoint"])
    png = Path(args.out) if args.out else ckpt.with_name(f"confusion-{ckpt.stem}-{args.split}.png")
    plot_confusion(
        png,
        result["confusion"],
        result["class_names"],
        title=f"{result['model']} on {result['data']} ({args.split})",
    )
    result["confusion_png"] = str(png)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    out = console()
    out.print(
        f"{result['model']} on {result['data']} ({args.split} split, n={result['n']}): loss {result['loss']:.4f}  "
        f"accuracy {100 * result['accuracy']:.2f}%  error {100 * result['error']:.2f}%",
        highlight=False,
    )
    table = Table(title="per-class accuracy")
    table.add_column("class")
    table.add_column("n", justify="right")
    table.add_column("accuracy", justify="right")
    for name, row, acc in zip(
        result["class_names"], result["confusion"], result["per_class_accuracy"], strict=True
    ):
        table.add_row(name, str(sum(row)), "-" if acc is None else f"{100 * acc:.2f}%")
    out.print(table)
    out.print(f"confusion matrix: {png}", highlight=False)
    return 0
