"""Train resnet20 on Fashion-MNIST with the default recipe; report test accuracy and wall time.

Run by hand (long: about 10-30 minutes on a 2-core CPU), never in the test suite:
    python benchmarks/fashion_mnist_resnet20.py [--epochs 10] [--threads 1] [--data fashion-mnist:DIR]
The data defaults to /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist package).
Prints one JSON line at the end; the run directory holds metrics.jsonl, test.json and curves.png.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

import reslab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    result = reslab.train(
        model=args.model,
        data=args.data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        precision=args.precision,
        seed=args.seed,
        out=args.out,
        quiet=args.quiet,
        threads=args.threads,
    )
    wall = time.perf_counter() - started
    train_seconds = sum(row["seconds"] for row in result.metrics)
    summary = {
        "model": args.model,
        "data": args.data,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "precision": {
            "precision": result.config.precision.precision,
            "channels_last": result.config.precision.channels_last,
        },
        "threads": result.config.device.threads,
        "test_accuracy": round(result.test["accuracy"], 4),
        "test_n": result.test["n"],
        "best_val_error": round(result.best_val_error, 4),
        "best_epoch": result.test["best_epoch"],
        "wall_seconds": round(wall, 1),
        "epoch_seconds_total": round(train_seconds, 1),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "torch": str(torch.__version__),
        "run_dir": str(result.run_dir),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
