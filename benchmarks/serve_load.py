"""Load test of `reslab serve` on 127.0.0.1: throughput and latency with --max-batch 1 against 32, every
answer checked against offline `reslab.predict` on the same image, server memory sampled through the run.

    python benchmarks/write_fashion_folder.py --out /tmp/fmnist112 --size 112 --train-per-class 1000 --test-per-class 1000
    python benchmarks/serve_load.py --folder /tmp/fmnist112 --model resnet18 --size 112 --requests 400 --clients 16

Bounded: --requests in all per setting and --timeout-s per setting; loopback only. The server runs as
`reslab serve CKPT --port 0` in its own process; the clients are httpx in this one (asyncio). A response is
wrong when its classes differ from offline predict's or a probability differs by more than 1e-4 (batches
of different sizes round differently in the last digits). Appends JSON lines to
benchmarks/results/serve_load.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from speed_checkpoint import speed_checkpoint  # benchmarks/, the script's folder

import reslab
from reslab.data.inputs import find_images

RESULTS = Path(__file__).parent / "results" / "serve_load.jsonl"


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def same_answer(got: list[dict], want: list[dict]) -> bool:
    return [t["index"] for t in got] == [t["index"] for t in want] and all(
        abs(g["probability"] - w["probability"]) <= 1e-4 for g, w in zip(got, want, strict=True)
    )


async def load(
    url: str, images: list[tuple[bytes, list]], requests: int, clients: int, pid: int, timeout_s: float
) -> dict:
    latencies, wrong, failed, rss = [], 0, 0, []
    gate = asyncio.Semaphore(clients)

    async def one(client: httpx.AsyncClient, index: int) -> None:
        nonlocal wrong, failed
        data, want = images[index % len(images)]
        async with gate:
            start = time.perf_counter()
            response = await client.post("/predict", content=data, headers={"content-type": "image/jpeg"})
            latencies.append(time.perf_counter() - start)
        if response.status_code != 200:
            failed += 1
        elif not same_answer(response.json()["top"], want):
            wrong += 1

    async def sample() -> None:
        while True:
            rss.append(rss_mb(pid))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s) as client:
        await asyncio.wait_for(asyncio.gather(*(one(client, i) for i in range(requests))), timeout_s)
    seconds = time.perf_counter() - start
    sampler.cancel()
    rss.append(rss_mb(pid))
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests": requests, "answered": len(latencies), "failed": failed, "wrong": wrong,
        "seconds": round(seconds, 2), "requests_per_second": round(requests / seconds, 1),
        "p50_ms": round(1000 * cuts[49], 1), "p99_ms": round(1000 * cuts[98], 1),
        "rss_start_mb": round(rss[0], 1), "rss_end_mb": round(rss[-1], 1), "rss_max_mb": round(max(rss), 1),
    }  # fmt: skip


def run_setting(checkpoint: Path, max_batch: int, images: list, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "reslab", "serve", str(checkpoint), "--port", "0", "--device", "cpu",
               "--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms)]  # fmt: skip
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"on (http://127\.0\.0\.1:\d+)", server.stderr.readline()).group(1)
        # Warm-up at full concurrency, so the batches' buffers exist before memory is first sampled.
        asyncio.run(load(url, images, 4 * args.clients, args.clients, server.pid, args.timeout_s))
        return asyncio.run(load(url, images, args.requests, args.clients, server.pid, args.timeout_s))
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--distinct", type=int, default=100, help="different images, cycled through")
    parser.add_argument("--max-batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--timeout-s", type=float, default=600)
    args = parser.parse_args()
    paths = find_images([args.folder])[:: max(1, len(find_images([args.folder])) // args.distinct)][
        : args.distinct
    ]
    classes = sorted({p.parent.name for p in find_images([args.folder])})
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = speed_checkpoint(args.model, args.size, classes, Path(tmp) / "speed.pt")
        offline = reslab.predict(checkpoint, paths, device="cpu")
        images = [(p.read_bytes(), row["top"]) for p, row in zip(paths, offline, strict=True)]
        for max_batch in args.max_batch:
            result = {"model": args.model, "size": args.size, "max_batch": max_batch, "max_wait_ms": args.max_wait_ms,
                      "clients": args.clients, "cpus": os.cpu_count(), **run_setting(checkpoint, max_batch, images, args)}  # fmt: skip
            print(json.dumps(result), flush=True)
            with open(RESULTS, "a") as handle:
                handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
