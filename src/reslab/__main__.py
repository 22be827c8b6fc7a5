import os
import sys

from .cli import main
from .training.distributed import launched_by_torchrun

code = main()
if launched_by_torchrun():
    # A torchrun worker: everything is written (atomically) and printed; skip interpreter finalisation,
    # where gloo's threads, still referenced by DDP/autograd objects, can abort the process
    # ("terminate called without an active exception") and turn a finished run into a failed one.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
