"""How long a job will take, shown on the page before Generate, and the ZeroGPU time to ask for.

Offline profile (CPU): the stage costs below were measured on this project's development machine (2 shared
CPU cores, one torch thread, passive OpenMP wait) on 2026-12-01 with::

    OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 nice -n 5 python -m webui.estimate --measure

which runs the room example (with its depth map) through :func:`pipeline.job.run_job` at the draft (256×192) and
default (512×384) preset sizes in the single, stage and 360 modes and prints every stage's seconds (the 1-minute
load average was 3.2–4.7 while it ran: other engineers' jobs shared the cores). Each constant is the fit of one
stage over those six runs; the estimate scales them by the views, pixels and splat iterations of a job, so it is
an estimate (about ±40 % on that machine), and a faster or busier machine changes every figure.

Generative profile (GPU): :func:`pipeline.space.estimate_gpu_seconds` (per-step GPU costs not yet measured on a
GPU: see :class:`pipeline.space.GpuStageCosts`).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from core.cameras import make_cameras
from core.threads import available_cpus
from models.offline import MAX_PARALLEL_VIEWS
from pipeline.config import FIT_MAX_SIDE, RunConfig, build_run_config, working_size
from pipeline.grow import outpaint_waves
from pipeline.job import panorama_width, video_path
from pipeline.panorama import PANORAMA_MODES
from pipeline.space import ZERO_GPU_MAX_S, ZERO_GPU_MIN_S, estimate_gpu_seconds
from pipeline.splats import step_budget

GROW_S_PER_VIEW_MPIX = 11.0
"""Render, outpaint (PatchMatch), complete depth, snap and fuse: seconds per outpainted view per megapixel of
working size (measured 10.0–11.6 over the stage and 360 runs, one view at a time)."""
PAIR_COST_VIEWS = 1.32
"""Two views outpainted at once (:func:`pipeline.grow.outpaint_wave`, PatchMatch in two processes on two cores)
cost this many single views: one 47 %-hole 512×384 fill took 1.85 s alone, two at once 2.44 s."""
FIT_BASE_S = 2.0
"""Splat fitting's fixed part: thinning, merging the cloud to the fit resolution, initialisation, held-out views
(fit of the six runs: 1.96 s)."""
FIT_S_PER_ITER_MPIX = 1.5
"""One splat-fitting iteration per megapixel of a view at the fit resolution (views are fitted at most
:data:`pipeline.config.FIT_MAX_SIDE` px on a side: every measured run fitted 256×192 = 0.049 MP views, fit of the
six runs 0.074 s per iteration; the plateau rule may stop a fit earlier)."""
EXPORT_BASE_S = 0.3
"""Encoding PLY, .splat, frames, zip and the mesh for a single small view."""
EXPORT_S_PER_MPIX = 0.9
"""Encoding every view's PNGs and the zip, and meshing it: seconds per megapixel of all views together
(measured 0.85–1.9)."""
PANORAMA_S_PER_MPIX = 0.55
"""Rendering the equirectangular panorama, per megapixel of panorama (measured 0.27–0.56)."""
VIDEO_BASE_S = 0.3
"""Starting the video encoder."""
VIDEO_S_PER_FRAME = 0.08
"""One fly-through frame at ≤ 256 px, rendered and encoded (measured 0.033–0.088; more splats cost more)."""
START_S = 1.0
"""Decoding the photo, building the cameras, starting the worker."""


def job_views_and_size(config: RunConfig, photo_size: tuple[int, int] | None = None) -> tuple[int, tuple[int, int]]:
    """(number of views, working size (W, H)) of a job, for a photo of ``photo_size`` (None: the config's size).

    Raises:
        ValueError: an unknown mode or a size outside the bounds.
    """
    width, height = photo_size or config.scene.size
    size = working_size(width, height, config.scene)
    return len(make_cameras(config.scene.mode, size, config.scene.hfov_deg)), size


def offline_seconds(config: RunConfig, photo_size: tuple[int, int] | None = None) -> float:
    """Estimated seconds of one job on the offline profile on a machine like the one the constants were measured
    on (see the module docstring).

    Args:
        config: the run configuration (mode, size, splat iterations, video).
        photo_size: (W, H) of the uploaded photo; None estimates at the configuration's size.

    Example:
        >>> single = offline_seconds(build_run_config("draft", mode="single"))
        >>> ring = offline_seconds(build_run_config("draft", mode="360"))
        >>> single < ring / 2
        True
    """
    views, (width, height) = job_views_and_size(config, photo_size)
    mpix = width * height / 1e6
    cameras = make_cameras(config.scene.mode, (width, height), config.scene.hfov_deg)
    seconds = START_S + GROW_S_PER_VIEW_MPIX * grown_view_cost(cameras) * mpix
    iterations = step_budget(config.splats, views)
    if iterations > 0:
        fit_mpix = mpix * min(1.0, FIT_MAX_SIDE / max(width, height)) ** 2  # views are fitted at <= FIT_MAX_SIDE
        seconds += FIT_BASE_S + FIT_S_PER_ITER_MPIX * iterations * fit_mpix
    seconds += EXPORT_BASE_S + EXPORT_S_PER_MPIX * views * mpix
    if config.scene.mode in PANORAMA_MODES:
        panorama = panorama_width(cameras[0])
        seconds += PANORAMA_S_PER_MPIX * panorama * (panorama // 2) / 1e6
    if config.video:
        seconds += VIDEO_BASE_S + VIDEO_S_PER_FRAME * len(video_path(cameras))
    return seconds


def grown_view_cost(cameras: list) -> float:
    """The views after the first, in single-view costs: the grow loop outpaints views that cannot see each other
    two at a time where the process has two CPUs (PatchMatch's lanes, :data:`models.offline.MAX_PARALLEL_VIEWS`).

    Example:
        >>> grown_view_cost(make_cameras("stage", (256, 192))) <= 2.0
        True
    """
    waves = outpaint_waves(cameras, min(MAX_PARALLEL_VIEWS, available_cpus()))
    return sum(1.0 if len(wave) == 1 else PAIR_COST_VIEWS * len(wave) / 2 for wave in waves)


def gpu_seconds(config: RunConfig, photo_size: tuple[int, int] | None = None, grow: bool = False) -> float:
    """Estimated GPU seconds of one job on the generative profile (margin included; unbounded).

    Args:
        config: the run configuration.
        photo_size: (W, H) of the photo; None = the configuration's size.
        grow: the job grows a finished scene by one view (one outpainted view, then a fit of all views).
    """
    views, size = job_views_and_size(config, photo_size)
    iterations = step_budget(config.splats, views + 1 if grow else views)
    steps = config.models.options.diffusion.steps
    return estimate_gpu_seconds(config.scene.mode, steps, iterations, size, 2 if grow else views, video=config.video)


def zero_gpu_seconds(config: RunConfig, grow: bool = False) -> int:
    """Seconds to ask ZeroGPU for (``spaces.GPU(duration=...)``) for a job: :func:`gpu_seconds` rounded up and
    bounded to [:data:`pipeline.space.ZERO_GPU_MIN_S`, :data:`pipeline.space.ZERO_GPU_MAX_S`]."""
    try:
        seconds = gpu_seconds(config, grow=grow)
    except ValueError:  # a size or mode the job itself will refuse with a clear message
        return ZERO_GPU_MIN_S
    return min(ZERO_GPU_MAX_S, max(ZERO_GPU_MIN_S, math.ceil(seconds)))


def estimate_text(config: RunConfig, profile: str, photo_size: tuple[int, int] | None = None) -> str:
    """One line for the page: about how long Generate will take, and for what.

    Args:
        config: the run configuration the form would build.
        profile: the profile the server runs ("offline" or "generative").
        photo_size: (W, H) of the uploaded photo, when there is one.

    Raises:
        ValueError: the mode or size would be refused by the job.
    """
    views, (width, height) = job_views_and_size(config, photo_size)
    if profile == "generative":
        seconds, where = gpu_seconds(config, photo_size), "on a GPU (rough: GPU stage costs not yet measured)"
    else:
        seconds, where = offline_seconds(config, photo_size), "on 2 CPU cores like the project's test machine"
    noun = "view" if views == 1 else "views"
    return f"Estimated time: **{_duration(seconds)}** for {views} {noun} at {width}×{height}, {where}."


def _duration(seconds: float) -> str:
    """``about 20 s``, ``about 3 min``."""
    if seconds < 90:
        return f"about {max(5, round(seconds / 5) * 5)} s"
    return f"about {round(seconds / 60)} min"


def measure(presets: tuple[str, ...], modes: tuple[str, ...], out_root: Path) -> list[dict]:
    """Run the room example through the offline pipeline per preset and mode; one row of stage seconds each."""
    from core.images import load_depth_file, load_image
    from pipeline.job import JobRequest, load_components, run_job
    from webui.settings import EXAMPLES_DIR

    image = load_image(EXAMPLES_DIR / "room" / "image.png")
    depth = load_depth_file(EXAMPLES_DIR / "room" / "depth.png")
    rows = []
    for preset in presets:
        for mode in modes:
            config = build_run_config(preset, mode=mode, profile="offline", prompt="a living room")
            components = load_components(config)
            start = time.perf_counter()
            outputs = run_job(JobRequest(image, config, depth), components, out_root / f"{preset}-{mode}")
            frame = outputs.result.frames[0]
            rows.append(
                dict(
                    preset=preset,
                    mode=mode,
                    views=len(outputs.result.frames),
                    size=[frame.camera.width, frame.camera.height],
                    seconds=round(time.perf_counter() - start, 2),
                    estimate=round(offline_seconds(config, (image.shape[1], image.shape[0])), 2),
                    timings={name: round(value, 3) for name, value in outputs.timings.items()},
                )
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    """``python -m webui.estimate --measure``: measure the offline stage costs on this machine."""
    import os
    import tempfile

    from core.threads import configure_threads

    parser = argparse.ArgumentParser(prog="python -m webui.estimate", description=main.__doc__)
    parser.add_argument("--measure", action="store_true", help="run the six timing jobs and print their stages")
    parser.add_argument("--presets", default="draft,default")
    parser.add_argument("--modes", default="single,stage,360")
    args = parser.parse_args(argv)
    if not args.measure:
        parser.print_help()
        return
    configure_threads()
    print(json.dumps({"load_average": os.getloadavg()}))
    with tempfile.TemporaryDirectory(prefix="worldstitch-measure-") as folder:
        measure(tuple(args.presets.split(",")), tuple(args.modes.split(",")), Path(folder))
    print(json.dumps({"load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
