"""One scene-generation job from a loaded photo to files on disk: the single entry point of the CLI and the app.

Files are staged in a hidden folder beside ``out_dir`` and moved in only when everything succeeded, so a failed
or cancelled job leaves nothing partial behind.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from core.cameras import Camera, make_cameras
from core.files import atomic_write
from core.images import fit_size, resize_depth
from core.types import PointCloud, ProgressEvent, SceneResult
from pipeline import export
from pipeline.config import RunConfig, build_run_config, working_size
from pipeline.grow import ScenePipeline

MAX_FIT_SPLATS = 300_000  # denser clouds are thinned before fitting (radii grown to keep coverage)
VIDEO_FPS = 12
VIDEO_ORBIT_FRAMES = 48  # a 4 s turn: rendering each frame on CPU costs ~0.1–0.5 s
VIDEO_MAX_SIDE = 256

# Overall progress: each stage owns one band of [0, 1], in the order the stages run, so the reported fraction
# never goes backwards (the grow loop reports its own 0..1 inside its band).
GROW_PROGRESS = (0.0, 0.6)
SPLAT_PROGRESS = (0.6, 0.9)
VIDEO_PROGRESS = (0.9, 0.99)


class JobError(ValueError):
    """A problem with the job's inputs or its output that the user can act on."""


@dataclass
class JobRequest:
    """What to generate: a decoded photo, its optional depth map, and the run configuration (picklable)."""

    image: Tensor  # [H, W, 3] float in [0, 1], as decoded by core.images.load_image (any size; sized here)
    config: RunConfig = field(default_factory=build_run_config)
    """Built by :func:`pipeline.config.build_run_config` (the CLI, the app and API callers all use it)."""

    depth: object | None = None
    """``core.images.DepthFile`` for the photo (any size; resized with the photo), or None."""


@dataclass
class JobOutputs:
    """Where the files went, and the figures a user wants to see."""

    out_dir: Path
    splat_ply: Path | None
    dotsplat: Path | None
    points_ply: Path
    transforms_json: Path
    frames_dir: Path
    frames_zip: Path
    video: Path | None
    timings: dict[str, float]
    points_per_view: list[int]
    gallery: list[tuple[Path, str]]
    warnings: list[str] = field(default_factory=list)
    result: SceneResult | None = None


def run_job(
    request: JobRequest,
    components,
    out_dir: str | Path,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: threading.Event | None = None,
) -> JobOutputs:
    """Generate a scene and write every output into ``out_dir``.

    Args:
        request: the photo, its optional depth map and the run configuration.
        components: an object with ``outpainter``, ``estimator``, ``completer`` (see :mod:`models.registry`).
        out_dir: final folder; created if missing; files are moved in only on success.
        progress: receives :class:`ProgressEvent` for each stage and view.
        cancel: when set, the job stops at the next stage or denoising step with ``Cancelled``.
    """
    from renderers import get_point_renderer  # light import; keeps this module importable for the app's banner

    out_dir = Path(out_dir)
    report = progress or (lambda event: None)
    warnings: list[str] = []
    config, scene = request.config, request.config.scene

    # 1. Check inputs and choose the working size and cameras
    image = request.image
    if image.ndim != 3 or image.shape[-1] != 3:
        raise JobError(f"image must be [H, W, 3], got {tuple(image.shape)}")
    try:
        width, height = working_size(image.shape[1], image.shape[0], scene)
        image = fit_size(image.float(), (width, height))
    except ValueError as err:  # size outside the bounds, or ImageError: aspect ratio outside the policy
        raise JobError(str(err)) from None
    try:
        cameras = make_cameras(scene.mode, (width, height), scene.hfov_deg)
    except ValueError as err:
        raise JobError(str(err)) from None
    initial_depth = None
    if request.depth is not None:
        depth_file = request.depth
        depth, valid = resize_depth(depth_file.depth.float(), depth_file.valid_mask, (width, height))
        initial_depth = torch.where(valid, depth, torch.zeros_like(depth))
        warnings += list(getattr(depth_file, "warnings", []))
    _configure_outpainter(components.outpainter, config)

    # 2. Grow the scene
    pipe = ScenePipeline(
        components.outpainter,
        components.estimator,
        components.completer,
        get_point_renderer(scene.grow.renderer),
        scene.grow,
    )
    result = pipe(
        image,
        cameras,
        scene.prompt,
        scene.negative_prompt,
        scene.seed,
        initial_depth=initial_depth,
        progress=_scaled(report, *GROW_PROGRESS),
        cancel=cancel,
    )
    _check_frames(result)

    # 3. Splats, encoded files, video — all staged, then moved into place
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=_parent(out_dir)))
    try:
        files, splats, timings = _encode(result, config, report, cancel)
        for name, data in files.items():
            atomic_write(staging / name, data)
        video = None
        if config.video and splats is not None:
            start = time.perf_counter()
            low, high = VIDEO_PROGRESS
            report(ProgressEvent("video", -1, len(cameras), low, "rendering fly-through video"))
            from pipeline.video import render_flythrough

            def video_progress(done: int, total: int) -> None:
                fraction = low + (high - low) * done / max(total, 1)
                report(ProgressEvent("video", -1, len(cameras), fraction, f"video frame {done}/{total}"))

            render_flythrough(
                staging / "flythrough.mp4",
                splats,
                _video_path(cameras),
                fps=VIDEO_FPS,
                max_side=VIDEO_MAX_SIDE,
                cancel=cancel,
                progress=video_progress,
            )
            video = out_dir / "flythrough.mp4"
            timings["video"] = time.perf_counter() - start
        _move_into(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report(ProgressEvent("done", -1, len(cameras), 1.0, f"{len(result.cloud)} points"))

    timings = {**result.timings, **timings}
    gallery = []
    for frame in result.frames:
        stem = f"frame_{frame.index:03d}"
        gallery.append((out_dir / "images" / f"{stem}.png", f"view {frame.index}"))
        gallery.append((out_dir / "depth_preview" / f"{stem}.png", f"view {frame.index} depth"))
    return JobOutputs(
        out_dir=out_dir,
        splat_ply=out_dir / "splats.ply" if splats is not None else None,
        dotsplat=out_dir / "scene.splat" if splats is not None else None,
        points_ply=out_dir / "points.ply",
        transforms_json=out_dir / "transforms.json",
        frames_dir=out_dir / "images",
        frames_zip=out_dir / "frames.zip",
        video=video,
        timings=timings,
        points_per_view=result.points_per_view,
        gallery=gallery,
        warnings=warnings,
        result=result,
    )


def _encode(result: SceneResult, run: RunConfig, report, cancel):
    """All output files (name → bytes), plus the fitted splats (or None when splats are unavailable)."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    frame_files = export.frame_files(result.frames)
    transforms = export.transforms_json_bytes(result.frames)
    files = {
        **frame_files,
        "transforms.json": transforms,
        "points.ply": export.points_ply_bytes(result.cloud),
        "frames.zip": export.zip_bytes({**frame_files, "transforms.json": transforms}),
    }
    timings["export"] = time.perf_counter() - start

    from pipeline import splat_io
    from pipeline import splats as splat_fit

    start = time.perf_counter()
    config = run.splats  # iterations, seed and fit resolution come from the run configuration
    cloud = thin_cloud(result.cloud, MAX_FIT_SPLATS)
    if config.iterations > 0:
        low, high = SPLAT_PROGRESS

        def fit_progress(step: int, total: int, loss: float) -> None:
            message = f"fitting splats: iteration {step}/{total}, loss {loss:.4f}"
            fraction = low + (high - low) * step / max(total, 1)
            report(ProgressEvent("splats", -1, len(result.frames), fraction, message))

        fitted = splat_fit.fit_splats(result.frames, cloud, config, progress=fit_progress, cancel=cancel)
        splats = fitted.splats
    else:
        splats = splat_fit.init_from_cloud(cloud, config.init)
    timings["splats"] = time.perf_counter() - start
    start = time.perf_counter()
    files["splats.ply"] = splat_io.splats_to_ply_bytes(splats)
    files["scene.splat"] = splat_io.splats_to_splat_bytes(splats)
    timings["export"] += time.perf_counter() - start
    return files, splats, timings


def thin_cloud(cloud: PointCloud, max_points: int) -> PointCloud:
    """Keep an evenly strided, deterministic subset of at most ``max_points`` points.

    Each kept point stands for ``stride`` points, so its footprint radius grows by sqrt(stride) to cover the same
    area. View 0's points come first in the cloud and are thinned like the rest.
    """
    if len(cloud) <= max_points:
        return cloud
    stride = math.ceil(len(cloud) / max_points)
    keep = torch.arange(0, len(cloud), stride, device=cloud.points.device)
    return PointCloud(
        cloud.points[keep], cloud.colors[keep], cloud.radii[keep] * math.sqrt(stride), cloud.source_view[keep]
    )


def _configure_outpainter(outpainter, run: RunConfig) -> None:
    """Per-job diffusion settings for an outpainter loaded once (the app reuses it across jobs)."""
    if hasattr(outpainter, "configure"):
        diffusion = run.models.options.diffusion
        outpainter.configure(steps=diffusion.steps, guidance=diffusion.guidance)


def load_components(run: RunConfig, device=None):
    """Load the models a run configuration names (``run.models``): once per process, reused for every job.

    Raises:
        models.hub.ModelUnavailableError: a requested model is not on this machine (and may not be downloaded).
        ValueError: an unknown profile or model name.
    """
    from models.registry import build_components  # loads weights: never at import

    models = run.models
    return build_components(
        models.profile,
        outpainter=models.outpainter,
        depth_model=models.depth_model,
        completer=models.completer,
        device=device,
        options=models.options,
    )


def _check_frames(result: SceneResult) -> None:
    """Refuse to write garbage: NaN anywhere, or views that came out (almost) black."""
    for frame in result.frames:
        if not bool(frame.rgb.isfinite().all()) or not bool(frame.depth.isfinite().all()):
            raise JobError(f"view {frame.index} came out with invalid values (NaN); nothing was written")
        if float(frame.rgb.max()) < 1.0 / 255:
            raise JobError(f"view {frame.index} came out black; nothing was written")
    if not bool(result.cloud.points.isfinite().all()):
        raise JobError("the fused point cloud has invalid coordinates; nothing was written")


def _scaled(report, lo: float, hi: float):
    def forward(event: ProgressEvent) -> None:
        report(ProgressEvent(event.stage, event.view, event.num_views, lo + (hi - lo) * event.fraction, event.message))

    return forward


def _video_path(cameras: list[Camera]) -> list[Camera]:
    """A full turn from view 0 when the path goes all around, else a smooth sweep through the path sorted by yaw."""
    from pipeline.video import interpolate_cameras, orbit_cameras

    def yaw(camera: Camera) -> float:
        forward = camera.cam_to_world[:3, 2]
        return math.degrees(math.atan2(float(forward[0]), float(forward[2])))

    yaws = [yaw(c) for c in cameras]
    if len(cameras) > 1 and max(yaws) - min(yaws) > 180:
        return orbit_cameras(cameras[0], num_frames=VIDEO_ORBIT_FRAMES)
    if len(cameras) == 1:
        return orbit_cameras(cameras[0], num_frames=VIDEO_ORBIT_FRAMES // 4, degrees=20.0)
    ordered = [cameras[i] for i in sorted(range(len(cameras)), key=lambda i: yaws[i])]
    return interpolate_cameras(ordered, steps_per_segment=VIDEO_ORBIT_FRAMES // (2 * len(ordered)))


def _parent(out_dir: Path) -> Path:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return out_dir.parent


def _move_into(staging: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in sorted(staging.rglob("*")):
        if item.is_file():
            target = out_dir / item.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            item.replace(target)
