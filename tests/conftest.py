"""Fixtures shared by several test files."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def two_cpu_threads() -> Iterator[None]:
    """Run the test with 2 torch threads (CI's core count), where thread-order bugs show; restore after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
