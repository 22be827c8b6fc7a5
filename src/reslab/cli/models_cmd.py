"""`reslab models` and `reslab summary`."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from ..errors import ReslabError
from ..models import create_model, list_models, resolve_config
from ..models.summary import count_params, describe, profile
from .output import console


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="table of every registered model: params and MACs")
    models.add_argument("pattern", nargs="?", help="glob filter, e.g. 'plain*'")
    models.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    models.set_defaults(func=run_models)

    summary = subparsers.add_parser("summary", help="per-layer output shapes, params and MACs of one model")
    summary.add_argument("name")
    summary.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"))
    summary.add_argument("--in-chans", type=int)
    summary.add_argument("--num-classes", type=int)
    summary.add_argument("--json", action="store_true")
    summary.set_defaults(func=run_summary)


def _giga(macs: int) -> str:
    return f"{macs / 1e9:.3f} G" if macs >= 1e8 else f"{macs / 1e6:.1f} M"


def run_models(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        raise ReslabError(f"no model matches {args.pattern!r}")
    rows = [describe(resolve_config(name)) for name in names]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    table = Table(title="reslab models (MACs at native input: 32x32 CIFAR, 224x224 ImageNet)")
    for column in ("name", "family", "depth", "unit", "shortcut"):
        table.add_column(column)
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    for row in rows:
        table.add_row(
            *(str(row[k]) for k in ("name", "family", "depth", "unit", "shortcut")),
            f"{row['params']:,}",
            _giga(row["macs"]),
        )
    console().print(table)
    return 0


def run_summary(args: argparse.Namespace) -> int:
    overrides = {
        k: v for k, v in (("in_chans", args.in_chans), ("num_classes", args.num_classes)) if v is not None
    }
    for key, value in overrides.items():
        if value < 1:
            raise ReslabError(f"--{key.replace('_', '-')} must be positive")
    if args.input_size and min(args.input_size) < 1:
        raise ReslabError("--input-size must be positive")
    model = create_model(args.name, **overrides)
    try:
        rows = profile(model, tuple(args.input_size) if args.input_size else None)
    except RuntimeError as exc:
        raise ReslabError(f"input size {args.input_size} is too small for {args.name}: {exc}") from None
    total_params = count_params(model)
    total_macs = sum(r.macs for r in rows)
    if args.json:
        print(
            json.dumps(
                {
                    "name": model.config.name,
                    "input_size": list(args.input_size or [model.config.native_input_size] * 2),
                    "layers": [
                        {
                            "name": r.name,
                            "type": r.kind,
                            "output_shape": list(r.output_shape),
                            "params": r.params,
                            "macs": r.macs,
                        }
                        for r in rows
                    ],
                    "params": total_params,
                    "macs": total_macs,
                },
                indent=1,
            )
        )
        return 0
    table = Table(title=f"{model.config.name}: {model.config.depth} layers, {model.config.family} family")
    table.add_column("layer")
    table.add_column("type")
    table.add_column("output shape")
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    for r in rows:
        table.add_row(r.name, r.kind, str(list(r.output_shape)), f"{r.params:,}", f"{r.macs:,}")
    table.add_section()
    table.add_row("total", "", "", f"{total_params:,}", f"{total_macs:,} ({_giga(total_macs)})")
    console().print(table)
    return 0
