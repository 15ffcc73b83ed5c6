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

from core.cameras import Camera, make_cameras
from core.geometry import project, ray_directions
from core.types import Frame, PointCloud
from pipeline.splats import SplatConfig, fit_splats

ROOM_HALF_EXTENT = (3.0, 1.5, 4.0)
"""Half sizes (x, y, z) of the box room around the first camera, in metres."""
SPHERE_CENTER = (0.6, 0.3, 2.2)
SPHERE_RADIUS = 0.5
"""A sphere in front of the first camera, so the scene has a depth discontinuity."""
TEXTURE_FREQUENCY = 4.0
"""Radians per metre of the procedural texture: a few stripes per wall, resolvable at 256 px."""


def texture(points: torch.Tensor) -> torch.Tensor:  # [..., 3] -> [..., 3] in [0, 1]
    """A smooth, view-independent colour field, so every view of the synthetic scene is consistent."""
    p = points * TEXTURE_FREQUENCY
    r = 0.5 + 0.4 * torch.sin(p[..., 0] + 0.5 * p[..., 1])
    g = 0.5 + 0.4 * torch.sin(p[..., 1] * 1.3 + p[..., 2] * 0.7 + 1.0)
    b = 0.5 + 0.4 * torch.sin(p[..., 2] * 1.1 - p[..., 0] * 0.6 + 2.0)
    return torch.stack([r, g, b], dim=-1)


def _room_depth(camera: Camera) -> torch.Tensor:  # [H, W] z-depth of the first surface hit
    dirs_cam = ray_directions(camera.height, camera.width, camera.K.float())  # z = 1, so ray t == z-depth
    c2w = camera.cam_to_world.float()
    dirs = dirs_cam @ c2w[:3, :3].T
    origin = c2w[:3, 3]
    half = torch.tensor(ROOM_HALF_EXTENT)
    safe = torch.where(dirs.abs() > 1e-9, dirs, torch.full_like(dirs, 1e-9))
    t_box = ((torch.sign(safe) * half - origin) / safe).amin(dim=-1)  # exit distance from inside the box
    oc = origin - torch.tensor(SPHERE_CENTER)
    a = (dirs * dirs).sum(-1)
    b = 2 * (dirs * oc).sum(-1)
    c = (oc * oc).sum() - SPHERE_RADIUS**2
    disc = b * b - 4 * a * c
    t_sphere = (-b - torch.sqrt(disc.clamp_min(0))) / (2 * a)
    hit = (disc > 0) & (t_sphere > 0)
    return torch.where(hit, torch.minimum(t_sphere, t_box), t_box)


def render_room(camera: Camera) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # [H, W, 3], [H, W], [H, W, 3]
    """Exact colour, z-depth and world point of every pixel of the synthetic room seen from ``camera``."""
    depth = _room_depth(camera)
    rays = ray_directions(camera.height, camera.width, camera.K.float()) * depth[..., None]
    world = rays @ camera.cam_to_world[:3, :3].float().T + camera.cam_to_world[:3, 3].float()
    return texture(world), depth, world


def synthetic_room(mode: str = "stage", height: int = 192, width: int = 256) -> tuple[list[Frame], PointCloud]:
    """Frames along a camera path in the textured room, and the fused cloud the grow loop would build."""
    cameras = make_cameras(mode, (width, height))
    frames: list[Frame] = []
    clouds: list[PointCloud] = []
    for index, camera in enumerate(cameras):
        rgb, depth, world = render_room(camera)
        fill = torch.ones(height, width, dtype=torch.bool)
        flat = world.reshape(-1, 3)
        for earlier in frames:  # generated = not inside any earlier frame's image
            uv, z = project(flat, earlier.camera.K.float(), earlier.camera.world_to_cam.float())
            seen = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
            fill &= ~seen.reshape(height, width)
        frames.append(Frame(index, camera, rgb, depth, fill))
        radii = 0.5 * depth / float(camera.K[0, 0])  # half a pixel at the point's depth
        clouds.append(
            PointCloud(world[fill], rgb[fill], radii[fill], torch.full((int(fill.sum()),), index, dtype=torch.long))
        )
    cloud = clouds[0]
    for more in clouds[1:]:
        cloud = cloud.cat(more)
    return frames, cloud


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
