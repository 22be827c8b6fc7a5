"""`reslab train --nproc N`: start N training processes on this machine through torchrun's own engine.

It calls torch.distributed's elastic launcher (`elastic_launch`, the agent behind torchrun) in this process
with torchrun's single-machine settings (c10d rendezvous on localhost, a free port, no restarts), and each
worker runs `python -m reslab train <the same flags without --nproc>`, exactly what
`torchrun --nproc-per-node N -m reslab train ...` starts. Launching in-process rather than re-executing
torchrun saves an interpreter start and lets a worker's failure end as that worker's one-line message
and exit status (2 bad input, 3 diverged) instead of torchrun's ChildFailedError report.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import uuid
from collections.abc import Sequence

from ..errors import ReslabError


def launch(nproc: int, worker_args: Sequence[str]) -> int:
    """Run `python <worker_args>` as `nproc` ranks; 0 when all succeed, else the first failed rank's code."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ReslabError(f"nproc must be at least 1, got {nproc}", params=("nproc",))
    if "WORLD_SIZE" in os.environ:
        raise ReslabError(
            "nproc starts its own processes; under torchrun, leave it out (torchrun's "
            "--nproc-per-node says how many)",
            params=("nproc",),
        )
    # As torchrun does, split the cores so N processes do not oversubscribe the machine.
    saved_omp = os.environ.get("OMP_NUM_THREADS")
    if saved_omp is None:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    # The agent's loggers set their own levels, so each one is quietened, not just the parent.
    names = [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed")]
    quiet_loggers = [logging.getLogger(name) for name in ["torch.distributed", *names]]
    levels = [logger.level for logger in quiet_loggers]
    # The agent installs its own signal handlers; the caller (a test, a notebook) gets its own back.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    for logger in quiet_loggers:
        logger.setLevel(logging.CRITICAL)  # the workers print reslab's own lines; the agent's are noise
    try:
        elastic_launch(config, entrypoint=sys.executable)("-u", *worker_args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        if code in (2, 3, 130):
            return code  # the worker printed its one line
        print(f"reslab train: rank {rank} exited with status {code}; see its output above", file=sys.stderr)
        return 1
    except SignalException:
        return 130  # Ctrl-C / SIGTERM: the agent stopped every worker; rank 0 said "interrupted"
    finally:
        for logger, level in zip(quiet_loggers, levels, strict=True):
            logger.setLevel(level)
        if saved_omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return 0
