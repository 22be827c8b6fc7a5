"""reslab's fp32 is fp32 on CUDA too: TF32 off inside its fp32 paths (forward, backward, inference), and
only there. The flags are plain process state, so this runs without a GPU."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch

from reslab.precision import Precision, strict_fp32
from reslab.training.step import TrainStep


def _flags() -> tuple[bool, bool]:
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


@pytest.fixture
def tf32_on() -> Iterator[None]:
    """Both TF32 flags on for the test, their previous values back afterwards. Not monkeypatch.setattr:
    torch.backends.cudnn and torch.backends.cuda.matmul are objects whose flags are properties or
    __getattr__/__setattr__ hooks, and since pytest 9.2 monkeypatch restores the instance __dict__ entry
    (here: none, so it deletes the flag and fails) instead of the value it read."""
    saved = _flags()
    try:
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = True
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_strict_fp32_turns_tf32_off_inside_and_restores_it(tf32_on) -> None:
    assert _flags() == (True, True)
    benchmark = torch.backends.cudnn.benchmark
    with strict_fp32("cuda"):
        assert _flags() == (False, False)
        with strict_fp32("cuda"):  # nested: the inner exit must not restore early
            pass
        assert _flags() == (False, False)
    assert _flags() == (True, True) and torch.backends.cudnn.benchmark == benchmark
    with strict_fp32("cpu"):
        assert _flags() == (True, True)


def test_overlapping_threads_restore_the_flags_once_all_leave(tf32_on) -> None:
    first_inside, second_done = threading.Event(), threading.Event()
    seen_by_first: list[bool] = []  # an assert in the thread would not fail the test: the main thread checks

    def first() -> None:
        with strict_fp32("cuda"):
            first_inside.set()
            second_done.wait(5)
            seen_by_first.append(_flags()[0])

    thread = threading.Thread(target=first)
    thread.start()
    first_inside.wait(5)
    with strict_fp32("cuda"):
        pass
    assert _flags()[0] is False  # the first thread is still inside
    second_done.set()
    thread.join(5)
    assert seen_by_first == [False]  # still off after the second thread left
    assert _flags()[0] is True


class _Spy(torch.autograd.Function):
    seen: list[tuple[str, bool]] = []

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        _Spy.seen.append(("forward", torch.backends.cudnn.allow_tf32))
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        _Spy.seen.append(("backward", torch.backends.cudnn.allow_tf32))
        return grad


class _SpyLayer(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Spy.apply(x)


def test_an_fp32_cuda_training_step_keeps_tf32_off_in_backward_too(tf32_on) -> None:
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # The step runs on CPU tensors; a CUDA fp32 Precision only decides the TF32 flags.
    step = TrainStep(
        torch.nn.Sequential(model, _SpyLayer()), optimizer, Precision("fp32", "cuda", None, False)
    )
    _Spy.seen.clear()
    step(torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))
    assert _Spy.seen == [("forward", False), ("backward", False)]
    assert torch.backends.cudnn.allow_tf32 is True
