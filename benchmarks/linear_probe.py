"""Linear probe: pooled features of a checkpoint (`reslab features`) + scikit-learn's logistic regression.

Run by hand, never in the test suite:
    python benchmarks/linear_probe.py CHECKPOINT TRAIN_DIR TEST_DIR [--out DIR]
Each DIR holds class sub-folders of images (as benchmarks/transfer.py writes them). The features are
written with the CLI (`reslab features CKPT DIR --out feats.npz`), as a user would, and read back with
numpy; the class of each image is its folder's name. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from reslab.cli import main as reslab


def features(checkpoint: str, folder: str, out: Path) -> tuple[np.ndarray, np.ndarray]:
    if reslab(["features", checkpoint, folder, "--out", str(out)]) != 0:
        raise SystemExit(f"reslab features failed for {folder}")
    saved = np.load(out)
    labels = np.array([Path(p).parent.name for p in saved["paths"]])
    return saved["features"], labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("train_dir")
    parser.add_argument("test_dir")
    parser.add_argument("--out", default="runs/linear-probe")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    x_train, y_train = features(args.checkpoint, args.train_dir, out / "train.npz")
    x_test, y_test = features(args.checkpoint, args.test_dir, out / "test.npz")
    extracted = time.perf_counter() - started
    probe = LogisticRegression(max_iter=2000).fit(x_train, y_train)
    row = {
        "checkpoint": args.checkpoint,
        "train_images": len(y_train),
        "test_images": len(y_test),
        "num_features": int(x_train.shape[1]),
        "test_accuracy": round(float(probe.score(x_test, y_test)), 4),
        "feature_seconds": round(extracted, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
