"""Time depth-edge snapping and depth alignment at the working size.

Usage (from the repository root)::

    python -m scripts.bench_depth [--size 512] [--runs 5] [--threads N]

Prints one line per case: the median wall time of ``--runs`` runs after one warm-up run. The lead's overall
benchmark imports :func:`benchmark_rows`.
"""

from __future__ import annotations

import argparse
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


def _scene(size: int, device: torch.device | str = "cpu") -> Tensor:  # [size, size] z-depth with soft edges
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


def _median_seconds(run: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall time and median CPU time of this process (the latter is steadier on a shared machine)."""
    run()  # warm-up (allocations, lazy imports)
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def benchmark_rows(size: int = 512, runs: int = 5) -> list[dict]:
    """Median timings of the depth stages on a synthetic ``size`` x ``size`` view (CPU).

    Returns:
        One dict per case: ``{"name", "shape", "median_ms", "cpu_ms", "runs", "threads"}`` (``cpu_ms``: median
        CPU time of this process, summed over threads).
    """
    if size < 16 or runs < 1:
        raise ValueError(f"size must be >= 16 and runs >= 1, got size={size}, runs={runs}")
    truth = _scene(size)
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
        wall, cpu = _median_seconds(run, runs)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="square view side in pixels")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for row in benchmark_rows(args.size, args.runs):
        print(
            f"{row['name']:<45} {row['shape']:>9}  {row['median_ms']:8.1f} ms wall  {row['cpu_ms']:8.1f} ms cpu  "
            f"(median of {row['runs']}, {row['threads']} threads)"
        )


if __name__ == "__main__":
    main()
