"""Shared by the experiments' tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convs on a shared 2-core machine: one thread avoids oversubscription stalls."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
