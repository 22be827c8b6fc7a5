"""`reslab predict` over a real-size image folder: images per second, and peak memory against the number of
images (it must not grow with it: images are streamed a batch at a time).

    python benchmarks/write_fashion_folder.py --out /tmp/fmnist112 --size 112 --train-per-class 1000 --test-per-class 1000
    python benchmarks/write_fashion_folder.py --out /tmp/fmnist224 --size 224 --train-per-class 0 --test-per-class 100
    python benchmarks/predict_throughput.py --folder /tmp/fmnist112 --model resnet18 --size 112 --images 1000 10000
    python benchmarks/predict_throughput.py --folder /tmp/fmnist224 --model resnet50 --size 224 --images 1000

Each measurement runs in a fresh process (so its peak RSS is its own), classifying the first N images of
the folder (@list) exactly as `reslab predict CKPT @list --out predictions.csv` does, model loading
excluded from the rate. The checkpoint is the model with untrained weights and the folder's data record:
speed does not depend on the weights. Appends one JSON line per run to benchmarks/results/predict.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from speed_checkpoint import speed_checkpoint  # benchmarks/, the script's folder

RESULTS = Path(__file__).parent / "results" / "predict.jsonl"


def child(args: argparse.Namespace) -> None:
    """One measurement: classify the listed images, print a JSON line."""
    from reslab.batch_predict import PredictSettings, iter_predictions
    from reslab.classifier import load_classifier
    from reslab.data.inputs import find_images
    from reslab.host_memory import tune_host_allocator
    from reslab.prediction_files import PredictionFile

    tune_host_allocator()  # as the reslab command does
    classifier = load_classifier(args.checkpoint, device="cpu", precision=args.precision)
    paths = find_images([f"@{args.list}"])
    settings = PredictSettings(5, args.batch_size, args.workers)
    start = time.perf_counter()
    with PredictionFile(args.out, 5) as sink:
        for row in iter_predictions(classifier, paths, settings):
            sink.write(row)
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({
        "images": len(paths), "seconds": round(seconds, 2), "images_per_second": round(len(paths) / seconds, 1),
        "peak_rss_mb": round(own, 1), "peak_worker_rss_mb": round(workers, 1), "precision": classifier.precision.name,
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--images", type=int, nargs="+", default=[1000])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--precision")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--list", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from reslab.data.inputs import find_images

    all_paths = find_images([args.folder])
    classes = sorted({p.parent.name for p in all_paths})
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = speed_checkpoint(args.model, args.size, classes, Path(tmp) / "speed.pt")
        for n in args.images:
            listed = Path(tmp) / f"first{n}.txt"
            listed.write_text("\n".join(str(p) for p in all_paths[:n]) + "\n")
            command = [sys.executable, __file__, "--child", "--checkpoint", str(checkpoint), "--list", str(listed),
                       "--out", str(Path(tmp) / "predictions.csv"), "--batch-size", str(args.batch_size)]  # fmt: skip
            command += ["--workers", str(args.workers)] if args.workers is not None else []
            command += ["--precision", args.precision] if args.precision else []
            line = (
                subprocess.run(command, check=True, capture_output=True, text=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            result = {"model": args.model, "size": args.size, "batch_size": args.batch_size,
                      "workers": args.workers, "cpus": os.cpu_count(), **json.loads(line)}  # fmt: skip
            print(json.dumps(result))
            with open(RESULTS, "a") as handle:
                handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
