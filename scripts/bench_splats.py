"""Benchmark splat fitting on CPU and print markdown tables ready for docs/benchmarks.md.

    python scripts/bench_splats.py                      # every section (about 10 minutes on 2 cores)
    python scripts/bench_splats.py --section speed      # fit it/s at 10k / 100k / 400k splats, quiet and loaded
    python scripts/bench_splats.py --section threads    # torch threads 1 vs 2, wait policy, quiet and loaded
    python scripts/bench_splats.py --section quality    # PSNR of init-only vs fitted splats on the examples
    python scripts/bench_splats.py --section loss       # SSIM map forward + backward: kornia vs ours
    python scripts/bench_splats.py --section quality --mode single   # the same on another camera path
    python scripts/bench_splats.py --quick              # fewer steps and scenes (smoke run)

Every figure of a table is taken in the same run, so compare ratios within a table: on a shared machine absolute
seconds move with the neighbours' load. "Loaded" means one competing CPU-bound process
(:func:`evaluation.cpu_load.competing_processes`).

* speed: full fit iterations (render, L1 + D-SSIM + depth loss, backward, Adam, strategy) per second at 256×192
  on the synthetic room (:mod:`evaluation.splat_scenes`), lifted at a resolution that gives enough points and
  thinned to 10k / 100k / 400k splats as the job does, per rasteriser backend (torch; numba when installed).
* threads: the same fit at 100k splats in child processes: 1 vs 2 torch threads, libgomp's default wait policy vs
  OMP_WAIT_POLICY=PASSIVE (see :mod:`core.threads`).
* quality: the examples (``examples/<name>`` with depth.png, offline profile, stage path at 512×384, fit at 256 px
  like the job): PSNR on the training views (the frames) and on held-out views against the procedural world's
  exact render, for the point cloud (z-buffer), the initial splats with their own colours, the initial splats
  after the colour solve (iteration 0 of the fit), and the default fit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace

from core.threads import configure_threads

THREADS = configure_threads()  # before torch is imported, so the passive wait policy reaches libgomp

import torch  # noqa: E402

from core.cameras import Camera  # noqa: E402
from evaluation.cpu_load import competing_processes  # noqa: E402
from evaluation.splat_scenes import FIT_SIZE, WARMUP_STEPS, example_scene, fit_rate  # noqa: E402
from pipeline.config import FIT_MAX_SIDE  # noqa: E402
from pipeline.job import MAX_FIT_SPLATS, thin_cloud  # noqa: E402
from pipeline.splats import SplatConfig, fit_splats, init_from_cloud, masked_psnr  # noqa: E402
from pipeline.splats.views import frame_target  # noqa: E402
from renderers.points import TorchPointRenderer  # noqa: E402

SPLAT_COUNTS = (10_000, 100_000, 400_000)
EXAMPLES = ("room", "street", "landscape")
HOLDOUT_YAWS = (-12.5, 12.5, 37.5)
"""Held-out views for the quality table: between the stage path's views (0°, ±25°) and just past its end, as yaw
offsets from view 0 with a 3° pitch, never trained on."""


def _backends() -> list[str]:
    backends = ["torch"]
    try:
        from renderers.gaussians import get_gaussian_rasterizer  # noqa: PLC0415

        get_gaussian_rasterizer("numba")
        backends.insert(0, "numba")
    except (ImportError, ValueError):
        pass
    return backends


def speed_table(quick: bool) -> list[str]:
    steps = 4 if quick else 12
    counts = SPLAT_COUNTS[:2] if quick else SPLAT_COUNTS
    lines = [
        f"Fit iterations per second at {FIT_SIZE[0]}×{FIT_SIZE[1]} (stage room, 3 views, {steps} steps after "
        f"{WARMUP_STEPS} warm-up), {torch.get_num_threads()} threads; loaded = one competing busy process.",
        "",
        "| splats | backend | it/s quiet | it/s loaded | slowdown | CPU ms/it quiet |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for count in counts:
        for backend in _backends():
            quiet = fit_rate(count, backend, steps)
            with competing_processes(1):
                loaded = fit_rate(count, backend, steps)
            lines.append(
                f"| {count:,} | {backend} | {quiet['it_per_s']:.2f} | {loaded['it_per_s']:.2f} | "
                f"{quiet['it_per_s'] / loaded['it_per_s']:.2f}× | {quiet['cpu_ms_per_it']:.0f} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    return lines


THREAD_CASES = (
    ("1 thread", 1, None),
    ("2 threads, libgomp default wait policy", 2, ""),
    ("2 threads, OMP_WAIT_POLICY=PASSIVE", 2, "PASSIVE"),
)


THREAD_CHILD = (
    "import json, torch; torch.set_num_threads({threads}); from evaluation.splat_scenes import fit_rate; "
    "print('RESULT ' + json.dumps(fit_rate(100_000, 'torch', {steps})))"
)
"""The thread cases run in fresh interpreters: libgomp reads OMP_WAIT_POLICY once, when torch is imported."""


def threads_table(quick: bool) -> list[str]:
    steps = 3 if quick else 8
    lines = [
        f"Torch-rasteriser fit at 100k splats, {FIT_SIZE[0]}×{FIT_SIZE[1]}, seconds per iteration (child processes; "
        f"{os.cpu_count()} CPUs). Loaded = one competing busy process.",
        "",
        "| configuration | s/it quiet | s/it loaded | slowdown |",
        "|---|---:|---:|---:|",
    ]
    for label, threads, policy in THREAD_CASES:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
        if policy:
            env["OMP_WAIT_POLICY"] = policy
        cmd = [sys.executable, "-c", THREAD_CHILD.format(threads=threads, steps=steps)]
        seconds = []
        for load in (0, 1):
            with competing_processes(load):
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode != 0 or not results:
                raise SystemExit(f"thread case {label!r} failed:\n{done.stderr[-2000:]}")
            seconds.append(1 / json.loads(results[-1][len("RESULT ") :])["it_per_s"])
        lines.append(f"| {label} | {seconds[0]:.2f} | {seconds[1]:.2f} | {seconds[1] / seconds[0]:.2f}× |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def _seen_by_photo(depth, camera: Camera, photo: Camera):  # [H, W] -> [H, W] bool
    """Pixels of ``camera`` whose surface (exact ``depth``) lies inside the photo's view: the only part of a held-out
    view with a ground truth the pipeline could know (the rest was outpainted)."""
    from core.geometry import project, unproject  # noqa: PLC0415

    uv, z = project(unproject(depth, camera.K, camera.cam_to_world).reshape(-1, 3), photo.K, photo.world_to_cam)
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < photo.width) & (uv[:, 1] >= 0) & (uv[:, 1] < photo.height)
    return inside.reshape(depth.shape)


def _holdout_cameras(frames) -> list[Camera]:
    from core.cameras import pose, rotation_yaw_pitch  # noqa: PLC0415

    base = frames[0].camera
    c2w0 = base.cam_to_world.double()
    cameras = []
    for yaw in HOLDOUT_YAWS:
        turn = rotation_yaw_pitch(yaw, 3.0) @ c2w0[:3, :3]
        cameras.append(Camera(base.K, pose(turn, c2w0[:3, 3]), base.height, base.width))
    return cameras


def quality_rows(name: str, mode: str, quick: bool) -> dict:
    """PSNR (dB) of the point cloud, initial and fitted splats on the training and held-out views of one example."""
    from evaluation.worlds import make_world  # noqa: PLC0415

    size = (256, 192) if quick else (512, 384)
    frames, cloud = example_scene(name, mode, size)
    cloud = thin_cloud(cloud, MAX_FIT_SPLATS)
    config = SplatConfig(fit_max_side=FIT_MAX_SIDE, seed=0)
    targets = [frame_target(f, i, "all", 0, FIT_MAX_SIDE) for i, f in enumerate(frames)]
    world = make_world(name)
    held_cameras = [c.scaled(targets[0].rgb.shape[0], targets[0].rgb.shape[1]) for c in _holdout_cameras(frames)]
    views = [world.render(c, supersample=2) for c in held_cameras]
    truths = [v.rgb for v in views]
    seen = [_seen_by_photo(v.depth, c, targets[0].camera) for v, c in zip(views, held_cameras)]
    points = TorchPointRenderer()

    def scores(render) -> tuple[float, float]:
        train = sum(masked_psnr(render(t.camera), t.rgb) for t in targets) / len(targets)
        held = sum(masked_psnr(render(c), truth, m) for c, truth, m in zip(held_cameras, truths, seen)) / len(seen)
        return train, held

    row = {"example": name, "mode": mode, "views": len(frames), "splats": len(cloud)}
    row["points"] = scores(lambda c: points.render(cloud.points, cloud.colors, c, cloud.radii).rgb)
    own = init_from_cloud(cloud, config.init)
    row["init_own_colours"] = scores(lambda c: own.render(c, "auto").rgb)
    solved = fit_splats(frames, cloud, replace(config, iterations=0)).splats  # iteration 0: init + colour solve
    row["init_solved"] = scores(lambda c: solved.render(c, "auto").rgb)
    start = time.perf_counter()
    fitted = fit_splats(frames, cloud, config)
    row["fit_seconds"] = time.perf_counter() - start
    row["fit_iterations"] = fitted.iterations
    row["best_step"] = fitted.best_step
    row["fitted"] = scores(lambda c: fitted.splats.render(c, "auto").rgb)
    return row


def quality_table(quick: bool, mode: str = "stage") -> list[str]:
    lines = [
        f"Path: {mode}.",
        "",
        "PSNR (dB), training views (the frames, at the fit's 256 px) / held-out views (exact world render at yaw "
        f"{', '.join(f'{y:+g}°' for y in HOLDOUT_YAWS)}, pitch 3°, over the pixels the photo saw: the rest was "
        "outpainted and has no truth). Init = iteration 0 of the fit (merge to the fit resolution + colour solve).",
        "",
        "| example | cloud points (thinned) | point cloud | init, own colours | init, solved colours | default fit | "
        "fit steps (best) | fit s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in EXAMPLES[:1] if quick else EXAMPLES:
        r = quality_rows(name, mode, quick)

        def cell(pair) -> str:
            return f"{pair[0]:.1f} / {pair[1]:.1f}"

        lines.append(
            f"| {name} | {r['splats']:,} | {cell(r['points'])} | {cell(r['init_own_colours'])} | "
            f"{cell(r['init_solved'])} | {cell(r['fitted'])} | {r['fit_iterations']} ({r['best_step']}) | "
            f"{r['fit_seconds']:.1f} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def _loss_ms(function, image: torch.Tensor, repeats: int) -> float:
    """Median ms of forward + backward of ``function(image).sum()`` (after one warm-up call)."""
    times = []
    for _ in range(repeats + 1):
        x = image.clone().requires_grad_()
        start = time.perf_counter()
        function(x).sum().backward()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times[1:])[len(times[1:]) // 2]


def loss_table(quick: bool) -> list[str]:
    """SSIM map forward + backward: kornia.metrics.ssim vs ours (kept target statistics, blur as matrix products)."""
    import kornia.metrics  # noqa: PLC0415 - the reference implementation, only measured here

    from pipeline.splats.losses import SSIM_WINDOW, SsimReference  # noqa: PLC0415

    repeats = 5 if quick else 15
    lines = [
        "SSIM map, forward + backward, ms (median; kornia and ours alternate in one run, same thread settings).",
        "",
        "| size | kornia.metrics.ssim | ours (SsimReference.map) | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for height, width in ((96, 128), (192, 256), (384, 512)):
        generator = torch.Generator().manual_seed(0)
        target = torch.rand(height, width, 3, generator=generator)
        render = (target + 0.1 * torch.randn(height, width, 3, generator=generator)).clamp(0, 1)
        reference = SsimReference(target)

        def kornia_map(x, kornia_target=target.permute(2, 0, 1)[None]):
            return kornia.metrics.ssim(x.permute(2, 0, 1)[None], kornia_target, SSIM_WINDOW)

        ours_ms, kornia_ms = [], []
        for _ in range(2):  # alternate so that a change in load hits both
            kornia_ms.append(_loss_ms(kornia_map, render, repeats))
            ours_ms.append(_loss_ms(reference.map, render, repeats))
        k, o = min(kornia_ms), min(ours_ms)
        lines.append(f"| {width}×{height} | {k:.1f} | {o:.1f} | {k / o:.1f}× |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", choices=("speed", "threads", "quality", "loss", "all"), default="all")
    parser.add_argument("--quick", action="store_true", help="fewer steps and scenes (smoke run)")
    parser.add_argument("--mode", choices=("single", "stage", "360"), default="stage", help="quality: camera path")
    args = parser.parse_args(argv)
    settings = THREADS
    sections = ("speed", "threads", "quality", "loss") if args.section == "all" else (args.section,)
    print(
        f"<!-- bench_splats: {settings.cpus} CPUs available, {settings.torch_threads} torch threads, wait policy "
        f"{settings.wait_policy}, load {os.getloadavg()[0]:.1f} at start, torch {torch.__version__} -->\n"
    )
    builders = {
        "speed": speed_table,
        "threads": threads_table,
        "quality": lambda quick: quality_table(quick, args.mode),
        "loss": loss_table,
    }
    for section in sections:
        start = time.perf_counter()
        print(f"### {section}\n")
        print("\n".join(builders[section](args.quick)))
        print(f"\n<!-- {section}: {time.perf_counter() - start:.0f} s, load {os.getloadavg()[0]:.1f} after -->\n")


if __name__ == "__main__":
    main()
