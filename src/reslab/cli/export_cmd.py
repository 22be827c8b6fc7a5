"""`reslab export`: a checkpoint to ONNX, TorchScript, a torch.export program or safetensors weights,
verified on load."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ReslabError
from ..export import (
    ALL_FORMATS,
    DEFAULT_ATOL,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_OPSET,
    DEFAULT_RTOL,
    PRECISIONS,
    export_checkpoint,
)
from ..export.core import ExportReport
from .int8_options import add_calibration_argument
from .output import console


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a checkpoint as ONNX / TorchScript / ExportedProgram / safetensors, then load it back "
        "and check it",
        description="Export a checkpoint, then verify the file: load it as a server would (ONNX Runtime, "
        "torch.jit.load, torch.export.load, safetensors load_file into a fresh model built from its "
        "config.json), run it on real images from the checkpoint's data and compare with the PyTorch fp32 "
        "model. --precision int8 quantizes (onnx: ONNX Runtime QDQ; exported-program: torchao PT2E) and "
        "checks top-1 agreement with fp32 on the test split instead. Exit 1 if the check fails (the file is "
        "then not written).",
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
    parser.add_argument(
        "--atol", type=float, help=f"fp32: max abs logit difference allowed (default {DEFAULT_ATOL:g})"
    )
    parser.add_argument(
        "--rtol",
        type=float,
        help="fp32: also allow rtol x max|logit| (for untrained nets with huge logits; 1e-5 is fp32 rounding "
        f"level; default {DEFAULT_RTOL:g})",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="fp32 (default) or int8: post-training static quantization, onnx or exported-program only",
    )
    add_calibration_argument(parser)
    parser.add_argument(
        "--min-agreement",
        type=float,
        metavar="F",
        help=f"int8: the share of test images whose top-1 must match fp32 (default {DEFAULT_MIN_AGREEMENT})",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    if args.precision == "int8" and (args.atol is not None or args.rtol is not None):
        raise ReslabError(
            "atol and rtol apply to precision fp32; int8 is checked by min_agreement",
            params=("atol", "rtol", "precision", "min_agreement"),
        )
    report = export_checkpoint(
        args.checkpoint,
        args.fmt,
        out=args.out,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        batch_size=args.batch_size,
        atol=DEFAULT_ATOL if args.atol is None else args.atol,
        rtol=DEFAULT_RTOL if args.rtol is None else args.rtol,
        precision=args.precision,
        calibration=args.calibration,
        min_agreement=args.min_agreement,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        out = console()
        for line in report.lines():
            out.print(line, markup=False, highlight=False)
    if not report.passed:
        print(
            f"reslab export: check FAILED: the {_kind(report)} file {_why(report)}; nothing was written to "
            f"{report.path}",
            file=sys.stderr,
        )
        return 1
    return 0


def _kind(report: ExportReport) -> str:
    return f"int8 {report.format}" if report.precision == "int8" else report.format


def _why(report: ExportReport) -> str:
    if report.max_abs_diff == float("inf"):
        return "could not be loaded back and run (" + "; ".join(report.notes) + ")"
    if report.precision == "int8":
        return (
            f"picks the fp32 model's class on {report.top1_agreement:.2%} of the test images checked "
            f"(< {report.min_agreement:.2%})"
        )
    why = f"differs from the PyTorch model by {report.max_abs_diff:.2e} (> {report.tolerance:.2e})"
    if report.max_abs_diff <= 1e-5 * report.max_abs_logit:
        why += (
            f", only {report.max_abs_diff / report.max_abs_logit:.0e} of the largest logit "
            f"({report.max_abs_logit:.3g}), fp32 rounding; --rtol 1e-5 accepts that"
        )
    return why
