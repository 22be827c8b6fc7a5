"""What glibc malloc's defaults cost a PyTorch CPU process, and what `reslab.tune_host_allocator()` saves.

malloc settings are per process and cannot be undone, so every measurement runs in a fresh child
process, "default" and "tuned" alternating, `--runs` times each. Workloads:

- train_compiled: reslab's training step (bf16 autocast + channels_last + torch.compile), resnet20,
  batch 128, 32x32 - what `reslab train --compile` runs;
- train_eager:    the same step without torch.compile - what `reslab train` runs by default;
- infer_baseline: torchvision's resnet50, eager fp32 NCHW, batch 16 - the inference baseline of
  `reslab benchmark`.

Each child reports images/s, minor page faults and kernel (sys) time per step, and peak RSS; each line
is printed and appended to benchmarks/results/host_allocator.jsonl. Run by hand (about two minutes):

    python benchmarks/host_allocator.py --runs 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

WORKLOADS = ("train_compiled", "train_eager", "infer_baseline")
RESULTS = Path(__file__).parent / "results" / "host_allocator.jsonl"


def _step_function(workload: str):  # noqa: ANN202 - returns (step, images per step)
    import torch

    from reslab import create_model
    from reslab.precision import resolve_precision
    from reslab.training.step import make_train_step

    torch.manual_seed(0)
    if workload == "infer_baseline":
        import torchvision

        model = torchvision.models.resnet50(weights=None).eval()
        x = torch.randn(16, 3, 224, 224)

        def infer() -> object:
            with torch.no_grad():
                return model(x)

        return infer, 16
    precision = resolve_precision("auto", torch.device("cpu"))
    model = create_model("resnet20").train()
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, foreach=True)
    net = torch.compile(model) if workload == "train_compiled" else model
    step = make_train_step(net, optimizer, precision, track=False)
    x = torch.randn(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))
    return (lambda: step(x, y)), 128


def child(workload: str, allocator: str, steps: int) -> dict[str, object]:
    from reslab.benchmark import peak_rss_mb
    from reslab.host_memory import tune_host_allocator

    tuned = tune_host_allocator() if allocator == "tuned" else False
    step, images = _step_function(workload)
    for _ in range(3):  # warm-up, compilation included
        step()
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "workload": workload,
        "allocator": allocator,
        "tuned_in_force": tuned,
        "images_per_second": round(steps * images / wall, 1),
        "minor_faults_per_step": round((after.ru_minflt - before.ru_minflt) / steps),
        "sys_ms_per_step": round(1e3 * (after.ru_stime - before.ru_stime) / steps, 1),
        "user_ms_per_step": round(1e3 * (after.ru_utime - before.ru_utime) / steps, 1),
        "peak_rss_mb": round(peak_rss_mb()),
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help="comma-separated subset of " + ", ".join(WORKLOADS)
    )
    parser.add_argument("--runs", type=int, default=2, help="child processes per workload and allocator")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per child")
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "ALLOCATOR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.steps)))
        return
    env = {**os.environ, "RESLAB_TUNE_ALLOCATOR": "1"}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for workload in args.workloads.split(","):
        if workload not in WORKLOADS:
            sys.exit(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
        for run in range(args.runs):
            for allocator in ("default", "tuned") if run % 2 == 0 else ("tuned", "default"):
                command = [
                    sys.executable,
                    __file__,
                    "--steps",
                    str(args.steps),
                    "--child",
                    workload,
                    allocator,
                ]
                output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
                record = json.loads(output.strip().splitlines()[-1])
                record.update(
                    run=run,
                    load_average=round(os.getloadavg()[0], 2),
                    time=time.strftime("%Y-%m-%dT%H:%M:%S"),
                )
                line = json.dumps(record)
                print(line, flush=True)
                with RESULTS.open("a") as results:
                    results.write(line + "\n")


if __name__ == "__main__":
    main()
