"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors: one torch thread avoids OpenMP barrier stalls on a busy 2-core runner.

    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")`` in a module of small-tensor tests.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
