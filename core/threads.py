"""CPU threads for torch and numba chosen from the cores this process may really use.

Why this exists: on a shared CPU (a Space's 2 vCPUs, a CI runner, a laptop running other work) the libraries'
defaults collapse. torch sizes its intra-op pool from the machine's core count, not from the process's affinity
mask or its cgroup quota, and its OpenMP runtime (libgomp) spin-waits between parallel regions: a thread whose core
was taken by another process holds up every barrier, and the idle threads burn the cycles the busy process needed.

What :func:`configure_threads` does:

1. counts the CPUs available to the process (:func:`available_cpus`: ``os.sched_getaffinity`` and the cgroup CPU
   quota, v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``);
2. sets ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning) unless the user set a policy.
   libgomp reads it once, when torch is first imported, so the entry points call this function before anything
   imports torch; for a process that already imported torch it still reaches child processes, and the result says
   whether it was in effect;
3. gives torch (and numba, when it is importable) one thread per available CPU, and torch one inter-op thread.

Measured (``python scripts/bench_splats.py --section threads``, 2026-12-01): one fit step of the torch rasteriser,
100k splats at 256×192, seconds per iteration, each case a fresh process; the 2-core machine was shared with other
engineers' test runs (load average ~11 throughout), so read the ratios, not the seconds:

=======================================  ==========  ===============  ==========
configuration                             quiet       1 busy process   slowdown
=======================================  ==========  ===============  ==========
1 thread                                  1.27        2.15             1.69×
2 threads, libgomp default wait policy    18.61       18.94            1.02×
2 threads, OMP_WAIT_POLICY=PASSIVE        1.36        1.19             0.87×
=======================================  ==========  ===============  ==========

Spinning threads on an oversubscribed CPU cost 14× (18.6 s against 1.36 s per step); with the passive policy two
threads are no slower than one when the machine is busy and faster when a core is free, so the choice is one
thread per available CPU, passive. (numba's own kernels use its workqueue layer, which sleeps rather than spins.)
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""cgroup v2: "<quota> <period>" in microseconds, or "max <period>" without a quota."""
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
"""cgroup v1: quota in microseconds per period, -1 without a quota."""
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


@dataclass(frozen=True)
class ThreadSettings:
    """What :func:`configure_threads` chose."""

    cpus: int
    """CPUs available to this process (affinity mask and cgroup quota)."""
    torch_threads: int
    """torch's intra-op threads after the call."""
    numba_threads: int | None
    """numba's threads after the call; None when numba is not installed."""
    wait_policy: str
    """OMP_WAIT_POLICY in the environment after the call."""
    passive_in_effect: bool
    """True when the passive wait policy reached this process's OpenMP runtime (torch was imported after it was
    set); False means idle torch threads may still spin in this process (child processes are fine)."""


def _read_int_pair(path: Path) -> tuple[str, str] | None:
    try:
        parts = path.read_text().split()
    except OSError:
        return None
    return (parts[0], parts[1]) if len(parts) >= 2 else None


def cgroup_cpu_limit(
    cpu_max: Path = CGROUP_V2_CPU_MAX, v1_quota: Path = CGROUP_V1_QUOTA, v1_period: Path = CGROUP_V1_PERIOD
) -> int | None:
    """CPUs allowed by the cgroup quota (rounded up), or None when no quota is set or visible.

    Args:
        cpu_max: cgroup v2 ``cpu.max`` file.
        v1_quota: cgroup v1 ``cpu.cfs_quota_us`` file.
        v1_period: cgroup v1 ``cpu.cfs_period_us`` file.

    Returns:
        ``ceil(quota / period)`` (at least 1), or None.
    """
    pair = _read_int_pair(cpu_max)
    if pair is not None:
        quota, period = pair
        if quota == "max":
            return None
        try:
            return max(1, math.ceil(int(quota) / int(period)))
        except (ValueError, ZeroDivisionError):
            return None
    try:
        quota_us = int(v1_quota.read_text().strip())
        period_us = int(v1_period.read_text().strip())
    except (OSError, ValueError):
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return max(1, math.ceil(quota_us / period_us))


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, lowered by a cgroup CPU quota when one is set.

    Returns:
        At least 1.

    Example:
        >>> available_cpus() >= 1
        True
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    return max(1, min(count, limit) if limit is not None else count)


def configure_threads(threads: int | None = None) -> ThreadSettings:
    """Set torch's and numba's thread counts from the available CPUs and make idle OpenMP threads sleep.

    Call it first thing in an entry point (before anything imports torch) so the wait policy takes effect.

    Args:
        threads: threads to use; None = :func:`available_cpus`. Must be >= 1.

    Returns:
        What was chosen (see :class:`ThreadSettings`).

    Raises:
        ValueError: when ``threads`` is not a positive int.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    cpus = available_cpus()
    count = threads if threads is not None else cpus
    torch_was_loaded = "torch" in sys.modules
    policy_before = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("NUMBA_NUM_THREADS", str(count))  # read when numba is first imported
    policy = os.environ["OMP_WAIT_POLICY"]

    import torch  # noqa: PLC0415 - imported after the environment is set, so libgomp sees the policy

    torch.set_num_threads(count)
    try:
        torch.set_num_interop_threads(1)  # inter-op parallelism is unused here; allowed only before first use
    except RuntimeError:
        pass  # already started: leave it
    numba_threads = None
    try:
        import numba  # noqa: PLC0415 - optional
    except ImportError:
        numba = None
    if numba is not None:
        numba_threads = min(count, numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(numba_threads)
    return ThreadSettings(
        cpus=cpus,
        torch_threads=torch.get_num_threads(),
        numba_threads=numba_threads,
        wait_policy=policy,
        passive_in_effect=policy.upper() == "PASSIVE" and (not torch_was_loaded or policy_before is not None),
    )
