"""`reslab benchmark`: reslab's fast path against plain PyTorch, alternating in one process."""

from __future__ import annotations

import argparse
import json

from ..atomic import atomic_write_text
from ..benchmark import JSON_KEYS, MODES, run_benchmark
from .output import console


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "benchmark",
        help="images/s of reslab's fast path vs plain PyTorch (same process, alternating), GFLOP/s, peak",
    )
    parser.add_argument("--model", default="resnet50", help="model name (default resnet50)")
    parser.add_argument("--mode", choices=MODES, default="infer", help="infer (default) or train")
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch (default 16)")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per side (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations per side first (default 3)")
    parser.add_argument("--image-size", type=int, help="square input size (default: the model's native size)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="auto", help="reslab side: auto, fp32, bf16 or fp16")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="torch.compile reslab's path (default on; the compile time is part of the warm-up)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads for both sides (default: torch's; 1 is steadier on a busy machine)",
    )
    parser.add_argument(
        "--tune-allocator",
        action="store_true",
        help="tune malloc to keep freed memory for both sides (default: glibc's defaults, as plain PyTorch)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    parser.add_argument("--save", metavar="FILE", help="also write the JSON object (plus details) to FILE")
    # The baseline must run under plain PyTorch's malloc; --tune-allocator tunes it inside run_benchmark.
    parser.set_defaults(func=run_benchmark_cmd, plain_malloc=True)


def run_benchmark_cmd(args: argparse.Namespace) -> int:
    out = console(stderr=args.json)
    result = run_benchmark(
        args.model,
        args.mode,
        args.batch_size,
        iters=args.iters,
        warmup=args.warmup,
        image_size=args.image_size,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        threads=args.threads,
        tune_allocator=args.tune_allocator,
        log=lambda msg: out.print(f"[dim]{msg}[/dim]"),
    )
    if args.save:
        # Atomically, as every file reslab writes: a failed write keeps an older file at that path whole.
        atomic_write_text(args.save, json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps({key: result[key] for key in JSON_KEYS}))
        return 0
    d = result["details"]
    flavour = f"{d['precision']}{' + channels_last' if d['channels_last'] else ''}"
    if d.get("compiled"):
        flavour += " + torch.compile" + (" (inductor freezing)" if result["mode"] == "infer" else "")
    out.print(
        f"{result['model']} {result['mode']}, batch {result['batch_size']}, {d['image_size']}x{d['image_size']}, "
        f"{d['device']} ({d['threads']} threads), torch {d['torch']}, malloc {d['host_allocator']}"
    )
    out.print(f"  baseline (plain PyTorch fp32): {result['baseline_images_per_second']:10.1f} images/s")
    out.print(f"  reslab ({flavour}): {result['reslab_images_per_second']:10.1f} images/s")
    out.print(f"  speedup: {result['speedup']:.2f}x")
    out.print(
        f"  achieved: {result['gflops']:.1f} GFLOP/s (baseline {d['baseline_gflops']:.1f}); matmul peak measured "
        f"now: bf16 {result['peak_gflops_bf16']:.0f}, fp32 {result['peak_gflops_fp32']:.0f} GFLOP/s -> "
        f"{100 * d['fraction_of_bf16_peak']:.1f}% of bf16 peak, {100 * d['fraction_of_fp32_peak']:.1f}% of fp32 peak"
    )
    if d.get("fallback_reason"):
        # markup=False: a compiler's message may hold [brackets] that rich would take for markup.
        out.print(
            f"  note: compile fell back to eager: {d['fallback_reason']}", markup=False, highlight=False
        )
    out.print(
        f"  peak memory (RSS, whole process): {result['peak_rss_mb']:.0f} MB; warm-up {d['warmup_seconds']} s"
    )
    return 0
