"""One scene-generation job from a loaded photo to files on disk: the single entry point of the CLI, the app and
the Python API.

:func:`run_job` grows a scene and writes it; :func:`grow_job` turns a finished scene toward a direction the user
chose, grows one more view there (:mod:`pipeline.grow_more`) and writes the grown scene; both end in
:func:`write_scene`. :func:`objects_job` writes a finished scene again with virtual objects placed in it (the app's
"Add object"), reusing its fitted splats. Files are staged in a hidden folder beside ``out_dir`` and moved in only
when everything succeeded, so a failed or cancelled job leaves nothing partial behind (a killed one leaves a
staging folder that :func:`pipeline.cleanup.remove_staging_dirs` / :func:`pipeline.cleanup.startup_cleanup` remove
at the next start).

Besides the splats, points, frames and video, a job writes ``scene.glb`` (a coloured triangle mesh for engines,
:mod:`pipeline.mesh`), for paths that go all around ``panorama.png`` + ``panorama_depth.png`` (equirectangular,
:mod:`pipeline.panorama`), and ``viewer/splats.ply``: a copy of the splats moved so Gradio's splat viewer opens
looking through the input photo (:mod:`pipeline.viewer`; the downloads keep the documented frame).
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
from core.components import Cancelled
from core.files import atomic_write
from core.images import fit_size, resize_depth
from core.types import PointCloud, ProgressEvent, SceneResult
from pipeline import export
from pipeline.cleanup import WorkLimits, check_work
from pipeline.config import RunConfig, build_run_config, working_size
from pipeline.grow import ScenePipeline
from pipeline.grow_more import GrowLimits
from pipeline.mesh import scene_mesh_glb
from pipeline.panorama import PANORAMA_MODES, PANORAMA_WIDTH, panorama_files, render_panorama
from pipeline.viewer import splats_for_viewer

MAX_FIT_SPLATS = 300_000  # denser clouds are thinned before fitting (radii grown to keep coverage)
VIDEO_FPS = 12
VIDEO_ORBIT_FRAMES = 48  # a 4 s turn: rendering each frame on CPU costs ~0.1–0.5 s
VIDEO_MAX_SIDE = 256
MIN_GROW_OVERLAP = 0.02
"""Least fraction of a grown view the existing scene must cover: outpainting continues what is there (PatchMatch
copies from it, diffusion is conditioned on it); with nothing in sight the new view would not join the scene."""
PANORAMA_MIN_WIDTH = 512
"""Smallest panorama width: 0.7° per pixel, still readable as a preview of the whole scene."""
VIEWER_PLY = "viewer/splats.ply"
"""The viewer-only copy of the splats (not a download: its frame is the viewer's, not the documented one)."""
VIEWER_COMMENT = (
    "WorldStitch viewer copy: moved and scaled so Gradio's splat viewer opens on the input photo; "
    "NOT the scene frame (use ../splats.ply)"
)

# Overall progress: each stage owns one band of [0, 1], in the order the stages run, so the reported fraction
# never goes backwards (the grow loop reports its own 0..1 inside its band).
GROW_PROGRESS = (0.0, 0.6)
SPLAT_PROGRESS = (0.6, 0.88)
EXPORT_PROGRESS = (0.88, 0.9)
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

    objects: list = field(default_factory=list)
    """:class:`pipeline.objects.ObjectSpec` to insert into the finished scene (``--objects objects.json``): drawn
    into the downloaded frames (hidden where the scene is nearer), added to the splats as surface splats, so the
    viewer, the splat downloads and the video show them. Empty = none."""


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
    viewer_ply: Path | None = None
    """``viewer/splats.ply``: the splats moved so Gradio's viewer opens on the photo (for the viewer only)."""
    mesh_glb: Path | None = None
    """``scene.glb``: coloured triangle mesh, glTF axes (+Y up)."""
    panorama: Path | None = None
    """``panorama.png``: equirectangular RGB seen from view 0 (360 and sphere paths only)."""
    panorama_depth: Path | None = None
    """``panorama_depth.png``: 16-bit distance along the ray in millimetres, 0 = unknown."""
    warnings: list[str] = field(default_factory=list)
    result: SceneResult | None = None
    splats: object | None = None
    """The fitted :class:`pipeline.splats.Splats` of ``result``, without objects: :func:`objects_job` reuses them,
    so placing objects in a finished scene does not fit the splats again."""

    @property
    def downloads(self) -> list[Path]:
        """The files a user downloads, in the order they are listed (the viewer copy is not one of them)."""
        paths = (
            self.splat_ply,
            self.dotsplat,
            self.mesh_glb,
            self.panorama,
            self.panorama_depth,
            self.points_ply,
            self.frames_zip,
            self.video,
        )
        return [path for path in paths if path is not None]


def run_job(
    request: JobRequest,
    components,
    out_dir: str | Path,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: threading.Event | None = None,
    work_limits: WorkLimits = WorkLimits(),
) -> JobOutputs:
    """Generate a scene and write every output into ``out_dir``.

    Args:
        request: the photo, its optional depth map and the run configuration.
        components: an object with ``outpainter``, ``estimator``, ``completer`` (see :mod:`models.registry`).
        out_dir: final folder; created if missing; files are moved in only on success.
        progress: receives :class:`ProgressEvent` for each stage and view.
        cancel: when set, the job stops at the next stage or denoising step with ``Cancelled``.
        work_limits: most views and total pixels one run may ask for.

    Returns:
        Where every file went (:attr:`JobOutputs.downloads`), timings, points per view and the scene itself.

    Raises:
        JobError: bad inputs (size, aspect, camera path, too much work) or an unusable result; nothing is written.
        core.components.Cancelled: ``cancel`` was set; nothing is written.
    """
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
        check_work(cameras, work_limits)  # a path file with 20,000 views would run for hours
    except ValueError as err:  # WorkLimitError names the limit
        raise JobError(str(err)) from None
    initial_depth = None
    if request.depth is not None:
        depth_file = request.depth
        depth, valid = resize_depth(depth_file.depth.float(), depth_file.valid_mask, (width, height))
        initial_depth = torch.where(valid, depth, torch.zeros_like(depth))
        warnings += list(getattr(depth_file, "warnings", []))

    # 2. Grow the scene
    pipe = _pipeline(components, config)
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

    # 3. Splats, encoded files, video — all staged, then moved into place
    return write_scene(result, config, out_dir, report, cancel, warnings, request.objects)


def grow_job(
    result: SceneResult,
    config: RunConfig,
    components,
    yaw_deg: float,
    pitch_deg: float,
    out_dir: str | Path,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: threading.Event | None = None,
    limits: GrowLimits = GrowLimits(),
    objects: list | tuple = (),
) -> JobOutputs:
    """Grow a finished scene by one view toward ``yaw_deg``/``pitch_deg`` and write the grown scene into ``out_dir``.

    The new view starts from the existing cloud (:func:`pipeline.grow_more.grow_more`), then the splats are fitted
    again to every view and all files are rewritten, so the viewer and the downloads show the grown scene.

    Args:
        result: the scene to grow (``JobOutputs.result`` of an earlier job); not modified.
        config: the run configuration that scene was made with (prompts, seed, splats, video).
        components: the same models (see :func:`load_components`).
        yaw_deg: where to look, degrees right of the photo's direction.
        pitch_deg: degrees up from level, in [-90, 90].
        out_dir: final folder (files are moved in only on success).
        progress: receives :class:`ProgressEvent` for each stage.
        cancel: stops the job with ``Cancelled``; nothing is written.
        limits: the scene's memory budget (views and points).
        objects: objects placed in the scene (:attr:`JobRequest.objects`, or already built
            :class:`pipeline.objects.PlacedObject`): drawn into the grown scene's files too.

    Returns:
        The grown scene's files; ``result`` holds the new :class:`SceneResult` (without the objects).

    Raises:
        JobError: a bad angle, or the scene would grow past ``limits`` (the message names the limit).
    """
    from pipeline.grow_more import camera_toward, grow_more

    report = progress or (lambda event: None)
    scene = config.scene
    pipe = _pipeline(components, config)
    try:
        if result.frames:  # the new view continues what is there: some of the scene must be in sight
            camera = camera_toward(result.frames[0].camera, yaw_deg, pitch_deg)
            cloud = result.cloud
            seen = pipe.renderer.render(cloud.points, cloud.colors, camera, cloud.radii).known_mask
            if float(seen.float().mean()) < MIN_GROW_OVERLAP:
                raise JobError(
                    f"nothing of the scene is in sight toward yaw {yaw_deg:g}°, pitch {pitch_deg:g}°: a new view "
                    "continues what is there, so turn toward a direction that overlaps the scene (at most about "
                    "one field of view away from a view it has)"
                )
        grown = grow_more(
            result,
            pipe,
            yaw_deg,
            pitch_deg,
            scene.prompt,
            scene.negative_prompt,
            scene.seed,
            cancel=cancel,
            progress=_scaled(report, *GROW_PROGRESS),
            limits=limits,
        )
    except ValueError as err:  # GrowLimitError names the limit; a bad angle names the angle
        raise JobError(str(err)) from None
    return write_scene(grown, config, out_dir, report, cancel, objects=objects)


def write_scene(
    result: SceneResult,
    config: RunConfig,
    out_dir: str | Path,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: threading.Event | None = None,
    warnings: list[str] | tuple[str, ...] = (),
    objects: list | tuple = (),
) -> JobOutputs:
    """Fit splats to a grown scene and write every output into ``out_dir`` (staged, then moved in).

    Args:
        result: the frames and fused cloud of a run.
        config: the run configuration (splat fitting, video, mode for the panorama).
        out_dir: final folder; created if missing.
        progress: receives :class:`ProgressEvent` for the splat, export and video stages.
        cancel: stops the job with ``Cancelled``; nothing is moved into ``out_dir``.
        warnings: notes for the user collected before (e.g. about the depth map).
        objects: :class:`pipeline.objects.ObjectSpec` to insert (see :attr:`JobRequest.objects`).

    Returns:
        Where every file went (``result`` is the scene without the objects: growing continues from it).

    Raises:
        JobError: NaN or black views, a scene with nothing to mesh, or an object that cannot be built (a mesh
            file that cannot be read); nothing is written.
    """
    return _write_scene(result, config, Path(out_dir), progress, cancel, warnings, objects)


def objects_job(
    result: SceneResult,
    config: RunConfig,
    objects: list | tuple,
    out_dir: str | Path,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: threading.Event | None = None,
    splats=None,
    occluder=None,
) -> JobOutputs:
    """Write a finished scene again with ``objects`` placed in it (none = the scene as it was generated).

    Nothing grows: the frames, cloud and (when given) the fitted splats are reused, so this costs the export,
    the objects' drawing and the video, not a splat fit.

    Args:
        result: the scene (``JobOutputs.result`` of an earlier job); not modified.
        config: the run configuration it was made with (video, mode for the panorama, seed).
        objects: :class:`pipeline.objects.ObjectSpec` or already built :class:`pipeline.objects.PlacedObject`.
        out_dir: final folder (files are moved in only on success).
        progress: receives :class:`ProgressEvent` for the export and video stages.
        cancel: stops the job with ``Cancelled``; nothing is written.
        splats: ``JobOutputs.splats`` of that earlier job (None fits them again, as the job did).
        occluder: decides where the scene hides an object in the downloaded frames
            (:class:`pipeline.objects.HardDepthOcclusion` when None; e.g. :class:`models.occlusion.LearnedOcclusion`).

    Returns:
        The files, with ``result`` and ``splats`` still without the objects.

    Raises:
        JobError: an object that cannot be built; nothing is written.
    """
    return _write_scene(result, config, Path(out_dir), progress, cancel, (), objects, splats, occluder)


def _write_scene(result, config, out_dir: Path, progress, cancel, warnings, objects, fitted=None, occluder=None):
    report = progress or (lambda event: None)
    warnings = list(warnings)
    cameras = [frame.camera for frame in result.frames]
    _check_frames(result)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=_parent(out_dir)))
    try:
        placed = _build_objects(objects)
        files, splats, scene_splats, timings = _encode(
            result, config, report, cancel, warnings, placed, fitted, occluder
        )
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
                video_path(cameras),
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

    def written(name: str) -> Path | None:
        return out_dir / name if name in files else None

    return JobOutputs(
        out_dir=out_dir,
        splat_ply=written("splats.ply"),
        dotsplat=written("scene.splat"),
        points_ply=out_dir / "points.ply",
        transforms_json=out_dir / "transforms.json",
        frames_dir=out_dir / "images",
        frames_zip=out_dir / "frames.zip",
        video=video,
        timings=timings,
        points_per_view=result.points_per_view,
        gallery=gallery,
        viewer_ply=written(VIEWER_PLY),
        mesh_glb=written("scene.glb"),
        panorama=written("panorama.png"),
        panorama_depth=written("panorama_depth.png"),
        warnings=warnings,
        result=result,
        splats=scene_splats,
    )


def _pipeline(components, config: RunConfig) -> ScenePipeline:
    """The grow loop with the job's components and grow settings (the outpainter set to the job's steps)."""
    from renderers import get_point_renderer  # light import; keeps this module importable for the app's banner

    _configure_outpainter(components.outpainter, config)
    return ScenePipeline(
        components.outpainter,
        components.estimator,
        components.completer,
        get_point_renderer(config.scene.grow.renderer),
        config.scene.grow,
    )


def _build_objects(specs):
    """The objects of a job merged into one :class:`pipeline.objects.PlacedObject`, or None when there are none."""
    if not specs:
        return None
    from pipeline.objects import PlacedObject, build_object, merge_objects

    try:
        return merge_objects([spec if isinstance(spec, PlacedObject) else build_object(spec) for spec in specs])
    except ValueError as err:  # MeshError names the file and what is wrong with it
        raise JobError(f"{err}; nothing was written") from None


def _encode(
    result: SceneResult, run: RunConfig, report, cancel, warnings: list[str], placed=None, fitted=None, occluder=None
):
    """All output files (name → bytes), the splats written (with the objects), the scene's own fitted splats
    (``fitted`` when given: no fit then) and timings.

    With ``placed`` objects, the splats are fitted to the generated frames first (the objects were never in
    them), then the objects' surface splats are appended, and the downloaded frames show the objects composited
    in (hidden where the scene is nearer).

    A viewer copy that cannot be placed (no splat in front of the input camera) is left out with a warning; the
    viewer then shows ``splats.ply``.
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    shown = result.frames
    if placed is not None:
        from pipeline.objects import HardDepthOcclusion, composite_frame

        occluder = occluder or HardDepthOcclusion()
        shown = [composite_frame(frame, placed, occluder) for frame in result.frames]
    frame_files = export.frame_files(shown)
    transforms = export.transforms_json_bytes(shown)
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
    if fitted is not None:  # an earlier job's splats (objects_job): no fit
        splats = fitted
    elif config.iterations > 0:
        low, high = SPLAT_PROGRESS

        def fit_progress(step: int, total: int, loss: float) -> None:
            message = f"fitting splats: iteration {step}/{total}, loss {loss:.4f}"
            fraction = low + (high - low) * step / max(total, 1)
            report(ProgressEvent("splats", -1, len(result.frames), fraction, message))

        cloud = thin_cloud(result.cloud, MAX_FIT_SPLATS)
        splats = splat_fit.fit_splats(result.frames, cloud, config, progress=fit_progress, cancel=cancel).splats
    else:
        splats = splat_fit.init_from_cloud(thin_cloud(result.cloud, MAX_FIT_SPLATS), config.init)
    scene_splats = splats
    if placed is not None:
        from pipeline.objects import append_splats, object_splats

        splats = append_splats(splats, object_splats(placed, seed=run.scene.seed, sh_degree=splats.sh_degree))
    timings["splats"] = time.perf_counter() - start
    start = time.perf_counter()
    files["splats.ply"] = splat_io.splats_to_ply_bytes(splats)
    files["scene.splat"] = splat_io.splats_to_splat_bytes(splats)
    try:
        viewer_splats = splats_for_viewer(splats, result.frames[0].camera)
        files[VIEWER_PLY] = splat_io.splats_to_ply_bytes(viewer_splats, comment=VIEWER_COMMENT)
    except ValueError as err:  # nothing in front of the photo's camera: the viewer shows splats.ply instead
        warnings.append(f"the viewer opens on the scene's origin: {err}")
    timings["export"] += time.perf_counter() - start

    low, high = EXPORT_PROGRESS
    report(ProgressEvent("export", -1, len(result.frames), low, "writing the mesh (scene.glb)"))
    start = time.perf_counter()
    try:
        files["scene.glb"] = scene_mesh_glb(shown)
    except ValueError as err:
        raise JobError(f"{err}; nothing was written") from None
    timings["mesh"] = time.perf_counter() - start
    if run.scene.mode in PANORAMA_MODES:
        _check_cancel(cancel)
        report(ProgressEvent("export", -1, len(result.frames), (low + high) / 2, "rendering the 360° panorama"))
        start = time.perf_counter()
        camera = result.frames[0].camera
        files.update(panorama_files(render_panorama(result.cloud, camera, panorama_width(camera))))
        timings["panorama"] = time.perf_counter() - start
    return files, splats, scene_splats, timings


def panorama_width(camera: Camera) -> int:
    """Panorama width matching the views' angular resolution (one pixel per view pixel at the centre), even, at
    most :data:`pipeline.panorama.PANORAMA_WIDTH`: a draft scene gets a smaller, faster panorama."""
    matched = 2 * math.pi * float(camera.K[0, 0])  # pixels per full turn at the view's focal length
    return int(min(PANORAMA_WIDTH, max(PANORAMA_MIN_WIDTH, matched // 2 * 2)))


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")


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


def video_path(cameras: list[Camera]) -> list[Camera]:
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
