"""Time to accuracy on Fashion-MNIST: wall-clock seconds of one `reslab.train` run, test accuracy at the end.

The clock covers everything a user waits for: loading the IDX files, building the model, every epoch
(training + validation), checkpoints, and the final test evaluation. Run by hand (minutes), never in tests:

    python benchmarks/time_to_accuracy.py --preset fast93
    python benchmarks/time_to_accuracy.py --preset wide95 --target 0.95 --device cuda

Each run appends one JSON line to benchmarks/results/time_to_accuracy.jsonl (and prints it), with the
machine's load average at start and end, since the 2 cores may be shared with other work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import torch

import reslab

# Recipes found by hand on this 2-core AMX machine (README "Speed" says which run gave which number).
PRESETS: dict[str, dict[str, object]] = {
    # A small CIFAR-style ResNet, one-cycle (8 epochs at lr 0.2 gave 92.88%, so 10 at lr 0.1).
    "fast93": {"model": "resnet20", "epochs": 10, "batch_size": 128, "lr": 0.1, "weight_decay": 5e-4},
    # The same with the engine's torch.compile (compile time counts in the wall time).
    "fast93c": {
        "model": "resnet20",
        "epochs": 10,
        "batch_size": 128,
        "lr": 0.1,
        "weight_decay": 5e-4,
        "compile": True,
    },
    # resnet14 (6 units instead of 9: about 2/3 of resnet20's MACs) with resnet20's recipe.
    "fast93s": {"model": "resnet14", "epochs": 10, "batch_size": 128, "lr": 0.1, "weight_decay": 5e-4},
    # Candidates for >= 95%: wider nets (widths x4 / x2 of resnet20's), random erasing (p 0.5, as Zhong
    # et al. 2017 used on Fashion-MNIST) and label smoothing 0.1; wide95n is wide95 without the two.
    "wide95": {
        "model": "resnet20",
        "epochs": 30,
        "batch_size": 128,
        "lr": 0.1,
        "weight_decay": 5e-4,
        "random_erase": 0.5,
        "label_smoothing": 0.1,
        "model_options": {"widths": (64, 128, 256), "stem_width": 64},
    },
    "wide95m": {
        "model": "resnet20",
        "epochs": 40,
        "batch_size": 128,
        "lr": 0.1,
        "weight_decay": 5e-4,
        "random_erase": 0.5,
        "label_smoothing": 0.1,
        "model_options": {"widths": (32, 64, 128), "stem_width": 32},
    },
    "wide95n": {
        "model": "resnet20",
        "epochs": 30,
        "batch_size": 128,
        "lr": 0.1,
        "weight_decay": 5e-4,
        "model_options": {"widths": (64, 128, 256), "stem_width": 64},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="fast93")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument("--target", type=float, default=0.93, help="test accuracy to report reaching")
    parser.add_argument("--out", default="benchmarks/results/time_to_accuracy.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="CPU threads (default: the engine's choice)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--runs", default="runs", help="folder for the run directory")
    args = parser.parse_args()

    settings = dict(PRESETS[args.preset])
    if args.epochs:
        settings["epochs"] = args.epochs
    load_start = os.getloadavg()
    start = time.perf_counter()
    result = reslab.train(
        data=args.data,
        seed=args.seed,
        out=Path(args.runs) / f"tta-{args.preset}-s{args.seed}-{int(time.time())}",
        threads=args.threads,
        device=args.device,
        **settings,
    )
    wall = time.perf_counter() - start
    accuracy = float(result.test["accuracy"])
    row = {
        "preset": args.preset,
        "data": args.data,
        "settings": settings,
        "seed": args.seed,
        "test_accuracy": accuracy,
        "wall_seconds": round(wall, 1),
        "target": args.target,
        "reached_target": accuracy >= args.target,
        "best_val_error": result.best_val_error,
        "epoch_seconds": [round(float(m["seconds"]), 1) for m in result.metrics],
        "images_per_second": [round(float(m["images_per_second"]), 1) for m in result.metrics],
        "run_dir": str(result.run_dir),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "threads": args.threads or "default",
        # The whole process: the uint8 data set (once), model, optimiser, activations.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": result.config.device.device,
        "cuda_device": result.config.environment.cuda_device,
        "torch": torch.__version__,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as handle:
        handle.write(json.dumps(row, default=str) + "\n")
    print(json.dumps(row, indent=1, default=str))


if __name__ == "__main__":
    main()
