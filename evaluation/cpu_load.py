"""Competing CPU load for benchmarks: figures "with one competing CPU-bound process" as the issues state them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

BUSY_LOOP = "while True: pass"
"""The competitor: one Python process spinning on one core (what a neighbour's job looks like to the scheduler)."""


@contextmanager
def competing_processes(count: int = 1) -> Iterator[list[int]]:
    """Run ``count`` busy-looping processes for the duration of the ``with`` block.

    Args:
        count: competitors to start (0 runs the block on a quiet machine).

    Yields:
        The competitors' process ids.

    Example:
        >>> with competing_processes(0) as pids:
        ...     pids
        []
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
