"""Timings of the depth stages (edge finding, alignment) on a synthetic view with soft edges.

Used by ``scripts/bench_depth.py`` and the overall benchmark (``scripts/benchmark.py``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from core.components import DepthEstimate
from core.masks import snap_depth_edges
from models.depth_align import align_depth

UNKNOWN_FRACTION = 0.4
"""Share of the view the completer fills: a 25° yaw step with a 53° field of view reveals about 40 %."""

EDGE_BLUR_PX = 2
"""The synthetic depth's occlusion edges are box-blurred over 2 px either side, like a network's soft edges."""


def soft_edge_scene(size: int, device: torch.device | str = "cpu") -> Tensor:  # [size, size] z-depth with soft edges
    """A floor-to-wall gradient with a few boxes in front of it, edges blurred (deterministic)."""
    v, u = torch.meshgrid(torch.arange(size, device=device), torch.arange(size, device=device), indexing="ij")
    x, y = (u + 0.5) / size, (v + 0.5) / size
    depth = 4.0 + 2.0 * x - 1.5 * y
    for left, top, extent, near in ((0.1, 0.2, 0.2, 1.5), (0.5, 0.5, 0.3, 2.0), (0.7, 0.1, 0.15, 1.0)):
        box = (x >= left) & (x < left + extent) & (y >= top) & (y < top + extent)
        depth = torch.where(box, torch.full_like(depth, near), depth)
    kernel = 2 * EDGE_BLUR_PX + 1
    padded = torch.nn.functional.pad(depth[None, None], (EDGE_BLUR_PX,) * 4, mode="replicate")
    return torch.nn.functional.avg_pool2d(padded, kernel, stride=1)[0, 0]


def median_seconds(run: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall time and median CPU time of this process (the latter is steadier on a shared machine)."""
    run()  # warm-up (allocations, lazy imports)
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def depth_stage_rows(size: int = 512, runs: int = 5) -> list[dict]:
    """Median timings of the depth stages on a synthetic ``size`` x ``size`` view (CPU).

    Returns:
        One dict per case: ``{"name", "shape", "median_ms", "cpu_ms", "runs", "threads"}`` (``cpu_ms``: median
        CPU time of this process, summed over threads).
    """
    if size < 16 or runs < 1:
        raise ValueError(f"size must be >= 16 and runs >= 1, got size={size}, runs={runs}")
    truth = soft_edge_scene(size)
    known = torch.zeros(size, size, dtype=torch.bool)
    known[:, : round((1 - UNKNOWN_FRACTION) * size)] = True
    known_depth = torch.where(known, truth, torch.zeros_like(truth))
    x = torch.linspace(0, 1, size).expand(size, size)
    relative_inverse = DepthEstimate(0.7 / truth + 0.05 + 0.01 * torch.sin(3 * x), "relative_inverse")
    metric = DepthEstimate(1.15 * truth, "metric")

    cases: list[tuple[str, Callable[[], object]]] = [
        ("snap_depth_edges", lambda: snap_depth_edges(truth)),
        (
            f"align_depth relative_inverse ({UNKNOWN_FRACTION:.0%} unknown)",
            lambda: align_depth(relative_inverse, known_depth, known),
        ),
        (f"align_depth metric ({UNKNOWN_FRACTION:.0%} unknown)", lambda: align_depth(metric, known_depth, known)),
    ]
    rows = []
    for name, run in cases:
        wall, cpu = median_seconds(run, runs)
        rows.append(
            {
                "name": name,
                "shape": f"{size}x{size}",
                "median_ms": round(1000 * wall, 2),
                "cpu_ms": round(1000 * cpu, 2),
                "runs": runs,
                "threads": torch.get_num_threads(),
            }
        )
    return rows
