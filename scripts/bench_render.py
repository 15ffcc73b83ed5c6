"""Benchmark the point renderers on CPU and print a table.

Run from the repository root::

    python -m scripts.bench_render            # torch renderer + PyTorch3D CPU (about a minute on 2 cores)
    python -m scripts.bench_render --no-pytorch3d

The scene is a room seen from view 0 (back wall, side walls, floor, ceiling and a box), sampled at uniformly random
sub-pixel positions so that N points land on an H x W image, each with half a pixel's world radius as the
pipeline gives lifted points. It is rendered into the view turned by 25° (the second camera of the "stage"
path), the reprojection the grow loop does for every new view.

PyTorch3D's CPU point rasteriser is naive: for every pixel it tests every point, so its time grows as
points x pixels. It is measured at sizes that take a few seconds and extrapolated linearly in points x pixels
to 200k points @ 512²; the two measured sizes show how well that linear model holds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import Tensor

from core.cameras import Camera, make_cameras
from core.components import PointRenderer
from core.geometry import transform_points
from renderers import get_point_renderer

# Room walls in view 0's frame (OpenCV: x right, y down, z forward), in metres.
BACK_WALL_Z = 5.0
FLOOR_Y = 1.2
CEILING_Y = -1.5
SIDE_WALL_X = 2.5
BOX_Z = 2.5  # a box face in front of the back wall ...
BOX_UV = (0.3, 0.55, 0.6, 0.85)  # ... covering this part of the image (u0, v0, u1, v1 as fractions)

# The sizes the brief asks about, and the smaller PyTorch3D sizes that finish in seconds on CPU.
TORCH_CASES = ((200_000, 512, 512), (2_000_000, 512, 512))
PYTORCH3D_CASES = ((20_000, 128, 128), (20_000, 256, 256))
EXTRAPOLATE_TO = (200_000, 512, 512)
DESIGN_PYTORCH3D_S = 150.0  # DESIGN.md: PyTorch3D CPU at 200k points @ 512² on 2 cores


def room_cloud(num_points: int, height: int, width: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Camera]:
    """A room seen from view 0: points [N, 3], colours [N, 3], radii [N] and the turned camera to render into."""
    generator = torch.Generator().manual_seed(seed)
    view0, turned = make_cameras("stage", (width, height))[:2]
    K = view0.K
    uv = torch.rand(num_points, 2, generator=generator) * torch.tensor([float(width), float(height)])
    x = (uv[:, 0] - K[0, 2]) / K[0, 0]  # ray direction with z = 1
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    inf = torch.full_like(x, float("inf"))
    depth = torch.full_like(x, BACK_WALL_Z)
    depth = torch.minimum(depth, torch.where(y > 0, FLOOR_Y / y.clamp_min(1e-9), inf))
    depth = torch.minimum(depth, torch.where(y < 0, CEILING_Y / y.clamp_max(-1e-9), inf))
    depth = torch.minimum(depth, torch.where(x.abs() > 0, SIDE_WALL_X / x.abs().clamp_min(1e-9), inf))
    u0, v0, u1, v1 = BOX_UV
    in_box = (uv[:, 0] > u0 * width) & (uv[:, 0] < u1 * width) & (uv[:, 1] > v0 * height) & (uv[:, 1] < v1 * height)
    depth = torch.where(in_box, torch.full_like(depth, BOX_Z), depth)
    points = transform_points(view0.cam_to_world, torch.stack([x * depth, y * depth, depth], dim=1))
    colors = torch.rand(num_points, 3, generator=generator)
    radii = 0.5 * depth / K[0, 0]
    return points, colors, radii, turned


def time_render(
    renderer: PointRenderer, num_points: int, height: int, width: int, runs: int
) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of ``runs`` renders after one warm-up render."""
    points, colors, radii, camera = room_cloud(num_points, height, width)
    renderer.render(points, colors, camera, radii)
    wall, cpu = [], []
    for _ in range(runs):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        renderer.render(points, colors, camera, radii)
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def benchmark_rows(
    threads: int = 2, runs: int = 5, pytorch3d: bool = True, pytorch3d_runs: int = 1, single_thread: bool = True
) -> list[dict]:
    """Measure the renderers on CPU; one dict per table row.

    The torch renderer runs on ``threads`` threads, then (``single_thread``) on one: on a machine shared with
    other jobs, a multi-threaded run waits for its slowest thread, and the one-thread row shows the work itself.

    Each row has ``renderer``, ``points``, ``size`` ("HxW"), ``seconds`` (median wall clock), ``best_seconds``
    (fastest run: the least disturbed by other processes on a shared machine), ``cpu_seconds`` (median process
    CPU time, all threads: the work done, whatever else runs), ``runs``, ``how`` ("measured"
    or "extrapolated") and ``note``. The extrapolated PyTorch3D row also carries ``speedup`` (its seconds over
    the torch renderer's median at the same size, keyed by the torch row's note, e.g. "2 threads") and
    ``speedup_vs_design`` (DESIGN.md's seconds over the same).
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = []
        torch_renderer = get_point_renderer("torch")
        for count in (threads, 1) if single_thread and threads != 1 else (threads,):
            torch.set_num_threads(count)
            for num_points, height, width in TORCH_CASES:
                wall, cpu = time_render(torch_renderer, num_points, height, width, runs)
                note = f"{count} thread{'s' if count > 1 else ''}"
                rows.append(_row("torch", num_points, height, width, wall, cpu, "measured", note))
        torch.set_num_threads(threads)
        if not pytorch3d:
            return rows
        p3d_renderer = get_point_renderer("pytorch3d")
        measured = []
        for num_points, height, width in PYTORCH3D_CASES:
            wall, cpu = time_render(p3d_renderer, num_points, height, width, pytorch3d_runs)
            measured.append((num_points * height * width, statistics.median(wall)))
            rows.append(_row("pytorch3d", num_points, height, width, wall, cpu, "measured", "naive CPU kernel"))
        # Linear in points x pixels, from the larger measured case (least start-up overhead per unit of work).
        work, seconds = measured[-1]
        num_points, height, width = EXTRAPOLATE_TO
        predicted = seconds * (num_points * height * width) / work
        per_work = [s / w for w, s in measured]
        note = (
            f"{seconds:.2f} s x {num_points * height * width / work:.0f} (points x pixels); "
            f"s per unit of work varies {max(per_work) / min(per_work):.2f}x between measured sizes; "
            f"DESIGN.md measured {DESIGN_PYTORCH3D_S:.0f} s"
        )
        row = _row("pytorch3d", num_points, height, width, [predicted], [float("nan")], "extrapolated", note)
        row["runs"] = 0
        same_size = [r for r in rows if r["renderer"] == "torch" and r["points"] == num_points]
        row["speedup"] = {r["note"]: predicted / r["seconds"] for r in same_size}  # per torch thread count
        row["speedup_vs_design"] = {r["note"]: DESIGN_PYTORCH3D_S / r["seconds"] for r in same_size}
        rows.append(row)
        return rows
    finally:
        torch.set_num_threads(previous_threads)


def _row(
    renderer: str, points: int, height: int, width: int, wall: list[float], cpu: list[float], how: str, note: str
) -> dict:
    return {
        "renderer": renderer,
        "points": points,
        "size": f"{height}x{width}",
        "seconds": statistics.median(wall),
        "best_seconds": min(wall),
        "cpu_seconds": statistics.median(cpu),
        "runs": len(wall),
        "how": how,
        "note": note,
    }


def format_table(rows: list[dict]) -> str:
    """Rows as a Markdown table."""
    header = "| renderer | points | size | median s | best s | CPU s | runs | how | torch is faster by | note |"
    lines = [header, "|---" * 10 + "|"]
    for row in rows:
        speedup = ""
        if "speedup" in row:
            ours = ", ".join(f"{ratio:.0f}x ({label})" for label, ratio in row["speedup"].items())
            design = ", ".join(f"{ratio:.0f}x" for ratio in row["speedup_vs_design"].values())
            speedup = f"{ours}; from DESIGN's {DESIGN_PYTORCH3D_S:.0f} s: {design}"
        lines.append(
            f"| {row['renderer']} | {row['points']:,} | {row['size']} | {row['seconds']:.3f} | "
            f"{row['best_seconds']:.3f} | {row['cpu_seconds']:.3f} | {row['runs']} | {row['how']} | {speedup} | "
            f"{row['note']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per torch case; the median is reported")
    parser.add_argument("--no-pytorch3d", action="store_true", help="skip the slow PyTorch3D CPU rows")
    parser.add_argument("--no-single-thread", action="store_true", help="skip the one-thread torch rows")
    args = parser.parse_args()
    rows = benchmark_rows(
        threads=args.threads,
        runs=args.runs,
        pytorch3d=not args.no_pytorch3d,
        single_thread=not args.no_single_thread,
    )
    print(format_table(rows))


if __name__ == "__main__":
    main()
