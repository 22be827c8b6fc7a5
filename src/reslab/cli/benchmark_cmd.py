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
    parser.add_argument(
        "--precision", default="auto", help="reslab side: auto, fp32, bf16, fp16 or int8 (CPU)"
    )
    parser.add_argument(
        "--against",
        nargs="?",
        const="installed",
        metavar="PEERS",
        help="race reslab's inference paths against peers instead of plain PyTorch: comma-separated from "
        "torch-compile, openvino, onnxruntime (no value: every one installed; one not installed is skipped)",
    )
    parser.add_argument(
        "--paths",
        default="fp32,bf16,int8",
        help="with --against: reslab's paths to race (default fp32,bf16,int8; bf16 only where the CPU is fast at it)",
    )
    parser.add_argument(
        "--latency-iters",
        type=int,
        default=50,
        help="with --against: batch-1 calls per contender for the p50/p99 latency (0: skip)",
    )
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
    if args.against is not None:
        return run_race_cmd(args)
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


def run_race_cmd(args: argparse.Namespace) -> int:
    from ..errors import ReslabError
    from ..race import JSON_KEYS as RACE_KEYS
    from ..race import RaceSettings, parse_peers, run_race

    if args.mode != "infer" or args.device not in ("auto", "cpu"):
        raise ReslabError(
            "--against races CPU inference: use --mode infer and --device cpu", params=("against",)
        )
    out = console(stderr=args.json)
    settings = RaceSettings(
        model=args.model,
        batch_size=args.batch_size,
        image_size=args.image_size,
        threads=args.threads,
        peers=parse_peers(args.against),
        paths=[p.strip() for p in args.paths.split(",") if p.strip()],
        iters=args.iters,
        warmup=args.warmup,
        latency_iters=args.latency_iters,
        compile=args.compile,
    )
    result = run_race(settings, log=lambda msg: out.print(f"[dim]{msg}[/dim]"))
    if args.save:
        atomic_write_text(args.save, json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps({key: result[key] for key in RACE_KEYS}))
        return 0
    for line in race_lines(result):
        out.print(line, markup=False, highlight=False)
    return 0


def race_lines(result: dict) -> list[str]:
    """The race as a table: images/s, ratio to the best peer, fractions of the peaks, latency."""
    d = result["details"]
    best = result["contenders"].get(result["best_peer"]) if result["best_peer"] else None
    lines = [
        f"{result['model']} inference, batch {result['batch_size']}, {d['image_size']}x{d['image_size']}, "
        f"{result['threads']} threads, " + ", ".join(f"{k} {v}" for k, v in d["versions"].items()),
        f"  {'contender':22} {'images/s':>10} {'vs best peer':>12} {'GFLOP/s':>9} {'%bf16pk':>8} "
        f"{'%fp32pk':>8} {'%int8pk':>8} {'b1 p50 ms':>10} {'b1 p99 ms':>10}",
    ]
    for name, rate in result["contenders"].items():
        f, lat = d["fraction_of_peaks"][name], result["latency_ms"].get(name, {})
        ratio = f"{rate / best:.2f}x" if best else "-"
        lines.append(
            f"  {name:22} {rate:10.1f} {ratio:>12} {f['gflops']:9.1f} {100 * f['of_bf16_peak']:8.1f} "
            f"{100 * f['of_fp32_peak']:8.1f} {100 * f['of_int8_peak']:8.1f} "
            f"{lat.get('p50', float('nan')):10.2f} {lat.get('p99', float('nan')):10.2f}"
        )
    for name, why in result["skipped"].items():
        lines.append(f"  {name:22} skipped: {why}")
    lines.append(
        f"  best peer: {result['best_peer']}; reslab's best: {result['reslab_best']}; ratio "
        f"{result['ratio_to_best_peer']}x. Matmul peaks measured now: bf16 {result['peak_gflops_bf16']:.0f}, "
        f"fp32 {d['peak_gflops_fp32']:.0f} GFLOP/s, int8 {result['peak_gops_int8']:.0f} GOP/s"
    )
    return lines
