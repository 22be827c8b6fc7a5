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
from typing import Any

from ..errors import DivergedError, ReslabError, error_line
from ..host_memory import tune_host_allocator

COMMAND_MODULES = (
    "models_cmd",
    "export_cmd",
    "train_cmd",
    "eval_cmd",
    "predict_cmd",
    "explain_cmd",
    "serve_cmd",
    "features_cmd",
    "benchmark_cmd",
    "experiments_cmd",
    "forecast_cmd",
)


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that remembers each option's flag by its dest (`batch_size` -> `--batch-size`),
    so errors from the library, which name Python parameters, are shown with the flags a user typed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set before argparse's own __init__, which adds --help through add_argument.
        self.flags: dict[str, str] = {}
        self.commands: dict[str, CommandParser] = {}  # the top-level parser's subcommands
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.option_strings:
            self.flags[action.dest] = max(action.option_strings, key=len)
        return action


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="reslab",
        description="Residual networks (He et al. 2016, 2016b): build, train, explain, run fast.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{module_name}").register(subparsers)
    parser.commands = subparsers.choices
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    # What a command may need beyond its options: the words it was given (`train --nproc` hands them to
    # its workers) and its flags by parameter name (for error lines).
    args.argv, args.flags = argv, parser.commands[args.command].flags
    if not getattr(args, "plain_malloc", False):  # set by commands that must not tune it (benchmark)
        tune_host_allocator()
    try:
        code = args.func(args)
    except (ReslabError, DivergedError) as exc:
        if not getattr(exc, "quiet", False):  # quiet: under DDP another rank already printed this line
            print(error_line(args.command, exc, args.flags), file=sys.stderr)
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
