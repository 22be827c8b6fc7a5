"""`reslab export`: a checkpoint to ONNX, TorchScript, a torch.export program or safetensors weights,
verified on load."""

from __future__ import annotations

import argparse
import json
import sys

from ..export import ALL_FORMATS, DEFAULT_ATOL, DEFAULT_OPSET, DEFAULT_RTOL, export_checkpoint
from .output import console


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a checkpoint as ONNX / TorchScript / ExportedProgram / safetensors, then load it back "
        "and check it",
        description="Export a checkpoint, then verify the file: load it as a server would (ONNX Runtime, "
        "torch.jit.load, torch.export.load, safetensors load_file into a fresh model built from its "
        "config.json), run it on real images from the checkpoint's data and compare with the PyTorch fp32 "
        "model. Exit 1 if the check fails (the file is then not written).",
    )
    parser.add_argument("checkpoint", help="a checkpoint file or a run directory (best.pt, else last.pt)")
    parser.add_argument(
        "--format", "-f", dest="fmt", default="onnx", choices=ALL_FORMATS, help="default: onnx"
    )
    parser.add_argument(
        "--out",
        "-o",
        help="output file or folder (default: beside the checkpoint, best.onnx / .ts.pt / .pt2; "
        "safetensors: best-safetensors/model.safetensors with config.json beside it)",
    )
    parser.add_argument(
        "--dynamic-batch",
        action="store_true",
        help="any batch size at run time (checked at 1 and --batch-size)",
    )
    parser.add_argument("--opset", type=int, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument(
        "--batch-size",
        type=int,
        help="static: the exported batch size (default 1); dynamic: the second checked size (default 8)",
    )
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="max abs logit difference allowed")
    parser.add_argument(
        "--rtol",
        type=float,
        default=DEFAULT_RTOL,
        help="also allow rtol x max|logit| (for untrained nets with huge logits; 1e-5 is fp32 rounding level)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    report = export_checkpoint(
        args.checkpoint,
        args.fmt,
        out=args.out,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        batch_size=args.batch_size,
        atol=args.atol,
        rtol=args.rtol,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        out = console()
        for line in report.lines():
            out.print(line, markup=False, highlight=False)
    if not report.passed:
        if report.max_abs_diff == float("inf"):
            why = "could not be loaded back and run (" + "; ".join(report.notes) + ")"
        else:
            why = f"differs from the PyTorch model by {report.max_abs_diff:.2e} (> {report.tolerance:.2e})"
            if report.max_abs_diff <= 1e-5 * report.max_abs_logit:
                why += (
                    f", only {report.max_abs_diff / report.max_abs_logit:.0e} of the largest logit "
                    f"({report.max_abs_logit:.3g}), fp32 rounding; --rtol 1e-5 accepts that"
                )
        print(
            f"reslab export: check FAILED: the {report.format} file {why}; nothing was written to {report.path}",
            file=sys.stderr,
        )
        return 1
    return 0
