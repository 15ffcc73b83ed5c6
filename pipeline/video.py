"""Fly-through videos of fitted splats: camera paths (interpolated generation path, or an orbit) and MP4 output.

Frames are rendered with the fastest Gaussian rasteriser for the splats' device ("auto": gsplat on CUDA, the
compiled CPU kernel elsewhere), or straight from the fused point cloud with the torch z-buffer (no fitting needed,
cheapest). Each frame is encoded as soon as it is rendered, with imageio's FFMPEG plugin (imageio-ffmpeg's bundled
binary): H.264, yuv420p, ``+faststart`` so browsers can stream it. The file is written to a temp name in the same
directory and renamed into place (atomic).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix, rotation_matrix_to_axis_angle
from torch import Tensor

from core.cameras import Camera, rigid_inverse, rotation_yaw_pitch
from core.components import Cancelled
from core.files import atomic_path
from core.images import to_uint8
from core.types import PointCloud
from pipeline.splats import Splats
from renderers.gaussians import RasterSettings, get_gaussian_rasterizer
from renderers.points import TorchPointRenderer

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


def _video_camera(camera: Camera, max_side: int | None) -> Camera:
    if max_side is not None and max(camera.height, camera.width) > max_side:
        f = max_side / max(camera.height, camera.width)
        camera = camera.scaled(max(2, round(camera.height * f)), max(2, round(camera.width * f)))
    return camera


def iter_frames(
    scene: Splats | PointCloud,
    cameras: list[Camera],
    rasterizer: str = "auto",
    settings: RasterSettings = RasterSettings(),
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    max_side: int | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[np.ndarray]:  # each [H, W, 3] uint8, H and W even
    """Render each camera in turn to uint8 RGB (sides cropped to even numbers, as H.264/yuv420p needs).

    Args:
        scene: fitted splats (drawn by the named Gaussian rasteriser; "auto" = the fastest on this device), or the
            fused point cloud (drawn by the torch z-buffer, with pinhole filling: the cheapest preview).
        cameras: the path, at most MAX_VIDEO_FRAMES.
        rasterizer: Gaussian backend name (see :func:`renderers.gaussians.get_gaussian_rasterizer`).
        settings: Gaussian rasteriser settings.
        background: colour behind the splats (point clouds leave unknown pixels black).
        max_side: frames larger than this are rendered at reduced size (intrinsics scaled); None = camera size.
        cancel: checked before each frame.

    Yields:
        One image per camera.

    Raises:
        ValueError: on an empty or too long path, or a frame with non-finite pixels.
        core.components.Cancelled: when ``cancel`` is set.
    """
    if not cameras:
        raise ValueError("a video needs at least one camera")
    if len(cameras) > MAX_VIDEO_FRAMES:
        raise ValueError(f"{len(cameras)} video frames is more than the limit {MAX_VIDEO_FRAMES}")
    if isinstance(scene, PointCloud):
        points = TorchPointRenderer()

        def draw(camera: Camera) -> Tensor:  # [H, W, 3]
            return points.render(scene.points, scene.colors, camera, scene.radii).rgb
    else:
        bg = torch.tensor(background, dtype=scene.means.dtype, device=scene.means.device)
        rasterizer_impl = get_gaussian_rasterizer(rasterizer, settings, scene.means.device)
        scales, opacities = torch.exp(scene.scales), torch.sigmoid(scene.opacities)

        def draw(camera: Camera) -> Tensor:  # [H, W, 3]
            return rasterizer_impl.render(
                scene.means, scene.quats, scales, opacities, scene.colors, camera, scene.sh_degree, bg
            ).rgb

    with torch.no_grad():
        for i, camera in enumerate(cameras):
            if cancel is not None and cancel.is_set():
                raise Cancelled("video rendering cancelled")
            rgb = draw(_video_camera(camera, max_side))
            if not bool(torch.isfinite(rgb).all()):
                raise ValueError(f"video frame {i} has non-finite pixels")
            image = to_uint8(rgb)
            yield image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]


def render_frames(
    scene: Splats | PointCloud,
    cameras: list[Camera],
    rasterizer: str = "auto",
    settings: RasterSettings = RasterSettings(),
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    max_side: int | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[np.ndarray]:  # each [H, W, 3] uint8, H and W even
    """All frames of :func:`iter_frames` as a list; ``progress(done, total)`` after each frame."""
    frames = []
    for image in iter_frames(scene, cameras, rasterizer, settings, background, max_side, cancel):
        frames.append(image)
        if progress is not None:
            progress(len(frames), len(cameras))
    return frames


def write_mp4(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: int = DEFAULT_FPS,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Encode uint8 frames to H.264 MP4 atomically (frames may be a generator: each is encoded as it comes).

    Args:
        path: the .mp4 to write; nothing is left there when encoding fails or is cancelled.
        frames: ``[H, W, 3]`` uint8 images of one size, even sides.
        fps: frames per second, 1-120.
        progress: called with the number of frames encoded so far, after each one.

    Raises:
        ValueError: when there are no frames or ``fps`` is out of range.
    """
    import imageio.v2 as imageio  # noqa: PLC0415 - video output only

    if not 1 <= fps <= 120:
        raise ValueError(f"fps must be in 1..120, got {fps}")
    path = Path(path)
    count = 0
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
                count += 1
                if progress is not None:
                    progress(count)
        finally:
            writer.close()
        if count == 0:
            raise ValueError("write_mp4 needs at least one frame")
    return path


def render_flythrough(
    path: str | Path,
    scene: Splats | PointCloud,
    cameras: list[Camera],
    fps: int = DEFAULT_FPS,
    rasterizer: str = "auto",
    max_side: int | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Render ``cameras`` (e.g. ``interpolate_cameras(frame cameras)`` or ``orbit_cameras(camera0)``) to an MP4.

    Frames are encoded as they are rendered, so ``progress(done, total)`` counts frames that are rendered and
    encoded (monotonic, ``total`` = number of cameras, the last call when the file is complete but for its
    rename), and memory does not grow with the length of the path.

    Args:
        path: the .mp4 to write (atomically).
        scene: fitted splats, or the point cloud for the cheapest preview (see :func:`iter_frames`).
        cameras: the path.
        fps: frames per second.
        rasterizer: Gaussian backend name; "auto" = the fastest on the splats' device.
        max_side: render frames at most this large (None = the cameras' size).
        cancel: checked before each frame.
        progress: see above.
    """
    frames = iter_frames(scene, cameras, rasterizer, max_side=max_side, cancel=cancel)
    report = None if progress is None else (lambda done: progress(done, len(cameras)))
    return write_mp4(path, frames, fps, report)
