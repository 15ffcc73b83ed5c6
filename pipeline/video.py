"""Fly-through videos of fitted splats: camera paths (interpolated generation path, or an orbit) and MP4 output.

Frames are rendered with the pure-torch rasteriser (or any backend by name) and encoded with imageio's FFMPEG
plugin (imageio-ffmpeg's bundled binary): H.264, yuv420p, ``+faststart`` so browsers can stream it. The file is
written to a temp name in the same directory and renamed into place (atomic).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix, rotation_matrix_to_axis_angle

from core.cameras import Camera, rigid_inverse, rotation_yaw_pitch
from core.components import Cancelled
from core.files import atomic_path
from core.images import to_uint8
from pipeline.splats import Splats
from renderers.gaussians import RasterSettings

DEFAULT_FPS = 24
VIDEO_QUALITY = 7
"""imageio-ffmpeg quality 0-10 (10 best); 7 keeps a 30 s 512×384 clip to a few MB."""
MAX_VIDEO_FRAMES = 3600
"""Refuse paths longer than this (2.5 min at 24 fps): a typo in steps must not render for hours."""


def interpolate_cameras(cameras: list[Camera], steps_per_segment: int = 24, loop: bool = False) -> list[Camera]:
    """A smooth path through ``cameras`` in order: rotations by geodesic interpolation, positions linearly.

    Intrinsics and size are those of the first camera.
    """
    if not cameras:
        raise ValueError("interpolate_cameras needs at least one camera")
    if steps_per_segment < 1:
        raise ValueError(f"steps_per_segment must be >= 1, got {steps_per_segment}")
    first = cameras[0]
    keys = [c.cam_to_world.double().cpu() for c in cameras] + ([cameras[0].cam_to_world.double().cpu()] if loop else [])
    if len(keys) == 1:
        return [first]
    out = []
    for a, b in zip(keys[:-1], keys[1:]):
        omega = rotation_matrix_to_axis_angle((a[:3, :3].T @ b[:3, :3])[None])  # [1, 3] relative turn
        fractions = torch.arange(steps_per_segment, dtype=torch.float64)[:, None] / steps_per_segment  # [S, 1]
        turns = axis_angle_to_rotation_matrix(omega * fractions)  # [S, 3, 3] geodesic interpolation
        for step in range(steps_per_segment):
            t = step / steps_per_segment
            c2w = torch.eye(4, dtype=torch.float64)
            c2w[:3, :3] = a[:3, :3] @ turns[step]
            c2w[:3, 3] = (1 - t) * a[:3, 3] + t * b[:3, 3]
            out.append(Camera(first.K, rigid_inverse(c2w).to(first.world_to_cam), first.height, first.width))
    if not loop:
        out.append(Camera(first.K, rigid_inverse(keys[-1]).to(first.world_to_cam), first.height, first.width))
    return out


def orbit_cameras(base: Camera, num_frames: int = 120, degrees: float = 360.0, radius: float = 0.0) -> list[Camera]:
    """Turn ``base`` by ``degrees`` about the world vertical (-y) through its centre (a panorama sweep).

    ``radius`` > 0 (scene units) places the camera that far behind the pivot along its view direction, so it
    circles the pivot while looking out past it: the parallax makes the 3D structure visible.
    """
    if not 1 <= num_frames <= MAX_VIDEO_FRAMES:
        raise ValueError(f"num_frames must be in 1..{MAX_VIDEO_FRAMES}, got {num_frames}")
    c2w0 = base.cam_to_world.double().cpu()
    out = []
    for i in range(num_frames):
        c2w = torch.eye(4, dtype=torch.float64)
        c2w[:3, :3] = rotation_yaw_pitch(degrees * i / num_frames, 0.0) @ c2w0[:3, :3]  # about world y
        c2w[:3, 3] = c2w0[:3, 3] - radius * c2w[:3, 2]
        out.append(Camera(base.K, rigid_inverse(c2w).to(base.world_to_cam), base.height, base.width))
    return out


def render_frames(
    splats: Splats,
    cameras: list[Camera],
    rasterizer: str = "torch",
    settings: RasterSettings = RasterSettings(),
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    max_side: int | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[np.ndarray]:  # each [H, W, 3] uint8, H and W even
    """Render every camera to uint8 RGB (sides cropped to even numbers, as H.264/yuv420p needs)."""
    if not cameras:
        raise ValueError("render_frames needs at least one camera")
    if len(cameras) > MAX_VIDEO_FRAMES:
        raise ValueError(f"{len(cameras)} video frames is more than the limit {MAX_VIDEO_FRAMES}")
    bg = torch.tensor(background, dtype=splats.means.dtype, device=splats.means.device)
    frames = []
    with torch.no_grad():
        for i, camera in enumerate(cameras):
            if cancel is not None and cancel.is_set():
                raise Cancelled("video rendering cancelled")
            if max_side is not None and max(camera.height, camera.width) > max_side:
                f = max_side / max(camera.height, camera.width)
                camera = camera.scaled(max(2, round(camera.height * f)), max(2, round(camera.width * f)))
            rgb = splats.render(camera, rasterizer, settings, bg).rgb
            if not bool(torch.isfinite(rgb).all()):
                raise ValueError(f"video frame {i} has non-finite pixels")
            image = to_uint8(rgb)
            frames.append(image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2])
            if progress is not None:
                progress(i + 1, len(cameras))
    return frames


def write_mp4(path: str | Path, frames: list[np.ndarray], fps: int = DEFAULT_FPS) -> Path:
    """Encode uint8 frames to H.264 MP4 atomically."""
    import imageio.v2 as imageio  # noqa: PLC0415 - video output only

    if not frames:
        raise ValueError("write_mp4 needs at least one frame")
    if not 1 <= fps <= 120:
        raise ValueError(f"fps must be in 1..120, got {fps}")
    path = Path(path)
    with atomic_path(path, suffix=".mp4") as temp:
        writer = imageio.get_writer(
            temp,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            quality=VIDEO_QUALITY,
            pixelformat="yuv420p",
            macro_block_size=1,
            output_params=["-movflags", "+faststart"],
            ffmpeg_log_level="error",
        )
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()
    return path


def render_flythrough(
    path: str | Path,
    splats: Splats,
    cameras: list[Camera],
    fps: int = DEFAULT_FPS,
    rasterizer: str = "torch",
    max_side: int | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Render ``cameras`` (e.g. ``interpolate_cameras(frame cameras)`` or ``orbit_cameras(camera0)``) to an MP4."""
    frames = render_frames(splats, cameras, rasterizer, max_side=max_side, cancel=cancel, progress=progress)
    return write_mp4(path, frames, fps)
