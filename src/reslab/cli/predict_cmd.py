"""`reslab predict`: top-k classes of image files."""

from __future__ import annotations

import argparse
import json

from .output import console


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="classify image files with a checkpoint")
    p.add_argument("checkpoint", help="a checkpoint file or a run directory (its best.pt)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="default: the precision the checkpoint was trained in",
    )
    p.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="optimised inference: BN folded, bf16 where fast (default on)",
    )
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from ..evaluate import predict

    results = predict(
        args.checkpoint,
        args.images,
        topk=args.topk,
        device=args.device,
        fast=args.fast,
        precision=args.precision,
    )
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    out = console()
    for item in results:
        ranked = "  ".join(f"{t['class']} {100 * t['probability']:.3g}%" for t in item["top"])
        out.print(f"{item['image']}: {ranked}", highlight=False)
    return 0
