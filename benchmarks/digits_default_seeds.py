"""`reslab train` with no arguments, over several seeds: test accuracy and wall time of each run.

Run by hand: python benchmarks/digits_default_seeds.py [--seeds 0-9]
Each seed also changes the digits train/val/test split (the split is drawn from the seed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import reslab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9", help="a range like 0-9 or a list like 0,3,7")
    args = parser.parse_args()
    if "-" in args.seeds:
        first, last = (int(v) for v in args.seeds.split("-"))
        seeds = list(range(first, last + 1))
    else:
        seeds = [int(v) for v in args.seeds.split(",")]
    accuracies, walls = [], []
    with tempfile.TemporaryDirectory() as root:
        for seed in seeds:
            started = time.perf_counter()
            result = reslab.train(seed=seed, quiet=True, out=os.path.join(root, f"seed{seed}"))
            walls.append(time.perf_counter() - started)
            accuracies.append(100 * result.test["accuracy"])
            print(
                f"seed {seed}: test accuracy {accuracies[-1]:.2f}%  wall {walls[-1]:.1f}s  "
                f"load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    print(
        json.dumps(
            {
                "seeds": seeds,
                "test_accuracy_min": round(min(accuracies), 2),
                "test_accuracy_mean": round(statistics.mean(accuracies), 2),
                "test_accuracy_max": round(max(accuracies), 2),
                "wall_seconds_max": round(max(walls), 1),
                "cpu_count": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
