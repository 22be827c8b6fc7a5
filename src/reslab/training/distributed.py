"""Processes that train one model together (torchrun / DistributedDataParallel): the process group, the
rank's device, reductions, and how a failure on one rank ends every rank with one line.

A process started by torchrun (or `reslab train --nproc N`) finds RANK, WORLD_SIZE and LOCAL_RANK in its
environment; `session()` then joins the process group (gloo for CPU tensors, nccl for CUDA tensors on the
rank's own GPU) and leaves it at the end. Without those variables everything here is a no-op for one process.

Failures: errors during setup meet at one gate (`agree` on healthy ranks, `fail` on failing ones), so every
rank stops together and only the lowest failing rank prints its line; work done by rank 0 alone (`on_main`)
sends its result or its error to every rank. An error raised where all ranks hold the same reduced numbers
(divergence) is raised on every rank and marked quiet on all but rank 0. Anything else that kills one
rank ends its process, and torchrun's agent then stops the others.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pickle
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ..data import AnySplit
from ..data.batches import shard_bounds
from ..errors import DivergedError, ReslabError, error_line
from ..run_config import DistributedSettings

# How long ranks that stop on an error wait for each other before exiting (see _report_then_part).
PARTING_TIMEOUT_S = 10

T = TypeVar("T")


class PeerFailed(ReslabError):
    """Raised on a healthy rank when another rank failed during setup; that rank reports the reason."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.quiet = True

    def __reduce__(self) -> tuple[Any, ...]:
        return (PeerFailed, (str(self), self.exit_code))


def exit_code_of(exc: BaseException) -> int:
    return int(getattr(exc, "exit_code", 1))


def mark_quiet(exc: BaseException) -> BaseException:
    """The CLI leaves a quiet error unprinted (another rank prints the same line) and only exits."""
    exc.quiet = True  # type: ignore[attr-defined]
    return exc


@dataclass
class DistContext:
    """Where this process stands: rank, world size, its device. world_size 1 means no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    _gate_pending: bool = field(default=False, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, device: torch.device) -> torch.device:
        """The rank's own GPU for a CUDA run (one process per GPU); the CPU as it is."""
        if device.type == "cuda" and self.backend is not None:
            gpus = torch.cuda.device_count()
            if self.local_rank >= gpus:
                raise ReslabError(
                    f"{self.world_size} processes on CUDA need a GPU each, and this machine has {gpus} "
                    f"(local rank {self.local_rank} has none); use nproc {gpus} or fewer, or device cpu",
                    params=("nproc", "device"),
                )
            return torch.device("cuda", self.local_rank)
        return device

    def info(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "backend": self.backend}

    # -- reductions --------------------------------------------------------------------------------
    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks in place (bitwise the same result on every rank); returns the tensor."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's `obj` on every rank (pickled; only for small things and state dicts)."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BN running statistics) on every rank, so all ranks hold the checkpointed state."""
        if self.distributed:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def shard(self, split: AnySplit) -> AnySplit:
        """This rank's contiguous part of a split (for evaluation; sizes differ by at most one)."""
        if not self.distributed:
            return split
        lo, hi = shard_bounds(len(split), self.rank, self.world_size)
        return split[lo:hi]

    # -- failures ----------------------------------------------------------------------------------
    def on_main(self, fn: Callable[[], T]) -> T:
        """Run `fn` on rank 0 only; every rank returns its result or raises its error."""
        if not self.distributed:
            return fn()
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except Exception as exc:  # noqa: BLE001 - every rank must learn of any failure
                box[0] = ("error", exc if _picklable(exc) else RuntimeError(f"{type(exc).__name__}: {exc}"))
                dist.broadcast_object_list(box, src=0)
                raise
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise mark_quiet(value)
        return value

    def begin_setup(self) -> None:
        """From here until `agree()`, a failing rank must call `fail()` instead of just raising."""
        self._gate_pending = self.distributed

    def agree(self) -> None:
        """Healthy ranks meet failing ones here; if any rank failed, raise PeerFailed (quietly)."""
        if not self._gate_pending:
            return
        codes = self._gate(0)
        failed = [rank for rank, code in enumerate(codes) if code]
        if failed:
            raise PeerFailed(f"rank {failed[0]} failed during setup (its message says why)", codes[failed[0]])

    def fail(self, exc: BaseException) -> None:
        """Called with the exception that ended this rank's setup: join the gate, then the caller re-raises.
        Only the lowest failing rank prints; an error every rank shares is printed once."""
        if not self._gate_pending:
            return
        codes = self._gate(exit_code_of(exc) or 1)
        first = next(rank for rank, code in enumerate(codes) if code)
        if first != self.rank:
            mark_quiet(exc)

    def _gate(self, code: int) -> list[int]:
        self._gate_pending = False
        codes = torch.zeros(self.world_size, dtype=torch.int64)
        codes[self.rank] = code
        dist.all_reduce(codes, op=dist.ReduceOp.SUM)  # CPU tensor: gloo, on any device's run
        return codes.tolist()


def _picklable(obj: object) -> bool:
    try:
        pickle.loads(pickle.dumps(obj))
    except Exception:  # noqa: BLE001
        return False
    return True


def per_rank_batch(global_batch: int, world_size: int) -> int:
    """batch_size is the global batch; each rank takes an equal share so DDP's mean is the global mean."""
    if global_batch % world_size:
        example = global_batch - global_batch % world_size or world_size
        raise ReslabError(
            f"batch_size {global_batch} is the global batch and must split evenly over {world_size} "
            f"processes; use a multiple of {world_size}, e.g. {example}",
            params=("batch_size",),
        )
    return global_batch // world_size


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def _backend(device: str | torch.device | None) -> str:
    # One group serves both: CPU tensors (the setup gate, CPU runs) over gloo, CUDA tensors over nccl.
    # A run asked to train on the CPU never touches CUDA, even on a GPU machine (a forked worker could
    # not initialise it, and ranks beyond the GPU count have no device to bind).
    wants_cuda = device is None or str(device) == "auto" or str(device).startswith("cuda")
    if wants_cuda and torch.cuda.is_available() and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


Reporter = Callable[[BaseException], None]


def _print_error(exc: BaseException) -> None:
    print(error_line("train", exc), file=sys.stderr, flush=True)


@contextlib.contextmanager
def session(
    device: str | torch.device | None = None, report: Reporter | None = None
) -> Iterator[DistContext]:
    """The context of this process; joins (and finally leaves) the process group under torchrun.
    A group the caller already initialised is used as it is and left alone. device: the run's requested
    device ("cpu", "cuda", "auto"/None), which decides whether the group includes nccl. report: prints
    the one line of an error every rank shares (the CLI's shows its flags), before any rank exits."""
    if dist.is_available() and dist.is_initialized():
        yield DistContext(
            dist.get_rank(),
            dist.get_world_size(),
            int(os.environ.get("LOCAL_RANK", 0)),
            str(dist.get_backend()),
        )
        return
    if not launched_by_torchrun():
        yield DistContext()
        return
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    backend = _backend(device)
    if "nccl" in backend and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    try:
        yield DistContext(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    except (ReslabError, DivergedError) as exc:
        _report_then_part(exc, report or _print_error)
        raise
    finally:
        dist.destroy_process_group()


def _report_then_part(exc: BaseException, report: Reporter) -> None:
    """torchrun's agent stops every worker as soon as one exits with an error, so a rank that reports an
    error every rank shares must print it before any rank leaves: the reporting rank prints here (and marks
    the error quiet so the CLI does not print it again), then all ranks meet once more before exiting.
    A rank whose peers never arrive (an error only it had) gives up after a few seconds."""
    if not getattr(exc, "quiet", False):
        report(exc)
        mark_quiet(exc)
    with contextlib.suppress(Exception):  # a peer that already died: nothing left to wait for
        dist.monitored_barrier(timeout=datetime.timedelta(seconds=PARTING_TIMEOUT_S), wait_all_ranks=True)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers whose batch statistics cover the global batch (all ranks). On CUDA: PyTorch's
    SyncBatchNorm. On the CPU, where SyncBatchNorm refuses to run, reslab's GlobalBatchNorm2d: the
    same computation, with autograd-aware all-reduces."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    from .sync_bn import convert_to_global_batchnorm

    return convert_to_global_batchnorm(model)


def wrap_ddp(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `model` when there are several processes (rank 0's weights are
    broadcast at construction; gradients are averaged over ranks in backward); the model itself if not."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def distributed_settings(ctx: DistContext, global_batch: int, sync_bn: bool) -> DistributedSettings:
    """What the run config says about the processes: world size, global and per-rank batch (the lr rule
    for another batch size is the recipe's business: train.extra.lr_scaling)."""
    return DistributedSettings(
        world_size=ctx.world_size,
        backend=ctx.backend,
        sync_bn=sync_bn,
        global_batch=global_batch,
        per_rank_batch=per_rank_batch(global_batch, ctx.world_size),
    )
