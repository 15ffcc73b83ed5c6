"""Benchmark splat fitting on synthetic scenes (CPU by default).

    python scripts/bench_splats.py                # both scenes, prints a Markdown table
    python scripts/bench_splats.py --quick        # fewer steps (smoke run)

Scenes are made here, offline: a textured box room (plus a sphere in front, for a depth edge) seen from the
project's camera paths; each frame's colours and depths are exact, its fill_mask is what earlier frames did not
see, and the cloud is lifted from the filled pixels (as the grow loop does). Targets from the issue, on 2 cores:
``stage`` @256×192 ≥ 4 it/s; ``360`` with 300 iterations ≤ 3 min.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from dataclasses import dataclass

import torch

from evaluation.splat_scenes import synthetic_room
from pipeline.splats import SplatConfig, fit_splats


@dataclass
class BenchRow:
    scene: str
    views: int
    splats: int
    size: str
    iterations: int
    seconds: float
    iters_per_second: float
    cpu_seconds_per_iter: float  # process CPU time (all threads) / iterations: less sensitive to a busy machine
    final_psnr_db: float
    peak_rss_mib: float
    threads: int


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def bench(mode: str, iterations: int, height: int = 192, width: int = 256, rasterizer: str = "torch") -> BenchRow:
    frames, cloud = synthetic_room(mode, height, width)
    config = SplatConfig(iterations=iterations, rasterizer=rasterizer)
    cpu_start = time.process_time()
    result = fit_splats(frames, cloud, config)
    cpu = time.process_time() - cpu_start
    return BenchRow(
        scene=mode,
        views=len(frames),
        splats=len(result.splats),
        size=f"{width}x{height}",
        iterations=iterations,
        seconds=round(result.seconds, 2),
        iters_per_second=round(iterations / max(result.seconds, 1e-9), 2),
        cpu_seconds_per_iter=round(cpu / max(iterations, 1), 3),
        final_psnr_db=round(sum(result.psnr) / len(result.psnr), 2),
        peak_rss_mib=round(_peak_rss_mib(), 1),
        threads=torch.get_num_threads(),
    )


def benchmark_rows(quick: bool = False, rasterizer: str = "torch") -> list[dict]:
    """The benchmark as rows of plain values (for tables, CI logs or JSON)."""
    stage_iters, ring_iters = (10, 20) if quick else (60, 300)
    rows = []
    for mode, iterations in (("stage", stage_iters), ("360", ring_iters)):
        rows.append(vars(bench(mode, iterations, rasterizer=rasterizer)))
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few iterations (smoke run)")
    parser.add_argument("--rasterizer", default="torch", choices=("torch", "gsplat", "auto"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = benchmark_rows(args.quick, args.rasterizer)
    keys = list(rows[0])
    load = os.getloadavg()[0]
    print(
        f"<!-- cpu count {os.cpu_count()}, threads {torch.get_num_threads()}, load {load:.1f}, "
        f"torch {torch.__version__} -->"
    )
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.1f} s", file=sys.stderr)
