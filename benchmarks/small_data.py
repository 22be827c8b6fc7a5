"""Small data must train well by default (issue 12): two folders of 200 images, `reslab train --data
folder:DIR` with no other flags, against a logistic regression on the raw pixels of the same split.

    python benchmarks/small_data.py [--out runs/small-data] [--seeds 0] [--jobs 2] [--holdout] [-- EXTRA FLAGS]

Folders (written under --out as PNG class folders, what a user's own photos would be):
- fmnist-2: Fashion-MNIST classes T-shirt/top and Shirt (--fmnist-classes), the first 100 training images
  of each, 28x28 grey;
- digits-2: digits classes 3 and 8 (--digits-classes), 100 images each, upscaled from 8x8 to 32x32.
reslab splits each folder 70/10/20 per class (seeded); the logistic regression (scikit-learn, C chosen on
the validation split) trains on the same training split and is scored on the same test split.

A 40-image test split moves 2.5 points per image, so `--holdout` also scores both on held-out images of
the same two classes that no folder holds (`<name>-holdout/test`: Fashion-MNIST's 2,000 test images of
the two classes; the digits test split's 72), as `holdout_accuracy` and `holdout_logistic_regression`.

Appends one JSON line per run to benchmarks/results/small_data.jsonl: the test accuracy reslab reports
(test.json, with the weights it selected) and, as `test_accuracy_last` (and `holdout_accuracy_last`),
that of the final weights (last.pt). `--jobs 2` runs two trainings at a time (give each `--threads 1`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression

from reslab.data import load_data

RESULTS = Path(__file__).parent / "results" / "small_data.jsonl"


@dataclass(frozen=True)
class SmallFolder:
    name: str
    folder: Path
    holdout: Path | None  # a folder whose test/ holds held-out images of the same classes


def write_images(split, names, classes, size: int, folder: Path, per_class: int | None = None) -> Path:
    for cls in classes:
        chosen = [i for i, y in enumerate(split.labels.tolist()) if y == cls][:per_class]
        target = folder / names[cls].replace("/", "-")
        target.mkdir(parents=True, exist_ok=True)
        for i in chosen:
            picture = Image.fromarray(split.images[i, 0].numpy(), mode="L")
            if size != picture.width:
                picture = picture.resize((size, size), Image.Resampling.BILINEAR)
            picture.save(target / f"{i:05d}.png")
    return folder


def write_small_folder(name: str, source: str, classes, size: int, out: Path, holdout: bool) -> SmallFolder:
    data = load_data(source)
    for stale in (out / name, out / f"{name}-holdout"):  # classes an earlier call chose
        shutil.rmtree(stale, ignore_errors=True)
    folder = write_images(data.train, data.class_names, classes, size, out / name, per_class=100)
    if not holdout:
        return SmallFolder(name, folder, None)
    held = out / f"{name}-holdout"
    write_images(data.test, data.class_names, classes, size, held / "test")
    # The folder reader wants a train/ beside test/; reslab eval reads only test/.
    write_images(data.train, data.class_names, classes, size, held / "train", per_class=20)
    return SmallFolder(name, folder, held)


def _pixels(split) -> tuple[np.ndarray, np.ndarray]:
    return split.images.flatten(1).float().numpy() / 255, split.labels.numpy()


def logistic_regression(spec: str, seed: int, holdout: Path | None) -> dict[str, float]:
    bundle = load_data(spec, seed=seed)
    (x, y), (xv, yv), (xt, yt) = (_pixels(bundle.split(name)) for name in ("train", "val", "test"))
    candidates = (LogisticRegression(C=c, max_iter=5000).fit(x, y) for c in (0.01, 0.1, 1, 10))
    best = max(candidates, key=lambda m: (m.score(xv, yv), -m.C))
    scores = {"logistic_regression": float(best.score(xt, yt))}
    if holdout is not None:
        held = load_data(f"folder:{holdout}")
        assert held.class_names == bundle.class_names, (held.class_names, bundle.class_names)
        scores["holdout_logistic_regression"] = float(best.score(*_pixels(held.test)))
    return scores


def eval_accuracy(checkpoint: Path, data: Path | None = None) -> tuple[float, int]:
    command = [sys.executable, "-m", "reslab", "eval", str(checkpoint), "--json",
               "--out", str(checkpoint.with_suffix(".confusion.png"))]  # fmt: skip
    if data is not None:
        command += ["--data", f"folder:{data}"]
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    return float(result["accuracy"]), int(result["n"])


def train_and_score(small: SmallFolder, seed: int, out: Path, extra: list[str]) -> dict:
    spec = f"folder:{small.folder}"
    run_dir = out / "runs" / f"{small.name}-seed{seed}-{'-'.join(extra) or 'defaults'}"
    command = [sys.executable, "-m", "reslab", "train", "--data", spec, "--seed", str(seed),
               "--out", str(run_dir), *extra]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    test = json.loads((run_dir / "test.json").read_text())
    result = {"data": small.name, "seed": seed, "flags": extra, "test_accuracy": test["accuracy"],
              "selected_by": test.get("selected_by", "val"),
              "test_accuracy_last": eval_accuracy(run_dir / "last.pt")[0],
              "test_n": test["n"], "seconds": round(seconds, 1)}  # fmt: skip
    if small.holdout is not None:
        result["holdout_accuracy"], result["holdout_n"] = eval_accuracy(run_dir / "best.pt", small.holdout)
        result["holdout_accuracy_last"] = eval_accuracy(run_dir / "last.pt", small.holdout)[0]
    return {**result, **logistic_regression(spec, seed, small.holdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/small-data"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--folders", nargs="+", choices=["fmnist-2", "digits-2"], default=["fmnist-2", "digits-2"]
    )
    parser.add_argument("--jobs", type=int, default=1, help="trainings run at a time")
    parser.add_argument("--holdout", action="store_true", help="also score on held-out images (see above)")
    parser.add_argument(
        "--fmnist-classes", type=int, nargs=2, default=[0, 6], help="default: T-shirt vs Shirt"
    )
    parser.add_argument("--digits-classes", type=int, nargs=2, default=[3, 8])
    parser.add_argument("extra", nargs="*", help="more reslab train flags (after --)")
    args = parser.parse_args()
    sources = {
        "fmnist-2": ("fashion-mnist", args.fmnist_classes, 28),
        "digits-2": ("digits", args.digits_classes, 32),
    }
    folders = [write_small_folder(name, *sources[name], args.out, args.holdout) for name in args.folders]
    runs = [(small, seed) for small in folders for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(train_and_score, small, seed, args.out, args.extra) for small, seed in runs]
        for future in futures:
            result = future.result()
            print(json.dumps(result), flush=True)
            with open(RESULTS, "a") as handle:
                handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    sys.exit(main())
