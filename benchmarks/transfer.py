"""Transfer learning on Fashion-MNIST: pretrain on classes 0-7, fine-tune on classes 8-9 with 50 images per
class, and compare a frozen backbone + linear head, full fine-tuning (with and without an EMA of the
weights) and training from scratch. Accuracy on the whole test set of classes 8-9 (2,000 images) and wall
time per run.

Run by hand (a few minutes on a 2-core CPU), never in the test suite:
    python benchmarks/transfer.py [--pretrain-per-class 1000] [--pretrain-epochs 8] [--out runs/transfer]
Needs Debian's dataset-fashion-mnist. Writes the two image folders under --out (PNG files: the `folder:`
data source, as a user's own photos would be read) and appends one JSON line per run to
benchmarks/results/transfer.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image

import reslab
from reslab.data import load_data

RESULTS = Path(__file__).parent / "results" / "transfer.jsonl"
PRETRAIN_CLASSES = range(8)
TARGET_CLASSES = (8, 9)


def write_folder(
    root: Path, split: str, images: torch.Tensor, labels: torch.Tensor, classes, per_class: int | None
) -> None:
    """PNG files root/split/<class>/<n>.png, the first `per_class` images of each class (all if None)."""
    for cls in classes:
        picked = (labels == cls).nonzero().flatten()
        picked = picked if per_class is None else picked[:per_class]
        folder = root / split / f"class{cls}"
        folder.mkdir(parents=True, exist_ok=True)
        for n, index in enumerate(picked.tolist()):
            Image.fromarray(images[index, 0].numpy(), mode="L").save(folder / f"{n}.png")


def make_folders(out: Path, pretrain_per_class: int) -> tuple[Path, Path]:
    bundle = load_data("fashion-mnist", seed=0)
    source, target = out / "data-0to7", out / "data-8and9"
    if not source.exists():
        write_folder(
            source, "train", bundle.train.images, bundle.train.labels, PRETRAIN_CLASSES, pretrain_per_class
        )
        write_folder(source, "val", bundle.val.images, bundle.val.labels, PRETRAIN_CLASSES, 200)
        write_folder(source, "test", bundle.test.images, bundle.test.labels, PRETRAIN_CLASSES, 200)
    if not target.exists():
        write_folder(target, "train", bundle.train.images, bundle.train.labels, TARGET_CLASSES, 50)
        # Validation from held-out training images (never the test set), 50 per class as well.
        held = bundle.train.images[-5000:], bundle.train.labels[-5000:]
        write_folder(target, "val", *held, TARGET_CLASSES, 50)
        write_folder(target, "test", bundle.test.images, bundle.test.labels, TARGET_CLASSES, None)
    return source, target


def timed_run(name: str, **settings) -> dict:
    started = time.perf_counter()
    result = reslab.train(quiet=True, precision="fp32", **settings)
    row = {
        "run": name,
        "test_accuracy": round(result.test["accuracy"], 4),
        "test_n": result.test["n"],
        "best_epoch": result.test["best_epoch"],
        "seconds": round(time.perf_counter() - started, 1),
        "settings": {k: str(v) for k, v in settings.items()},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(row), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as handle:
        handle.write(json.dumps(row) + "\n")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/transfer")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--pretrain-per-class", type=int, default=1000)
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--finetune-epochs", type=int, default=30)
    parser.add_argument("--ema", type=float, default=0.9)
    args = parser.parse_args()
    out = Path(args.out)
    source, target = make_folders(out, args.pretrain_per_class)
    pretrained = out / "pretrain"
    if not (pretrained / "best.pt").is_file():
        timed_run(
            "pretrain on classes 0-7",
            model=args.model, data=f"folder:{source}", epochs=args.pretrain_epochs, batch_size=128, out=pretrained,
        )  # fmt: skip
    small = dict(model=args.model, data=f"folder:{target}", epochs=args.finetune_epochs, batch_size=20)
    weights = pretrained / "best.pt"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    timed_run(
        "frozen backbone + linear head",
        **small,
        weights=weights,
        freeze="backbone",
        lr=0.05,
        out=out / f"frozen-{stamp}",
    )
    timed_run("full fine-tuning", **small, weights=weights, lr=0.01, out=out / f"full-{stamp}")
    timed_run(
        f"full fine-tuning + EMA {args.ema}",
        **small,
        weights=weights,
        lr=0.01,
        ema=args.ema,
        out=out / f"full-ema-{stamp}",
    )
    timed_run("from scratch", **small, lr=0.05, out=out / f"scratch-{stamp}")


if __name__ == "__main__":
    main()
