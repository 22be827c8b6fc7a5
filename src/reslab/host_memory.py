"""Keep freed host memory in the process instead of handing it back to the OS and faulting it in again.

glibc's malloc serves blocks above its mmap threshold (128 KiB, raised on the fly up to 32 MiB) with
fresh mmap()s and trims freed memory at the top of the heap back to the OS. A CPU training step
allocates and frees the same multi-megabyte activations every step, so every step first-touches them
again: on a 2-core machine, a compiled resnet20 step at batch 128 took ~23,000 minor page faults and
~40 ms of kernel time per step (`benchmarks/host_allocator.py`). Raising both thresholds to 1 GiB makes
malloc reuse the freed blocks: the faults vanish (1,230 -> 1,600 img/s there); peak RSS grows somewhat,
since freed blocks are kept rather than returned (864 -> 940 MB there; 1.0 -> 1.3 GB for eager fp32
resnet50 inference at batch 16).

The setting is process-wide and cannot be undone (mallopt turns glibc's dynamic threshold off), so
reslab applies it where it owns the process: the `reslab` command line (except `reslab benchmark`,
whose baseline must run as plain PyTorch does, unless `--tune-allocator`) and `reslab.train()` on a
CPU. Set RESLAB_TUNE_ALLOCATOR=0 (or false/no/off) to leave malloc alone. Other C libraries (musl,
macOS, Windows): no-op.
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt(3) parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# mallopt takes an int: 1 GiB is the largest power of two that fits (2**31 overflows and means 0).
KEEP_BELOW_BYTES = 1 << 30
OPT_OUT_VARIABLE = "RESLAB_TUNE_ALLOCATOR"
OPT_OUT_VALUES = ("0", "false", "no", "off")

_state = {"tuned": False}


def host_allocator_tuned() -> bool:
    """Whether `tune_host_allocator()` has changed this process's malloc settings."""
    return _state["tuned"]


def tune_host_allocator() -> bool:
    """Make glibc malloc keep and reuse freed blocks below 1 GiB (see the module docstring).

    Returns True when the setting is in force (now or from an earlier call), False where it does not
    apply: not glibc, mallopt refused, or RESLAB_TUNE_ALLOCATOR=0.
    """
    if _state["tuned"]:
        return True
    if os.environ.get(OPT_OUT_VARIABLE, "1").strip().lower() in OPT_OUT_VALUES:
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # Trim threshold first: if the mmap threshold were refused, a kept heap alone still helps.
    trimmed = libc.mallopt(_M_TRIM_THRESHOLD, KEEP_BELOW_BYTES) == 1
    mapped = libc.mallopt(_M_MMAP_THRESHOLD, KEEP_BELOW_BYTES) == 1
    _state["tuned"] = trimmed and mapped
    return _state["tuned"]
