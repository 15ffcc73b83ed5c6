"""Shared helpers for the app tests: a fake pipeline runner, a launch on a free local port, and teardown.

The fake runner writes the same files as :func:`pipeline.job.run_job` (a 3DGS PLY the viewer accepts and its viewer
copy, a GLB, a point PLY, frames + transforms.json in a zip, gallery images) in milliseconds, reports progress per
view, honours the cancel event between views, and can be told to fail the ways a real job fails. With ``with_scene``
it also returns a scene the app keeps (:func:`wall_scene`: a wall and a floor of known depth), so "place objects"
runs through the real export.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import socket
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import trimesh
from PIL import Image

from core.cameras import make_cameras
from core.components import Cancelled
from core.types import Frame, PointCloud, ProgressEvent, SceneResult
from pipeline.job import JobError, JobOutputs
from pipeline.splats import init_from_cloud

SPLAT_FIELDS = (
    "x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
    "rot_0", "rot_1", "rot_2", "rot_3",
)  # fmt: skip
SH_C0 = 0.28209479177387814  # colour = 0.5 + SH_C0 * f_dc
VIEWER_COPY_COMMENT = "viewer copy"  # in the fake viewer PLY's header: tells it apart from splats.ply
WALL_DEPTH = 3.0  # the fake scene's wall: the plane z = 3 of the world (view 0 looks along +z)
FLOOR_Y = 1.0  # its floor: the plane y = 1 (one unit below the cameras; y is down)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def splat_ply_bytes(points: np.ndarray, colors: np.ndarray, comment: str = "") -> bytes:
    """A binary 3DGS PLY (OpenCV axes, +Y down) of small isotropic splats."""  # points [N, 3], colors [N, 3]
    count = len(points)
    data = np.zeros(count, dtype=[(name, "<f4") for name in SPLAT_FIELDS])
    data["x"], data["y"], data["z"] = points.T
    f_dc = (colors - 0.5) / SH_C0
    data["f_dc_0"], data["f_dc_1"], data["f_dc_2"] = f_dc.T
    data["opacity"] = 4.0  # sigmoid → 0.98
    for axis in range(3):
        data[f"scale_{axis}"] = np.log(0.025)
    data["rot_0"] = 1.0
    header = ["ply", "format binary_little_endian 1.0", "comment up axis: -Y (OpenCV camera axes)"]
    if comment:
        header.append(f"comment {comment}")
    header.append(f"element vertex {count}")
    header += [f"property float {name}" for name in SPLAT_FIELDS]
    header.append("end_header")
    return ("\n".join(header) + "\n").encode() + data.tobytes()


def points_ply_bytes(points: np.ndarray, colors: np.ndarray) -> bytes:
    count = len(points)
    data = np.zeros(
        count, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    )
    data["x"], data["y"], data["z"] = points.T
    rgb = (colors * 255 + 0.5).astype(np.uint8)
    data["red"], data["green"], data["blue"] = rgb.T
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {count}\n"
    header += "property float x\nproperty float y\nproperty float z\n"
    header += "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    return header.encode() + data.tobytes()


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class FakeRunner:
    """Stands in for :class:`app.PipelineRunner`; every call is recorded.

    ``fail`` picks a failure: None, "job_error", "black", "oom", "crash" (an unexpected error whose message holds a
    server path). ``view_delay_s`` makes each view take that long (cancel is checked between views).
    """

    profile: str = "offline"
    description: str = "fake runner for tests"
    num_views: int = 3
    view_delay_s: float = 0.0
    fail: str | None = None
    with_scene: bool = False
    """Also return :func:`wall_scene` as the job's scene (kept by the app for objects and growing)."""
    calls: list = field(default_factory=list)
    cancelled: list = field(default_factory=list)
    running: int = 0
    max_running: int = 0
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request, out_dir, progress=None, cancel=None) -> JobOutputs:
        with self._guard:
            self.calls.append(request)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            return self._run(request, Path(out_dir), progress or (lambda e: None), cancel)
        finally:
            with self._guard:
                self.running -= 1

    def _run(self, request, out_dir: Path, progress, cancel) -> JobOutputs:
        height, width = request.image.shape[:2]
        for view in range(self.num_views):
            if cancel is not None and cancel.is_set():
                self.cancelled.append(request.config.scene.seed)
                raise Cancelled("cancelled")
            progress(ProgressEvent("outpaint", view, self.num_views, view / self.num_views, f"view {view}"))
            time.sleep(self.view_delay_s)
        if self.fail == "job_error":
            raise JobError("view 1 came out with invalid values (NaN); nothing was written")
        if self.fail == "black":
            raise JobError("view 2 came out black; nothing was written")
        if self.fail == "oom":
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "partial.bin").write_bytes(b"x" * 1024)  # the app must remove the job's files
            raise MemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if self.fail == "crash":
            raise RuntimeError(f"unexpected failure reading {out_dir}/secret/internal.bin")

        # a seeded slab of splats coloured from the photo, centred where Gradio's viewer orbits (the origin)
        seed = request.config.scene.seed
        rng = np.random.default_rng(seed)
        count = 6000
        points = np.stack(
            [rng.uniform(-1, 1, count), rng.uniform(-0.75, 0.75, count), rng.uniform(-0.05, 0.05, count)], axis=1
        ).astype(np.float32)
        photo = request.image.numpy()
        rows = ((points[:, 1] + 0.75) / 1.5 * (height - 1)).round().astype(int)  # +Y down: top rows first
        cols = ((points[:, 0] + 1) / 2 * (width - 1)).round().astype(int)
        colors = photo[rows, cols].astype(np.float32)

        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "splats.ply").write_bytes(splat_ply_bytes(points, colors, comment=f"seed {seed}"))
        (out_dir / "viewer").mkdir(exist_ok=True)  # the viewer copy: here the same slab, marked as the copy
        viewer_comment = f"{VIEWER_COPY_COMMENT} seed {seed}"
        (out_dir / "viewer" / "splats.ply").write_bytes(splat_ply_bytes(points, colors, comment=viewer_comment))
        (out_dir / "scene.glb").write_bytes(trimesh.creation.box().export(file_type="glb"))
        (out_dir / "scene.splat").write_bytes(b"\0" * 32 * count)
        (out_dir / "points.ply").write_bytes(points_ply_bytes(points, colors))
        frames = out_dir / "images"
        frames.mkdir(exist_ok=True)
        depth_dir = out_dir / "depth_preview"
        depth_dir.mkdir(exist_ok=True)
        image_u8 = (photo * 255 + 0.5).astype(np.uint8)
        gallery = []
        for view in range(self.num_views):
            stem = f"frame_{view:03d}"
            (frames / f"{stem}.png").write_bytes(_png(image_u8))
            (depth_dir / f"{stem}.png").write_bytes(_png(np.full((height, width), 40 * view, np.uint8)))
            gallery += [(frames / f"{stem}.png", f"view {view}"), (depth_dir / f"{stem}.png", f"view {view} depth")]
        transforms = json.dumps({"frames": [{"file_path": f"images/frame_{v:03d}.png"} for v in range(self.num_views)]})
        (out_dir / "transforms.json").write_text(transforms)
        with zipfile.ZipFile(out_dir / "frames.zip", "w") as archive:
            archive.writestr("transforms.json", transforms)
            for view in range(self.num_views):
                archive.write(frames / f"frame_{view:03d}.png", f"images/frame_{view:03d}.png")
        progress(ProgressEvent("done", -1, self.num_views, 1.0, f"{count} points"))
        scene = wall_scene(request.image, self.num_views) if self.with_scene else None
        return JobOutputs(
            out_dir=out_dir,
            splat_ply=out_dir / "splats.ply",
            dotsplat=out_dir / "scene.splat",
            points_ply=out_dir / "points.ply",
            transforms_json=out_dir / "transforms.json",
            frames_dir=frames,
            frames_zip=out_dir / "frames.zip",
            video=None,
            timings={"outpaint": 0.01 * self.num_views, "splats": 0.02},
            points_per_view=[count // self.num_views] * self.num_views,
            gallery=gallery,
            viewer_ply=out_dir / "viewer" / "splats.ply",
            mesh_glb=out_dir / "scene.glb",
            result=scene,
            splats=None if scene is None else init_from_cloud(scene.cloud),  # "fitted": reused when objects are added
        )


def wall_scene(image, num_views: int) -> SceneResult:
    """A scene of exactly known depth: the stage cameras looking at the wall z = :data:`WALL_DEPTH` above the
    floor y = :data:`FLOOR_Y`, every view coloured with the photo; the cloud lifts every pixel of every view."""
    height, width = image.shape[:2]
    stage = make_cameras("stage", (width, height))
    frames, points, colors, radii, sources = [], [], [], [], []
    rows, cols = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    for index in range(num_views):
        camera = stage[index % len(stage)]
        K, c2w = camera.K, camera.cam_to_world
        rays = torch.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], torch.ones_like(cols)], -1)
        directions = rays @ c2w[:3, :3].T  # [H, W, 3] world, one unit of z-depth each
        origin = c2w[:3, 3]
        to_wall = (WALL_DEPTH - origin[2]) / directions[..., 2]
        to_floor = torch.where(directions[..., 1] > 1e-6, (FLOOR_Y - origin[1]) / directions[..., 1], torch.inf)
        depth = torch.minimum(to_wall, to_floor).float()  # [H, W] z-depth of the nearer surface
        rgb = image.float()
        frames.append(Frame(index, camera, rgb, depth, torch.ones(height, width, dtype=torch.bool)))
        points.append((origin + directions * depth[..., None]).reshape(-1, 3))
        colors.append(rgb.reshape(-1, 3))
        radii.append((0.5 * depth / K[0, 0]).reshape(-1))
        sources.append(torch.full((height * width,), index, dtype=torch.long))
    cloud = PointCloud(torch.cat(points).float(), torch.cat(colors), torch.cat(radii).float(), torch.cat(sources))
    return SceneResult(frames, cloud, points_per_view=[height * width] * num_views)


@contextlib.contextmanager
def launched(demo, **extra):
    """Serve ``demo`` (built by :func:`app.build_demo`) on a free 127.0.0.1 port; yields the base URL."""
    import app

    port = free_port()
    _, url, _ = app.launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True, **extra)
    try:
        yield url.rstrip("/")
    finally:
        demo.close()


@contextlib.contextmanager
def served_fake_app(workdir: Path, queue_max_size: int):
    """A server for a test module: a fake runner the tests reconfigure, outputs under ``workdir``.

    Yields ``(runner, url, settings, demo)``.
    """
    import app  # noqa: PLC0415 - the front end under test

    runner = FakeRunner()
    settings = app.AppSettings(output_root=workdir / "jobs", queue_max_size=queue_max_size)
    demo = app.build_demo(runner, settings, use_zero_gpu=False)
    with launched(demo) as url:
        yield runner, url, settings, demo


def last_update(updates):
    """Run a handler generator to the end; its last update."""
    return collections.deque(updates, maxlen=1)[0]


def write_photo(path: Path, width: int = 128, height: int = 96) -> Path:
    """A photo with a bright top half (sky) and a dark green bottom half (ground), plus texture."""
    rng = np.random.default_rng(0)
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2] = (150, 190, 240)
    image[height // 2 :] = (60, 110, 40)
    image = np.clip(image.astype(int) + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(path)
    return path


def last_update_kept(updates, keep_dir: Path):
    """Like :func:`last_update`, but the files the last update names (viewer, downloads, gallery) are copied into
    ``keep_dir`` before the handler finishes and removes its job folder, as Gradio copies them into its cache."""
    import shutil

    keep_dir.mkdir(parents=True, exist_ok=True)

    def keep(value):
        if isinstance(value, str) and Path(value).is_file() and "jobs" in Path(value).parts:
            target = keep_dir / f"{len(list(keep_dir.iterdir()))}-{Path(value).name}"
            shutil.copyfile(value, target)
            return str(target)
        if isinstance(value, (list, tuple)):
            return type(value)(keep(item) for item in value)
        return value

    last = None
    for update in updates:
        last = keep(update)
    return last
