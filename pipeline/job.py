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
from pipeline.config import GrowConfig
from pipeline.grow import ScenePipeline

FIT_MAX_SIDE = 256  # splats are fitted against views downscaled to this side: CPU fitting time grows with pixels
MAX_FIT_SPLATS = 300_000  # denser clouds are thinned before fitting (radii grown to keep coverage)
VIDEO_FPS = 12
VIDEO_ORBIT_FRAMES = 48  # a 4 s turn: rendering each frame on CPU costs ~0.1–0.5 s
VIDEO_MAX_SIDE = 256
MIN_SIDE = 64  # smaller views leave too little context for outpainting and depth
MAX_SIDE = 1536  # bounded work and memory per view
SIZE_MULTIPLE = 8  # latent diffusion models need sides divisible by 8


class JobError(ValueError):
    """A problem with the job's inputs or its output that the user can act on."""


@dataclass
class JobRequest:
    """What to generate. ``image`` is already decoded by :func:`core.images.load_image`."""

    image: Tensor  # [H, W, 3] float in [0, 1]
    prompt: str = ""
    negative_prompt: str = ""
    mode: str = "360"  # single | stage | 360 | sphere | path/to/path.json
    seed: int = 0
    size: tuple[int, int] | None = (512, 384)  # (width, height); None keeps the photo's size
    hfov_deg: float | None = None
    depth: object | None = None  # core.images.DepthFile for view 0, or None
    splat_iters: int = 300  # 0 = export the initialised splats without fitting
    video: bool = True
    steps: int | None = None  # diffusion steps (generative outpainters)
    guidance: float | None = None  # classifier-free guidance (generative outpainters)
    grow: GrowConfig = field(default_factory=GrowConfig)


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


def working_size(height: int, width: int, size: tuple[int, int] | None) -> tuple[int, int]:
    """(height, width) to work at: the requested size, or the photo's shrunk to ≤ 512, as multiples of 8."""
    if size is None:
        scale = min(1.0, 512 / max(height, width))
        width, height = width * scale, height * scale
    else:
        width, height = size
    height = max(SIZE_MULTIPLE, int(round(height / SIZE_MULTIPLE)) * SIZE_MULTIPLE)
    width = max(SIZE_MULTIPLE, int(round(width / SIZE_MULTIPLE)) * SIZE_MULTIPLE)
    if min(height, width) < MIN_SIDE or max(height, width) > MAX_SIDE:
        raise JobError(f"working size {width}x{height} must have sides between {MIN_SIDE} and {MAX_SIDE} pixels")
    return height, width


def run_job(
    request: JobRequest,
    components,
    out_dir: str | Path,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: threading.Event | None = None,
) -> JobOutputs:
    """Generate a scene and write every output into ``out_dir``.

    Args:
        request: the photo and settings.
        components: an object with ``outpainter``, ``estimator``, ``completer`` (see :mod:`models.registry`).
        out_dir: final folder; created if missing; files are moved in only on success.
        progress: receives :class:`ProgressEvent` for each stage and view.
        cancel: when set, the job stops at the next stage or denoising step with ``Cancelled``.
    """
    from renderers import get_point_renderer  # light import; keeps this module importable for the app's banner

    out_dir = Path(out_dir)
    report = progress or (lambda event: None)
    warnings: list[str] = []

    # 1. Check inputs and choose the working size and cameras
    image = request.image
    if image.ndim != 3 or image.shape[-1] != 3:
        raise JobError(f"image must be [H, W, 3], got {tuple(image.shape)}")
    height, width = working_size(image.shape[0], image.shape[1], request.size)
    try:
        image = fit_size(image.float(), (width, height))
    except ValueError as err:  # ImageError: aspect ratio outside the policy
        raise JobError(str(err)) from None
    try:
        cameras = make_cameras(request.mode, (width, height), request.hfov_deg)
    except ValueError as err:
        raise JobError(str(err)) from None
    initial_depth = None
    if request.depth is not None:
        depth_file = request.depth
        depth, valid = resize_depth(depth_file.depth.float(), depth_file.valid_mask, (width, height))
        initial_depth = torch.where(valid, depth, torch.zeros_like(depth))
        warnings += list(getattr(depth_file, "warnings", []))
    _configure_outpainter(components.outpainter, request)

    # 2. Grow the scene
    pipe = ScenePipeline(
        components.outpainter,
        components.estimator,
        components.completer,
        get_point_renderer(request.grow.renderer),
        request.grow,
    )
    result = pipe(
        image,
        cameras,
        request.prompt,
        request.negative_prompt,
        request.seed,
        initial_depth=initial_depth,
        progress=_scaled(report, 0.0, 0.6),
        cancel=cancel,
    )
    _check_frames(result)

    # 3. Splats, encoded files, video — all staged, then moved into place
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=_parent(out_dir)))
    try:
        files, splats, timings = _encode(result, request, report, cancel)
        for name, data in files.items():
            atomic_write(staging / name, data)
        video = None
        if request.video and splats is not None:
            start = time.perf_counter()
            report(ProgressEvent("video", -1, len(cameras), 0.95, "rendering fly-through video"))
            from pipeline.video import render_flythrough

            def video_progress(done: int, total: int) -> None:
                fraction = 0.93 + 0.07 * done / max(total, 1)
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


def _encode(result: SceneResult, request: JobRequest, report, cancel):
    """All output files as bytes, plus the fitted splats (or None when splats are unavailable)."""
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
    config = splat_fit.SplatConfig(iterations=request.splat_iters, fit_max_side=FIT_MAX_SIDE)
    cloud = thin_cloud(result.cloud, MAX_FIT_SPLATS)
    if request.splat_iters > 0:

        def fit_progress(step: int, total: int, loss: float) -> None:
            message = f"fitting splats: iteration {step}/{total}, loss {loss:.4f}"
            report(ProgressEvent("splats", -1, len(result.frames), 0.6 + 0.33 * step / max(total, 1), message))

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


def _configure_outpainter(outpainter, request: JobRequest) -> None:
    settings = {"steps": request.steps, "guidance": request.guidance}
    if hasattr(outpainter, "configure") and any(v is not None for v in settings.values()):
        outpainter.configure(**{k: v for k, v in settings.items() if v is not None})


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
