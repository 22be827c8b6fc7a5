"""`reslab predict`: top-k classes of image files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ReslabError
from .output import console

_PAIR = ("model", "weights")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify image files with a checkpoint, or with pretrained ImageNet weights",
        usage="%(prog)s [options] (CHECKPOINT | --model NAME --weights NAME) IMAGE [IMAGE ...]",
        description="Top-k classes of image files. Give a CHECKPOINT (a checkpoint file or a run "
        "directory: its best.pt), or --model and --weights for torchvision's pretrained ImageNet weights "
        "(e.g. --model resnet50 --weights DEFAULT), fetched into torch.hub's cache.",
    )
    # One list: CHECKPOINT is optional before the images, so argparse cannot tell them apart itself.
    p.add_argument("paths", nargs="+", metavar="CHECKPOINT_OR_IMAGE", help="[CHECKPOINT] IMAGE [IMAGE ...]")
    p.add_argument("--model", help="a model name with pretrained weights (resnet18/34/50/101/152)")
    p.add_argument("--weights", metavar="NAME", help="with --model: IMAGENET1K_V1, IMAGENET1K_V2 or DEFAULT")
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
    from ..evaluate import predict, predict_pretrained

    options = {"topk": args.topk, "device": args.device, "fast": args.fast, "precision": args.precision}
    if args.model is not None or args.weights is not None:
        if args.model is None or args.weights is None:
            raise ReslabError("predicting without a checkpoint needs both model and weights", params=_PAIR)
        first = Path(args.paths[0])
        if first.is_dir() or first.suffix.lower() in (".pt", ".pth", ".ckpt"):
            raise ReslabError(
                f"give a checkpoint or model and weights, not both ({str(first)!r} is a checkpoint)",
                params=_PAIR,
            )
        results = predict_pretrained(args.model, args.weights, args.paths, **options)
    else:
        if len(args.paths) < 2:
            raise ReslabError(
                "give a checkpoint and at least one image (or model and weights instead of a checkpoint)",
                params=_PAIR,
            )
        results = predict(args.paths[0], args.paths[1:], **options)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    out = console()
    for item in results:
        ranked = "  ".join(f"{t['class']} {100 * t['probability']:.3g}%" for t in item["top"])
        out.print(f"{item['image']}: {ranked}", highlight=False)
    return 0
