"""Small data must train well by default (issue 12): two folders of 200 images, `reslab train --data
folder:DIR` with no other flags, against a logistic regression on the raw pixels of the same split.

    python benchmarks/small_data.py [--out runs/small-data] [--seeds 0] [-- EXTRA reslab train FLAGS]

Folders (written under --out as PNG class folders, what a user's own photos would be):
- fmnist-2: Fashion-MNIST classes T-shirt/top and Trouser... the two chosen by --fmnist-classes, 100
  training images each, 28x28 grey;
- digits-2: digits classes --digits-classes, 100 images each, upscaled from 8x8 to 32x32 (bilinear).
reslab splits each folder 70/10/20 per class (seeded); the logistic regression (scikit-learn, C chosen on
the validation split) trains on the same training split and is scored on the same test split.
Appends one JSON line per run to benchmarks/results/small_data.jsonl.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image
from sklearn.linear_model import LogisticRegression

from reslab.data import load_data

RESULTS = Path(__file__).parent / "results" / "small_data.jsonl"


def write_folder(images, labels, names, classes, per_class: int, size: int, folder: Path) -> Path:
    for cls in classes:
        chosen = [i for i, y in enumerate(labels.tolist()) if y == cls][:per_class]
        target = folder / names[cls].replace("/", "-")
        target.mkdir(parents=True, exist_ok=True)
        for i in chosen:
            picture = Image.fromarray(images[i, 0].numpy(), mode="L")
            if size != picture.width:
                picture = picture.resize((size, size), Image.Resampling.BILINEAR)
            picture.save(target / f"{i:05d}.png")
    return folder


def logistic_regression(spec: str, seed: int) -> float:
    bundle = load_data(spec, seed=seed)
    flat = {
        name: bundle.split(name).images.flatten(1).float().numpy() / 255 for name in ("train", "val", "test")
    }
    labels = {name: bundle.split(name).labels.numpy() for name in ("train", "val", "test")}
    best = max(
        (
            LogisticRegression(C=c, max_iter=5000).fit(flat["train"], labels["train"])
            for c in (0.01, 0.1, 1, 10)
        ),
        key=lambda m: (m.score(flat["val"], labels["val"]), -m.C),
    )
    return float(best.score(flat["test"], labels["test"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/small-data"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--fmnist-classes", type=int, nargs=2, default=[0, 6], help="default: T-shirt vs Shirt"
    )
    parser.add_argument("--digits-classes", type=int, nargs=2, default=[3, 8])
    parser.add_argument("extra", nargs="*", help="more reslab train flags (after --)")
    args = parser.parse_args()
    fashion, digits = load_data("fashion-mnist"), load_data("digits")
    folders = {
        "fmnist-2": write_folder(fashion.train.images, fashion.train.labels, fashion.class_names,
                                 args.fmnist_classes, 100, 28, args.out / "fmnist-2"),
        "digits-2": write_folder(digits.train.images, digits.train.labels, digits.class_names,
                                 args.digits_classes, 100, 32, args.out / "digits-2"),
    }  # fmt: skip
    for name, folder in folders.items():
        for seed in args.seeds:
            spec = f"folder:{folder}"
            run_dir = args.out / "runs" / f"{name}-seed{seed}-{'-'.join(args.extra) or 'defaults'}"
            command = [
                sys.executable,
                "-m",
                "reslab",
                "train",
                "--data",
                spec,
                "--seed",
                str(seed),
                "--out",
                str(run_dir),
                *args.extra,
            ]
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            test = json.loads((run_dir / "test.json").read_text())
            result = {"data": name, "seed": seed, "flags": args.extra, "test_accuracy": test["accuracy"],
                      "test_n": test["n"], "logistic_regression": logistic_regression(spec, seed),
                      "seconds": round(seconds, 1)}  # fmt: skip
            print(json.dumps(result), flush=True)
            with open(RESULTS, "a") as handle:
                handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    sys.exit(main())
