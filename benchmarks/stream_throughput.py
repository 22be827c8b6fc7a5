"""Streaming against in-memory training on a real-size image folder, and where a streamed step's time goes.

    python benchmarks/write_fashion_folder.py --out /tmp/fmnist112-2k --size 112 --train-per-class 200 --test-per-class 20
    python benchmarks/write_fashion_folder.py --out /tmp/fmnist112-4k --size 112 --train-per-class 400 --test-per-class 20
    python benchmarks/stream_throughput.py --folder /tmp/fmnist112-2k --rounds 2          # rates
    python benchmarks/stream_throughput.py --folder /tmp/fmnist112-2k /tmp/fmnist112-4k --rss   # memory

Rates: `reslab train --data folder:DIR --data-mode memory|stream --model resnet18 --image-size 112
--recipe imagenet --batch-size 64 --epochs 1` in fresh processes, the two modes alternating for --rounds
rounds; the rate is the run's own training images/s (metrics.jsonl: the epoch's steps only, no loading,
validation or test). Both modes train the same crops (random-resized, 8-100% of the area, and flips):
memory cuts them on the device from images decoded once at 112 px (torchvision's roi_align), stream has
DataLoader workers decode each JPEG and crop it with Pillow. The breakdown times, in this process, one
image's decode, its crop + resize, and a training step's share per image.

RSS: the peak resident memory (ru_maxrss of the child, workers included as the largest child) of the
same streamed command on each folder; doubling the folder must change it by < 10%.
Appends JSON lines to benchmarks/results/stream.jsonl.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "stream.jsonl"
TRAIN = ["--model", "resnet18", "--image-size", "112", "--recipe", "imagenet", "--batch-size", "64"]
TRAIN += ["--epochs", "1", "--precise-bn", "off", "--quiet"]


def run_train(folder: Path, mode: str, workers: int | None) -> dict:
    """One `reslab train` epoch in a fresh process: its images/s and peak RSS (self, and workers)."""
    with tempfile.TemporaryDirectory() as tmp:
        words = [sys.executable, "-m", "reslab", "train", "--data", f"folder:{folder}", "--data-mode", mode]
        words += TRAIN + ["--out", str(Path(tmp) / "run")]
        if workers is not None:
            words += ["--workers", str(workers)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        subprocess.run(words, check=True)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        row = json.loads((Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()[0])
    return {
        "folder": str(folder),
        "mode": mode,
        "images_per_second": row["images_per_second"],
        "epoch_train_seconds": row["seconds"],
        "command_seconds": round(seconds, 1),
        # RUSAGE_CHILDREN's maxrss is the largest child so far; grows only, so compare fresh invocations.
        "peak_rss_mb_children_so_far": round(max(before, peak) / 1024, 1),
    }


def breakdown(folder: Path, images: int = 200) -> dict:
    """Per image, in this process: JPEG decode and a worker's random-resized crop + resize (one thread),
    the in-memory path's batched crop (roi_align, 2 threads), and a resnet18 training step at batch 64
    (2 threads), each divided by the images it handled."""
    import numpy as np
    import torch

    import reslab
    from reslab.data.crops import crop_resize_batch, crop_resize_image
    from reslab.data.images import converted, open_image

    torch.set_num_threads(1)
    paths = sorted((folder / "train").rglob("*.jpg"))[:images]
    generator = torch.Generator().manual_seed(0)
    decoded, t0 = [], time.perf_counter()
    for path in paths:
        with open_image(path) as image:
            decoded.append(converted(image, path, 3))
    decode = (time.perf_counter() - t0) / len(paths)
    t0 = time.perf_counter()
    for image in decoded:
        np.asarray(crop_resize_image(image, "random-resized", (112, 112), generator, True))
    crop = (time.perf_counter() - t0) / len(paths)
    torch.set_num_threads(2)
    batch = torch.randint(0, 256, (64, 3, 112, 112), dtype=torch.uint8)
    t0 = time.perf_counter()
    for _ in range(3):
        crop_resize_batch(batch, "random-resized", generator)
    device_crop = (time.perf_counter() - t0) / (3 * 64)
    model = reslab.create_model("resnet18", num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(64, 3, 112, 112), torch.randint(0, 10, (64,))
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[1:]) / 64
    return {
        "decode_ms": round(1e3 * decode, 2),
        "crop_resize_ms": round(1e3 * crop, 2),
        "memory_batch_crop_ms": round(1e3 * device_crop, 2),
        "step_ms": round(1e3 * step, 2),
    }


def rates(folder: Path, rounds: int, workers: int | None) -> None:
    runs: dict[str, list[float]] = {"memory": [], "stream": []}
    for _ in range(rounds):
        for mode in ("memory", "stream"):
            result = run_train(folder, mode, workers)
            runs[mode].append(result["images_per_second"])
            print(json.dumps(result), flush=True)
    memory, stream = statistics.median(runs["memory"]), statistics.median(runs["stream"])
    summary = {
        "kind": "rates",
        "folder": str(folder),
        "memory_images_per_second": runs["memory"],
        "stream_images_per_second": runs["stream"],
        "stream_over_memory": round(stream / memory, 3),
        "per_image": breakdown(folder),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(summary), flush=True)
    with RESULTS.open("a") as out:
        out.write(json.dumps(summary) + "\n")


def rss(folders: list[Path], workers: int | None) -> None:
    peaks = []
    for folder in folders:
        # A fresh interpreter per folder, so each peak is that run's own (RUSAGE_CHILDREN only grows).
        code = [sys.executable, __file__, "--folder", str(folder), "--one-stream-run"]
        code += [] if workers is None else ["--workers", str(workers)]
        done = subprocess.run(code, check=True, capture_output=True, text=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(result), flush=True)
        peaks.append(result["peak_rss_mb_children_so_far"])
    summary = {
        "kind": "rss",
        "folders": [str(f) for f in folders],
        "peak_rss_mb": peaks,
        "change": round(peaks[-1] / peaks[0] - 1, 4),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(summary), flush=True)
    with RESULTS.open("a") as out:
        out.write(json.dumps(summary) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, nargs="+", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: reslab's)")
    parser.add_argument("--rss", action="store_true", help="peak RSS of a streamed run on each folder")
    parser.add_argument("--one-stream-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_stream_run:
        print(json.dumps(run_train(args.folder[0], "stream", args.workers)))
    elif args.rss:
        rss(args.folder, args.workers)
    else:
        rates(args.folder[0], args.rounds, args.workers)


if __name__ == "__main__":
    main()
