"""`reslab explain`: Grad-CAM heat maps of images over a checkpoint's (or pretrained weights') layer."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ReslabError
from .output import console


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "explain",
        help="Grad-CAM: where in each image the network finds its evidence (PNG overlays)",
        description="Grad-CAM heat maps (Selvaraju et al. 2017) for images (files, folders, @lists), "
        "written as PNG overlays <out>/<name>.gradcam.png. CHECKPOINT_OR_WEIGHTS_NAME as for "
        "`reslab predict`. The map explains each image's top class, or --target. --sanity-check also "
        "maps a copy with random weights and prints the rank correlation of the two (Adebayo et al. 2018: "
        "a faithful map changes when the weights do, so the correlation should be low).",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_WEIGHTS_NAME")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument(
        "--layer", default="layer4", help="module path (default layer4; the last stage of a CIFAR net)"
    )
    p.add_argument("--target", help="explain this class (name or index) instead of each image's top class")
    p.add_argument("--out", default="explain", help="folder for the overlays (default: explain)")
    p.add_argument("--sanity-check", action="store_true", help="compare with the maps of random weights")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run_explain)


def _target_index(target: str | None, class_names: list[str]) -> int | None:
    if target is None:
        return None
    if target in class_names:
        return class_names.index(target)
    if target.isdigit() and int(target) < len(class_names):
        return int(target)
    raise ReslabError(
        f"target {target!r} is neither a class name nor an index below {len(class_names)}", params=("target",)
    )


def _out_path(folder: Path, image: Path, taken: set[Path]) -> Path:
    path, n = folder / f"{image.stem}.gradcam.png", 1
    while path in taken:
        n += 1
        path = folder / f"{image.stem}-{n}.gradcam.png"
    taken.add(path)
    return path


def run_explain(args: argparse.Namespace) -> int:
    import statistics

    from ..atomic import atomic_write
    from ..classifier import load_classifier
    from ..data.inputs import find_images
    from ..explain import explain_pixels, find_layer, gradcam, randomized_copy, rank_correlation
    from ..heatmap import overlay, png_bytes

    classifier = load_classifier(args.checkpoint, device=args.device, precision="fp32", fast=False)
    layer = args.layer
    find_layer(classifier.model, layer)  # a wrong name fails before any image is read
    target = _target_index(args.target, classifier.class_names)
    paths = find_images(args.inputs)
    out, folder, taken, rhos = console(), Path(args.out), set(), []
    randomized = randomized_copy(classifier.model) if args.sanity_check else None
    for path in paths:
        pixels = classifier.transform.read(path)[None]
        probs, cam = explain_pixels(classifier, pixels, layer, target)
        explained = target if target is not None else int(probs[0].argmax())
        written = _out_path(folder, path, taken)
        atomic_write(written, lambda handle, p=pixels, c=cam: handle.write(png_bytes(overlay(p[0], c[0]))))
        name, p = classifier.class_names[explained], float(probs[0, explained])
        out.print(f"{path}: {name} ({100 * p:.3g}%) -> {written}", highlight=False)
        if randomized is not None:
            random_cam = gradcam(randomized, classifier.normalised(pixels), explained, layer)
            rhos += rank_correlation(cam, random_cam)
    if rhos:
        out.print(
            f"sanity check: rank correlation with random weights, mean {statistics.fmean(rhos):.3f} "
            f"over {len(rhos)} image(s) (near 0: the maps depend on what the network learned)",
            highlight=False,
        )
    return 0
