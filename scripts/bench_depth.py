"""Time depth-edge snapping and depth alignment at the working size.

Usage (from the repository root)::

    python -m scripts.bench_depth [--size 512] [--runs 5] [--threads N]

Prints one line per case: the median wall time of ``--runs`` runs after one warm-up run. The cases and the
synthetic view are in :mod:`evaluation.timing`; the overall benchmark imports :func:`benchmark_rows`.
"""

from __future__ import annotations

import argparse

import torch

from evaluation.timing import depth_stage_rows as benchmark_rows

__all__ = ["benchmark_rows", "main"]


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
