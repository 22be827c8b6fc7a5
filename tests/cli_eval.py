"""`reslab eval --json` from a test: the reference a logged number is compared against."""

import json
from pathlib import Path

from reslab.cli import main


def eval_json(checkpoint: Path, capture, split: str = "val") -> dict:
    """The JSON `reslab eval CHECKPOINT --split SPLIT` prints, in plain fp32 (capture: capsys or capfd)."""
    capture.readouterr()
    argv = ["eval", str(checkpoint), "--split", split, "--json", "--no-fast", "--precision", "fp32"]
    assert main(argv) == 0
    return json.loads(capture.readouterr().out)
