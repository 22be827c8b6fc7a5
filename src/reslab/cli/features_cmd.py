"""`reslab features`: pooled pre-logits features of image files with a checkpoint, saved as .npz."""

from __future__ import annotations

import argparse

from .output import console


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "features",
        help="embed image files with a checkpoint (pooled features before the classifier) into an .npz",
        description=(
            "Run a trained checkpoint up to its global pooling on image files (and folders, searched "
            "recursively for image files) and save the features: an .npz with `features` (N, "
            "num_features) float32 and `paths` (N strings). Images are read and normalised as for "
            "`reslab predict`. CHECKPOINT_OR_MODEL: a reslab checkpoint file or run folder (its best.pt), "
            "or with --weights a model name (resnet50 --weights DEFAULT: torchvision's pretrained weights, "
            "images read by their eval transform)."
        ),
    )
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT_OR_MODEL",
        help="a reslab checkpoint file or a run directory (its best.pt); with --weights, a model name",
    )
    p.add_argument("--weights", help="a torchvision weights name (IMAGENET1K_V2, DEFAULT) for the model")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("--out", required=True, help="the .npz file to write")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run_features)


def run_features(args: argparse.Namespace) -> int:
    from ..features import extract_features, save_features

    result = extract_features(
        args.checkpoint, args.inputs, batch_size=args.batch_size, device=args.device, weights=args.weights
    )
    path = save_features(args.out, result)
    n, dim = result["features"].shape
    console().print(f"{n} image(s) -> {dim} features each ({result['model']}): {path}", highlight=False)
    return 0
