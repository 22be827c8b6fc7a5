"""Which device and number format to compute in, decided once and recorded in config.json."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .errors import ReslabError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX or AVX512-BF16, where bf16 matrix math beats fp32 by a wide margin."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        flags = ""
    if "amx_bf16" in flags or "avx512_bf16" in flags:
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and "avx512" in flags
    except (AttributeError, RuntimeError):
        return False


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ReslabError("device cuda: no CUDA GPU is available; use device cpu", params=("device",))
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ReslabError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


class _NoTF32:
    """Process-wide "no TF32" while any reslab fp32 CUDA path runs: the flags are global, so nested or
    concurrent users share one save/restore (the first to enter saves, the last to leave restores)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: tuple[bool, bool] = (False, False)

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cuda.matmul.allow_tf32 = False
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self._saved


_no_tf32 = _NoTF32()


def strict_fp32(device_type: str) -> contextlib.AbstractContextManager[None]:
    """On CUDA, PyTorch lets cuDNN convolutions round their inputs to TF32 by default; reslab's "fp32"
    means fp32 (it is the reference the fast paths are checked against), so TF32 (cuDNN and matmul) is
    off inside. Only those two flags are touched; on other devices this does nothing."""
    if device_type != "cuda":
        return contextlib.nullcontext()
    return _no_tf32()


@dataclass(frozen=True)
class Precision:
    """name: fp32 | bf16 | fp16. dtype: the autocast dtype (None for fp32). channels_last: NHWC layout."""

    name: str
    device_type: str
    dtype: torch.dtype | None
    channels_last: bool

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """bf16/fp16: torch.autocast. fp32: true fp32, also on CUDA (see strict_fp32)."""
        if self.dtype is None:
            return strict_fp32(self.device_type)
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def strict(self) -> contextlib.AbstractContextManager[None]:
        """For code outside autocast that must honour fp32 too (a training step's backward)."""
        return strict_fp32(self.device_type) if self.dtype is None else contextlib.nullcontext()

    def to_dict(self) -> dict[str, object]:
        return {"precision": self.name, "channels_last": self.channels_last}


def resolve_precision(name: str, device: torch.device) -> Precision:
    """auto: bf16 autocast + channels_last on CUDA and on CPUs with AMX/AVX512-BF16; fp32 elsewhere."""
    if name not in PRECISIONS:
        raise ReslabError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    device_type = device.type
    if name == "auto":
        if device_type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "bf16" if cpu_has_fast_bf16() else "fp32"
    if name == "fp16" and device_type != "cuda":
        raise ReslabError(
            "precision fp16 needs a CUDA device; on a CPU use bf16 (or auto)", params=("precision",)
        )
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
    return Precision(name, device_type, dtype, channels_last=dtype is not None)


INFERENCE_PRECISIONS = (*PRECISIONS, "int8")


def resolve_inference_precision(name: str, device: torch.device) -> Precision:
    """resolve_precision, plus "int8" (inference only: post-training quantization, reslab.quantize)."""
    if name == "int8":
        from .quantize import int8_precision

        return int8_precision(device)
    return resolve_precision(name, device)
