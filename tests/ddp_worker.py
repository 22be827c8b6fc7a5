"""A torchrun worker for tests/test_distributed.py: runs `reslab train` exactly as `python -m reslab` does,
after two optional test hooks given before the command:

  --record DIR         append every file a rank puts in place to DIR/rank<R>.txt (all of reslab's writes
                       end with os.replace: checkpoints, JSON, metrics.jsonl, curves.png);
  --diverge-after N    from iteration N on, the learning rate is 1e12, so training diverges.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    record = diverge = None
    while argv and argv[0] in ("--record", "--diverge-after"):
        flag, value, argv = argv[0], argv[1], argv[2:]
        if flag == "--record":
            record = Path(value)
        else:
            diverge = int(value)
    if record is not None:
        log = record / f"rank{os.environ['RANK']}.txt"
        real_replace = os.replace

        def recording_replace(src: str, dst: str, *args: object, **kwargs: object) -> None:
            real_replace(src, dst, *args, **kwargs)
            with open(log, "a") as handle:
                handle.write(f"{Path(dst).name}\n")

        os.replace = recording_replace
    if diverge is not None:
        from reslab.training.recipes import LRSchedule

        original = LRSchedule.lr_at
        LRSchedule.lr_at = lambda self, step: original(self, step) if step < diverge else 1e12

    from reslab.cli import main as reslab_main

    return reslab_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
