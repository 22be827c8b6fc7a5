"""`reslab predict`: top-k classes of image files, folders and @lists of any size, streamed."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from ..errors import ReslabError
from .int8_options import add_calibration_argument
from .output import console

_PAIR = ("model", "weights")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify images (files, folders, @lists) with a checkpoint or pretrained weights",
        usage="%(prog)s [options] (CHECKPOINT_OR_WEIGHTS_NAME | --model NAME --weights NAME) INPUT [INPUT ...]",
        description="Top-k classes of images. Give a CHECKPOINT (a checkpoint file or a run directory: "
        "its best.pt) or a WEIGHTS_NAME of torchvision's pretrained ImageNet weights (resnet50.IMAGENET1K_V2, "
        "ResNet50_Weights.DEFAULT; fetched into torch.hub's cache), or --model and --weights. Each INPUT "
        "is an image file, a folder (searched recursively for image files) or @FILE, a text file listing "
        "one image path per line. Images are decoded by worker processes and classified a batch at a "
        "time, so memory stays flat whatever their number. An image that cannot be read is reported "
        "(an error row) and the run goes on, unless --strict.",
    )
    # One list: CHECKPOINT is optional before the inputs, so argparse cannot tell them apart itself.
    p.add_argument("paths", nargs="+", metavar="CHECKPOINT_OR_INPUT", help="[CHECKPOINT] INPUT [INPUT ...]")
    p.add_argument("--model", help="a model name with pretrained weights (resnet18/34/50/101/152)")
    p.add_argument("--weights", metavar="NAME", help="with --model: IMAGENET1K_V1, IMAGENET1K_V2 or DEFAULT")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--out", help="stream one row per image to this .csv or .jsonl file")
    p.add_argument("--json", action="store_true", help="print all rows as one JSON list")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, help="decoding processes (default: one per free core, up to 4)")
    p.add_argument("--strict", action="store_true", help="stop at the first image that cannot be read")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16", "int8"),
        help="default: the precision the checkpoint was trained in; int8: post-training quantization (CPU)",
    )
    add_calibration_argument(p)
    p.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="optimised inference: BN folded, bf16 where fast, compiled for big inputs (default on)",
    )
    p.set_defaults(func=run_predict)


def _classifier_and_inputs(args: argparse.Namespace) -> tuple[Any, list[str]]:
    from ..classifier import load_classifier

    options = {"device": args.device, "fast": args.fast, "precision": args.precision}
    if args.model is not None or args.weights is not None:
        if args.model is None or args.weights is None:
            raise ReslabError("predicting without a checkpoint needs both model and weights", params=_PAIR)
        first = Path(args.paths[0])
        if first.suffix.lower() in (".pt", ".pth", ".ckpt") or (first / "best.pt").is_file():
            raise ReslabError(
                f"give a checkpoint or model and weights, not both ({str(first)!r} is a checkpoint)",
                params=_PAIR,
            )
        return load_classifier(args.model, weights=args.weights, **options), args.paths
    if len(args.paths) < 2:
        raise ReslabError(
            "give a checkpoint and at least one image (or model and weights instead of a checkpoint)",
            params=_PAIR,
        )
    return load_classifier(args.paths[0], **options), args.paths[1:]


def run_predict(args: argparse.Namespace) -> int:
    from ..batch_predict import PredictSettings, iter_predictions
    from ..data.inputs import find_images
    from ..prediction_files import PredictionFile
    from ..progress_bar import counting_progress

    settings = PredictSettings(args.topk, args.batch_size, args.workers, args.strict)
    settings.check()
    sink = PredictionFile(args.out, args.topk) if args.out else None  # a bad --out fails before any work
    classifier, inputs = _classifier_and_inputs(args)
    classifier.calibration = args.calibration
    paths = find_images(inputs)
    out, rows, errors = console(), [], []
    with contextlib.ExitStack() as stack:
        advance = stack.enter_context(counting_progress(console(stderr=True), len(paths), "images"))
        if sink is not None:
            stack.enter_context(sink)
        for row in iter_predictions(classifier, paths, settings):
            if row["error"] is not None:
                errors.append(row["error"])
            if sink is not None:
                sink.write(row)
            elif args.json:
                rows.append(row)
            else:
                out.print(_line(row), highlight=False, soft_wrap=True)
            advance(1)
    if args.json:
        print(json.dumps(rows, indent=1))
    return _summary(len(paths), errors, args.out)


def _line(row: dict[str, Any]) -> str:
    if row["error"] is not None:
        return f"{row['path']}: error: {row['error']}"
    ranked = "  ".join(f"{t['class']} {100 * t['probability']:.3g}%" for t in row["top"])
    return f"{row['path']}: {ranked}"


def _summary(total: int, errors: list[str], out: str | None) -> int:
    """Exit 0 when any image was classified, the failures counted on stderr; when none was, one line."""
    if len(errors) == total:
        raise ReslabError(
            errors[0] if total == 1 else f"none of the {total} images could be read; the first: {errors[0]}"
        )
    err = console(stderr=True)
    if out:
        err.print(f"{total - len(errors)} image(s) classified -> {out}", highlight=False)
    if errors:
        err.print(
            f"{len(errors)} of {total} image(s) could not be read (rows with an error)", highlight=False
        )
    return 0
