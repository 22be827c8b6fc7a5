"""The `reslab` command line: thin argparse wrappers over the library functions.

Each command lives in its own module exposing `register(subparsers)`, which adds a parser whose
`func(args) -> int | None` does the work. User mistakes (ReslabError) become one line on stderr and
exit status 2, as does an OSError on a path the user gave; a diverged run (DivergedError) exits 3.
Every command first tunes glibc malloc to keep freed memory (reslab.host_memory), unless its parser sets
`plain_malloc` (benchmark: its baseline must get plain PyTorch's malloc).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import DivergedError, ReslabError, error_line
from ..host_memory import tune_host_allocator

COMMAND_MODULES = (
    "models_cmd",
    "export_cmd",
    "train_cmd",
    "eval_cmd",
    "predict_cmd",
    "benchmark_cmd",
    "experiments_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reslab",
        description="Residual networks (He et al. 2016, 2016b): build, train, explain, run fast.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{module_name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "plain_malloc", False):  # set by commands that must not tune it (benchmark)
        tune_host_allocator()
    try:
        code = args.func(args)
    except (ReslabError, DivergedError) as exc:
        if not getattr(exc, "quiet", False):  # quiet: under DDP another rank already printed this line
            print(error_line(args.command, exc), file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # A file the user named cannot be read or written: their environment, not our bug.
        where = f" {exc.filename!r}" if exc.filename else ""
        print(f"reslab {args.command}: error: cannot access{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"reslab {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
