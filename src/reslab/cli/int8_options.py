"""The int8 options shared by eval, predict, serve and benchmark (no torch import: `reslab --help`
stays fast)."""

from __future__ import annotations

import argparse

CALIBRATION_HELP = (
    "int8 calibration images: 'data' (default: the training split of the checkpoint's own data) or "
    "folder:DIR (image files under DIR, read as the model's inputs)"
)


def add_calibration_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calibration", metavar="SPEC", help=CALIBRATION_HELP)
