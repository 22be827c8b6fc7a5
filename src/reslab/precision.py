"""Which device and number format to compute in, decided once and recorded in config.json."""

from __future__ import annotations

import contextlib
import functools
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
        raise ReslabError("--device cuda: no CUDA device is available; use --device cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ReslabError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


def strict_fp32(device_type: str) -> contextlib.AbstractContextManager:
    """On CUDA, PyTorch lets cuDNN convolutions round their inputs to TF32 by default; reslab's "fp32"
    means fp32 (it is the reference the fast paths are checked against), so TF32 is off inside."""
    if device_type != "cuda":
        return contextlib.nullcontext()
    cudnn = torch.backends.cudnn
    return cudnn.flags(
        enabled=cudnn.enabled,
        benchmark=cudnn.benchmark,
        deterministic=cudnn.deterministic,
        allow_tf32=False,
    )


@dataclass(frozen=True)
class Precision:
    """name: fp32 | bf16 | fp16. dtype: the autocast dtype (None for fp32). channels_last: NHWC layout."""

    name: str
    device_type: str
    dtype: torch.dtype | None
    channels_last: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16/fp16: torch.autocast. fp32: true fp32, also on CUDA (see strict_fp32)."""
        if self.dtype is None:
            return strict_fp32(self.device_type)
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

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
        raise ReslabError("--precision fp16 needs a CUDA device; on a CPU use bf16 (or auto)")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
    return Precision(name, device_type, dtype, channels_last=dtype is not None)
