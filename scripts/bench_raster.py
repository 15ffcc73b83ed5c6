"""Benchmark the numba Gaussian rasteriser against the pure-torch one (CPU) and print markdown tables.

Run from the repository root::

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_raster.py   # a few minutes on 2 cores
    python scripts/bench_raster.py --quick      # 10k and 100k splats only, no threading-layer table

What is measured, all in one run so that the figures are ratios taken under the same conditions:

* ns of CPU per splat-pixel pair, forward and backward, numba vs torch. CPU time is the process's (all threads);
  a pair is a (splat, pixel) pair that is composited (alpha >= 1/255, before early termination), counted by the
  torch backend's binning, so both backends share the denominator.
* fit-like iterations per second (forward + an L2 loss + backward to every splat parameter) at 10k / 100k / 400k
  splats, 256×192, quiet and with one competing CPU-bound process (``python -c "while True: pass"``).
* numba's threading layers (workqueue, omp; tbb when installed), each in a child process, quiet and loaded.
* with ``--stages``: where a numba fit iteration's CPU goes (projection, SH colours, binning, forward kernel,
  backward kernel + per-Gaussian gather, projection backward), ms per call, per splat count.

The scene: splats on a smooth surface 3-6 units in front of the camera, centres at random pixels, random
orientation and anisotropy, opacity 0.6-0.95, sized so that each pixel is covered by about the same number of
splats at every count (as the pipeline's initialisation does after thinning).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from core.cameras import Camera, intrinsics, look_at
from renderers import gaussians_numba
from renderers.gaussians import RasterSettings, TorchGaussianRasterizer, gaussian_colors
from renderers.gaussians_numba import NumbaGaussianRasterizer, available_cpus

HEIGHT, WIDTH = 192, 256  # the fit resolution the goal is stated at
SPLAT_COUNTS = (10_000, 100_000, 400_000)
SPLAT_SIZE = 0.5
"""Splat standard deviation in units of the mean spacing between splat centres on screen: with the eps2d
low-pass filter this gives about 25-30 composited splats per pixel at 100k, what the issue measured on real
scenes after thinning (the count per pixel is printed)."""
SH_DEGREE = 0  # the pipeline's default (SplatInitConfig.sh_degree)
MIN_SECONDS = 2.0  # per measurement: repeat until this much wall time has passed ...
MIN_REPEATS = 3  # ... and at least this many times
TORCH_MAX_SECONDS = 6.0  # the torch backend is slow at 400k: fewer repeats there
GOAL_IT_PER_S = 25.0  # issue 10, 100k splats at 256×192 on 2 cores
GOAL_NS_PER_PAIR = 40.0


def make_scene(count: int, seed: int = 0) -> tuple[list[Tensor], Camera]:
    """Splat parameters (means, quats, scales, opacities, SH colours) and the camera, float32."""
    g = torch.Generator().manual_seed(seed)
    K = intrinsics(HEIGHT, WIDTH, 60.0)
    camera = Camera(K, look_at(torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])), HEIGHT, WIDTH)
    uv = torch.rand(count, 2, generator=g) * torch.tensor([float(WIDTH), float(HEIGHT)])
    x = (uv[:, 0] - K[0, 2]) / K[0, 0]
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    depth = 4.5 + 1.0 * torch.sin(3 * x) * torch.cos(2 * y) + 0.5 * y  # a smooth, tilted, wavy surface
    means = torch.stack([x * depth, y * depth, depth], dim=-1)
    spacing_px = math.sqrt(HEIGHT * WIDTH / count)
    sigma = SPLAT_SIZE * spacing_px * depth / K[0, 0]  # [N] world units
    scales = sigma[:, None] * (0.5 + torch.rand(count, 3, generator=g))  # anisotropic
    quats = torch.randn(count, 4, generator=g)
    opacities = 0.6 + 0.35 * torch.rand(count, generator=g)
    colors = torch.randn(count, (SH_DEGREE + 1) ** 2, 3, generator=g) * 0.5
    return [means, quats, scales, opacities, colors], camera


@dataclass
class Timing:
    forward_cpu_s: float  # per call
    backward_cpu_s: float
    iteration_wall_s: float  # forward + loss + backward, median
    best_wall_s: float  # fastest iteration: least disturbed by other processes on a shared machine


def measure(rasterizer, params: list[Tensor], camera: Camera, target: Tensor, max_seconds: float) -> Timing:
    """Median per-call times of forward, backward (process CPU) and forward + backward (wall)."""
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    rasterizer.render(*leaves, camera, SH_DEGREE).rgb.sum().backward()  # warm-up: compile or load kernels, caches
    fwd, bwd, wall = [], [], []
    start = time.perf_counter()
    repeats = 0
    while repeats < MIN_REPEATS or (time.perf_counter() - start < min(MIN_SECONDS, max_seconds)):
        w0, c0 = time.perf_counter(), time.process_time()
        out = rasterizer.render(*leaves, camera, SH_DEGREE)
        loss = ((out.rgb - target) ** 2).mean() + 0.01 * out.alpha.mean()
        c1 = time.process_time()
        loss.backward()
        c2, w2 = time.process_time(), time.perf_counter()
        fwd.append(c1 - c0)
        bwd.append(c2 - c1)
        wall.append(w2 - w0)
        for p in leaves:
            p.grad = None
        repeats += 1
        if time.perf_counter() - start > max_seconds and repeats >= 1:
            break
    return Timing(statistics.median(fwd), statistics.median(bwd), statistics.median(wall), min(wall))


def composited_pairs(params: list[Tensor], camera: Camera) -> int:
    """(splat, pixel) pairs that are composited, from the torch backend's binning (no per-pixel cap)."""
    with torch.no_grad():
        out = TorchGaussianRasterizer(RasterSettings(max_per_pixel=100_000, max_radius_px=64)).render(
            *params, camera, SH_DEGREE
        )
    return int(out.cache.hits.gauss.numel())


class BusyProcess:
    """One competing CPU-bound process for the duration of a ``with`` block."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def run_cases(counts: tuple[int, ...], with_torch: bool) -> list[dict]:
    rows = []
    for count in counts:
        params, camera = make_scene(count)
        target = torch.rand(HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(1))
        pairs = composited_pairs(params, camera)
        numba_r, torch_r = NumbaGaussianRasterizer(), TorchGaussianRasterizer()
        row = {"count": count, "pairs": pairs}
        for load in ("quiet", "loaded"):
            with BusyProcess() if load == "loaded" else contextlib.nullcontext():
                torch.set_num_threads(1)  # numba backend: only SH colours and the loss run in torch; one thread
                row[f"numba_{load}"] = measure(numba_r, params, camera, target, 30.0)
                if with_torch:
                    torch.set_num_threads(available_cpus())  # torch backend at its best thread count
                    row[f"torch_{load}"] = measure(torch_r, params, camera, target, TORCH_MAX_SECONDS)
        rows.append(row)
        print(f"  measured {count} splats", file=sys.stderr)
    return rows


def stage_row(count: int, repeats: int = 7) -> str:
    """Median process CPU (ms) of each stage of one numba fit iteration, as a markdown table row.

    Calls the backend's stages one by one (its internal classes), the way NumbaGaussianRasterizer.render and
    autograd do, so the sum is close to but not exactly a fit iteration (no loss, no autograd bookkeeping)."""
    params, camera = make_scene(count)
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    view, intr = gaussians_numba._camera_arrays(camera)
    settings = RasterSettings()
    grad_image = torch.randn(HEIGHT, WIDTH, 5, generator=torch.Generator().manual_seed(2)).numpy()
    times: dict[str, list[float]] = {}

    def timed(name, fn, *args):
        start = time.process_time()
        result = fn(*args)
        times.setdefault(name, []).append(time.process_time() - start)
        return result

    for _ in range(repeats + 1):  # the first round warms up (kernel cache load, allocations)
        geometry, valid = timed(
            "projection", gaussians_numba._Project.apply, *leaves[:3], view, intr, settings.eps2d, settings.near
        )
        rgb = timed("colours", gaussian_colors, leaves[0], leaves[4], camera.cam_to_world[:3, 3], SH_DEGREE)
        with torch.no_grad():
            packed = torch.cat([geometry[:, :5], leaves[3][:, None], rgb, geometry[:, 5:6]], dim=-1).float()
        bins = timed("binning", gaussians_numba._TileBins, packed.numpy(), valid.numpy(), HEIGHT, WIDTH)
        _, final_t, last = timed("forward kernel", bins.forward)
        timed("backward kernel + gather", bins.backward, grad_image, final_t, last)
        timed("projection backward", torch.autograd.grad, geometry, leaves[:3], torch.ones_like(geometry))
    ms = {name: 1e3 * statistics.median(values[1:]) for name, values in times.items()}
    cells = " | ".join(f"{value:.1f}" for value in ms.values())
    return f"| {count // 1000}k | {bins.entries.shape[0]} | {cells} | {sum(ms.values()):.1f} |"


def layer_child(count: int) -> None:
    """In a child process whose NUMBA_THREADING_LAYER is set: numba it/s quiet and loaded, as JSON on stdout."""
    import numba  # noqa: PLC0415 - only this child mode needs it directly

    params, camera = make_scene(count)
    target = torch.rand(HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(1))
    torch.set_num_threads(1)
    rasterizer = NumbaGaussianRasterizer()
    quiet = measure(rasterizer, params, camera, target, 30.0).iteration_wall_s
    with BusyProcess():
        loaded = measure(rasterizer, params, camera, target, 30.0).iteration_wall_s
    print(json.dumps({"layer": numba.threading_layer(), "quiet": quiet, "loaded": loaded}))


def layer_table(count: int) -> list[str]:
    lines = [
        f"| numba threading layer ({count // 1000}k splats) | it/s quiet | it/s loaded | loaded / quiet |",
        "|---|---|---|---|",
    ]
    for layer in ("workqueue", "omp", "tbb"):
        env = dict(os.environ, NUMBA_THREADING_LAYER=layer, OMP_WAIT_POLICY="PASSIVE")  # omp: no spin-waiting
        proc = subprocess.run(
            [sys.executable, __file__, "--layer-child", str(count)], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            lines.append(f"| {layer} | unavailable | | |")
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        q, l_ = 1 / result["quiet"], 1 / result["loaded"]
        lines.append(f"| {layer} | {q:.1f} | {l_:.1f} | {l_ / q:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k only; skip the threading-layer table")
    parser.add_argument("--no-torch", action="store_true", help="skip the (slow) torch backend")
    parser.add_argument("--stages", action="store_true", help="also print the numba backend's CPU per stage")
    parser.add_argument("--layer-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.layer_child:
        layer_child(args.layer_child)
        return

    # 0. Compile (or load from numba's cache) outside the measurements.
    params, camera = make_scene(1000)
    start = time.perf_counter()
    leaves = [p.clone().requires_grad_(True) for p in params]
    NumbaGaussianRasterizer().render(*leaves, camera, SH_DEGREE).rgb.sum().backward()
    warmup = time.perf_counter() - start

    counts = SPLAT_COUNTS[:2] if args.quick else SPLAT_COUNTS
    load_before = os.getloadavg()[0]  # other processes on the machine: the loaded/quiet ratio assumes none
    rows = run_cases(counts, with_torch=not args.no_torch)

    import numba  # noqa: PLC0415 - after the first launch, so the layer in use is known

    print(
        f"CPUs available: {available_cpus()}, numba threads: {numba.get_num_threads()}, "
        f"layer: {numba.threading_layer()}, torch threads (torch backend): {available_cpus()}, "
        f"first render incl. compile/cache load: {warmup:.1f} s, image {WIDTH}×{HEIGHT}, SH degree {SH_DEGREE}, "
        f"load average before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}\n"
    )
    print("| splats | pairs/px | backend | ns CPU/pair fwd | ns CPU/pair bwd | ns CPU/pair total | it/s quiet | "
          "it/s loaded | loaded / quiet | best it/s quiet |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        pairs = row["pairs"]
        for backend in ("numba", "torch"):
            if f"{backend}_quiet" not in row:
                continue
            quiet, loaded = row[f"{backend}_quiet"], row[f"{backend}_loaded"]
            fwd, bwd = 1e9 * quiet.forward_cpu_s / pairs, 1e9 * quiet.backward_cpu_s / pairs
            q, l_ = 1 / quiet.iteration_wall_s, 1 / loaded.iteration_wall_s
            print(
                f"| {row['count'] // 1000}k | {pairs / (HEIGHT * WIDTH):.1f} | {backend} | {fwd:.0f} | {bwd:.0f} | "
                f"{fwd + bwd:.0f} | {q:.1f} | {l_:.1f} | {l_ / q:.2f} | {1 / quiet.best_wall_s:.1f} |"
            )
        if "torch_quiet" in row:
            speedup = row["torch_quiet"].iteration_wall_s / row["numba_quiet"].iteration_wall_s
            print(f"| {row['count'] // 1000}k | | numba / torch it/s | | | | {speedup:.1f}× | | | |")
    print(f"\nGoal (issue 10): >= {GOAL_IT_PER_S:.0f} it/s at 100k, <= {GOAL_NS_PER_PAIR:.0f} ns CPU per pair.\n")
    if args.stages:
        torch.set_num_threads(1)
        print("| splats | tile entries | ms CPU: projection | SH colours | binning | forward kernel | "
              "backward kernel + gather | projection backward | sum |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        for count in counts:
            print(stage_row(count))
        print()
    if not args.quick:
        print("\n".join(layer_table(100_000)))


if __name__ == "__main__":
    main()
