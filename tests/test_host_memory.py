"""reslab.host_memory: freed host memory is reused instead of faulted in again; who turns it on."""

import json
import os
import platform
import subprocess
import sys

import pytest

import reslab.benchmark as benchmark_module
import reslab.cli as cli_module
from reslab.cli import main
from reslab.host_memory import OPT_OUT_VARIABLE

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# Allocates, fills and frees the same 64 MiB eight times; prints (tuned?, page faults per allocation).
REALLOCATE = """
import json, resource, sys, torch
from reslab.host_memory import tune_host_allocator
tuned = tune_host_allocator() if sys.argv[1] == "tune" else False
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty(16 << 20)
    block.fill_(1.0)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps([tuned, faults]))
"""
PAGES_PER_BLOCK = (64 << 20) // 4096


def _reallocate(mode: str, opt_out: str | None = None) -> tuple[bool, list[int]]:
    env = {key: value for key, value in os.environ.items() if key != OPT_OUT_VARIABLE}
    if opt_out is not None:
        env[OPT_OUT_VARIABLE] = opt_out
    out = subprocess.run(
        [sys.executable, "-c", REALLOCATE, mode], env=env, check=True, capture_output=True, text=True
    ).stdout
    tuned, faults = json.loads(out.strip().splitlines()[-1])
    return tuned, faults


@glibc_only
def test_tuned_malloc_reuses_freed_blocks_instead_of_faulting_them_in_again():
    tuned, faults = _reallocate("tune")
    assert tuned is True
    assert sum(faults[-4:]) < PAGES_PER_BLOCK // 10  # the last four reuse the kept block
    untuned, default_faults = _reallocate("leave")
    assert untuned is False
    # glibc's default: a 64 MiB block is a fresh mmap every time, every page faulted in again.
    assert all(count >= PAGES_PER_BLOCK * 9 // 10 for count in default_faults[-4:])


@glibc_only
@pytest.mark.parametrize("value", ["0", "off"])
def test_opt_out_variable_leaves_malloc_alone(value):
    tuned, faults = _reallocate("tune", opt_out=value)
    assert tuned is False
    assert all(count >= PAGES_PER_BLOCK * 9 // 10 for count in faults[-4:])


def _spy(monkeypatch, module) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(module, "tune_host_allocator", lambda: calls.append("tuned") or True)
    return calls


def test_commands_tune_malloc_but_the_benchmark_only_on_request(monkeypatch, capsys):
    cli_calls = _spy(monkeypatch, cli_module)
    bench_calls = _spy(monkeypatch, benchmark_module)
    assert main(["models"]) == 0
    assert cli_calls == ["tuned"]
    tiny = ["benchmark", "--model", "resnet8", "--batch-size", "2", "--iters", "1", "--warmup", "0"]
    tiny += ["--image-size", "16", "--no-compile", "--json"]
    assert main(tiny) == 0
    assert cli_calls == ["tuned"] and bench_calls == []  # the baseline gets plain PyTorch's malloc
    assert main([*tiny, "--tune-allocator"]) == 0
    assert cli_calls == ["tuned"] and bench_calls == ["tuned"]
    capsys.readouterr()
