"""Pinhole cameras and camera paths.

Conventions (used everywhere in WorldStitch; see README "Conventions"):

* Axes are OpenCV's: x right, y down, z forward. The world frame is the frame of view 0, so world "up" is -y.
* ``world_to_cam`` is a 4x4 rigid transform mapping world points to camera points: ``x_cam = R @ x_world + t``.
* ``K`` is 3x3 in pixels; pixel (u, v) = (column, row) and the centre of pixel (0, 0) is at (0.5, 0.5).
* Depth is z-depth in scene units (metres for real photos); 0 means unknown.
* Yaw turns right (about world -y, i.e. looking from above the camera turns clockwise), pitch looks up.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from scipy.spatial.transform import Rotation
from torch import Tensor

# The 360 ring: Invisible Stitch's 25° step, taken to both sides of the photo (0°, ±25°, ..., ±150°), and 180°
# where the sides meet. Invisible Stitch goes 0..250° in 25° steps and closes the remaining 110° in longer steps
# (272.5°, 316.25°; we had split it evenly, 36.7°): at the default 53° field of view a 25° step leaves a 49 % hole,
# a 36.7° step 69 %, and PatchMatch took 4.4-5.5 s for those against 2.1 s (room, 512x384, one view at a time).
# Symmetric sides make every hole the same size, the two chains equally long (their closure discrepancy meets
# opposite the photo) and the grow loop's pairs of views balanced on two cores: outpainting the room's ring took
# 19.6-19.7 s with 14 views against 21.8-26.8 s with the 13 of the old ring (quiet, alternating).
RING_STEP_DEG = 25.0
RING_SIDE_STEPS = 6  # ±25°, ..., ±150°; 180° closes the last 6.8° gap at the default field of view
SPHERE_MAX_STEP = 0.6  # sphere neighbours at most 60 % of the FoV apart = at least 40 % overlap


@dataclass(frozen=True)
class Camera:
    """A pinhole camera.

    Attributes:
        K: intrinsics in pixels.  # [3, 3]
        world_to_cam: rigid transform world -> camera (OpenCV axes).  # [4, 4]
        height: image height in pixels.
        width: image width in pixels.
    """

    K: Tensor  # [3, 3]
    world_to_cam: Tensor  # [4, 4]
    height: int
    width: int

    @property
    def cam_to_world(self) -> Tensor:  # [4, 4]
        return rigid_inverse(self.world_to_cam)

    @property
    def center(self) -> Tensor:  # [3]
        return self.cam_to_world[:3, 3]

    @property
    def hfov_deg(self) -> float:
        return math.degrees(2 * math.atan(self.width / (2 * float(self.K[0, 0]))))

    def to(self, device: torch.device | str) -> Camera:
        return Camera(self.K.to(device), self.world_to_cam.to(device), self.height, self.width)

    def scaled(self, height: int, width: int) -> Camera:
        """The same camera at another resolution (intrinsics rescaled)."""
        K = self.K.clone()
        K[0] *= width / self.width
        K[1] *= height / self.height
        return Camera(K, self.world_to_cam, height, width)


def rigid_inverse(T: Tensor) -> Tensor:  # [..., 4, 4] -> [..., 4, 4]
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    out = torch.zeros_like(T)
    out[..., :3, :3] = R.transpose(-1, -2)
    out[..., :3, 3:] = -R.transpose(-1, -2) @ t
    out[..., 3, 3] = 1
    return out


def intrinsics(height: int, width: int, hfov_deg: float | None = None, dtype=torch.float32) -> Tensor:  # [3, 3]
    """Square-pixel intrinsics with the principal point at the image centre.

    ``hfov_deg=None`` uses focal = image width (Invisible Stitch's default, hfov ≈ 53.13°).
    """
    focal = float(width) if hfov_deg is None else width / (2 * math.tan(math.radians(hfov_deg) / 2))
    return torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=dtype)


def rotation_yaw_pitch(yaw_deg: float, pitch_deg: float, dtype=torch.float64) -> Tensor:  # [3, 3]
    """Camera-to-world rotation for a camera turned by yaw (right positive) then pitch (up positive).

    Columns are the camera's x (right), y (down), z (forward) axes written in world coordinates. With OpenCV axes
    (y down) this is a rotation about the world's y axis by ``yaw``, then about the camera's own x axis by ``pitch``
    (intrinsic Y-X Euler angles), which is well defined looking straight up or down too.

    Example:
        >>> R = rotation_yaw_pitch(90.0, 0.0)
        >>> [round(float(v), 6) for v in R[:, 2]]  # turned right: forward is +x
        [1.0, 0.0, 0.0]
    """
    matrix = Rotation.from_euler("YX", [yaw_deg, pitch_deg], degrees=True).as_matrix()
    return torch.from_numpy(matrix).to(dtype)


def pose(
    rotation_c2w: Tensor, position: Tensor | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:  # [3, 3], [3] -> [4, 4] world_to_cam
    """world_to_cam of a camera with the given camera-to-world rotation and centre (computed in float64, returned
    in ``dtype``: float32 like every :class:`Camera`)."""
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = rotation_c2w.double()
    if position is not None:
        c2w[:3, 3] = position.double()
    return rigid_inverse(c2w).to(dtype)


def look_at(eye: Tensor, target: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:  # [3], [3] -> [4, 4]
    """world_to_cam of a camera at ``eye`` looking at ``target`` with world up = -y."""
    eye, target = eye.double(), target.double()
    forward = (target - eye) / (target - eye).norm()
    yaw = math.degrees(math.atan2(float(forward[0]), float(forward[2])))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, -float(forward[1])))))
    return pose(rotation_yaw_pitch(yaw, pitch), eye, dtype)


@dataclass(frozen=True)
class View:
    """One camera on a path, described the way people think about it, or by an explicit ``world_to_cam``."""

    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    hfov_deg: float | None = None  # None: the path's default FoV
    world_to_cam: Tensor | None = None  # [4, 4] float64; when given, yaw/pitch/position are not used


def ring_yaws() -> list[float]:
    """The 14 yaws of the 360 ring: 0°, then 25° steps to both sides up to ±150°, then 180° where the sides meet."""
    steps = [RING_STEP_DEG * k for k in range(1, RING_SIDE_STEPS + 1)]
    return [0.0, *steps, *(360.0 - y for y in steps), 180.0]


def ordered_ring(yaws: list[float]) -> list[float]:
    """Order yaws so each new view is next to an existing one, the two sides taking turns: 0, then the nearest to
    the right, the nearest to the left, the next to the right, ... (one side's leftovers at the end).

    Taking turns makes consecutive views face away from each other, so the grow loop can fill them at the same
    time (:func:`views_overlap`, ``pipeline.grow``) until the two sides meet.
    """

    def signed(y: float) -> float:
        return ((y + 180.0) % 360.0) - 180.0

    ordered = sorted(yaws, key=lambda y: (abs(signed(y)), signed(y) < 0))
    first, rest = ordered[:1], ordered[1:]
    right = [y for y in rest if signed(y) >= 0]
    left = [y for y in rest if signed(y) < 0]
    turns = [y for pair in zip(right, left) for y in pair]
    return first + turns + right[len(left) :] + left[len(right) :]


OVERLAP_MARGIN_PX = 8.0
"""How close to a camera's border another camera's view may come and still count as apart: 16× the lifted
points' half-pixel footprint (``GrowConfig.point_footprint_px``)."""

OVERLAP_SAMPLE_PX = 4.0
"""Spacing of the pixels :func:`views_overlap` tests: finer than the margin, so no overlap wider than the margin
slips between two samples."""


def views_overlap(a: Camera, b: Camera, margin_px: float = OVERLAP_MARGIN_PX, covered: Sequence[Camera] = ()) -> bool:
    """Whether something new in one camera's view could show in the other's, within ``margin_px`` of its border.

    For cameras at one centre (a ring or sphere path, which turns in place) what a camera sees is a cone of
    directions whatever the depth: the two overlap where a ray of one lands inside the other. Directions inside a
    ``covered`` camera (already grown views: nothing there is new, short of holes the grow loop fills) do not
    count, so the two turns next to the photo are apart although both see its middle. Cameras at different centres
    are taken to overlap (a near point can show anywhere).

    Example:
        >>> K = intrinsics(384, 512)
        >>> cam = lambda yaw: Camera(K, pose(rotation_yaw_pitch(yaw, 0.0), torch.zeros(3)), 384, 512)
        >>> views_overlap(cam(25.0), cam(-50.0)), views_overlap(cam(25.0), cam(50.0))
        (False, True)
        >>> views_overlap(cam(25.0), cam(-25.0)), views_overlap(cam(25.0), cam(-25.0), covered=[cam(0.0)])
        (True, False)
    """
    if any(float((c.center - a.center).norm()) > 1e-6 * (1.0 + float(a.center.norm())) for c in (b, *covered)):
        return True
    dtype = torch.float64
    u, v = torch.meshgrid(
        torch.linspace(0.0, a.width, max(2, math.ceil(a.width / OVERLAP_SAMPLE_PX) + 1), dtype=dtype),
        torch.linspace(0.0, a.height, max(2, math.ceil(a.height / OVERLAP_SAMPLE_PX) + 1), dtype=dtype),
        indexing="xy",
    )
    pixels = torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(u.numel(), dtype=dtype)], dim=-1)  # [P, 3]
    rays = pixels @ torch.linalg.inv(a.K.to(dtype)).T @ a.cam_to_world.to(dtype)[:3, :3].T  # [P, 3] world
    shared = _inside(rays, b, margin_px)  # [P]: within b's image grown by the margin
    for camera in covered:
        shared &= ~_inside(rays, camera, 0.0)  # inside a grown view: nothing new there (short of its holes)
    return bool(shared.any())


def _inside(rays: Tensor, camera: Camera, margin_px: float) -> Tensor:  # [P, 3] world directions -> [P] bool
    """Which directions land inside ``camera``'s image grown by ``margin_px`` (shrunk when negative)."""
    local = rays @ camera.world_to_cam.to(rays.dtype)[:3, :3].T  # [P, 3]
    ahead = local[:, 2] > 1e-9
    projected = local @ camera.K.to(rays.dtype).T
    uv = projected[:, :2] / torch.where(ahead, projected[:, 2], torch.ones_like(projected[:, 2]))[:, None]
    return (
        ahead
        & (uv[:, 0] >= -margin_px)
        & (uv[:, 0] <= camera.width + margin_px)
        & (uv[:, 1] >= -margin_px)
        & (uv[:, 1] <= camera.height + margin_px)
    )


def path_views(mode: str, hfov_deg: float | None = None, aspect: float = 0.75) -> list[View]:
    """Named camera paths. View 0 is always the input photo's camera."""
    if mode == "single":
        return [View(0.0)]
    if mode == "stage":
        return [View(0.0), View(RING_STEP_DEG), View(-RING_STEP_DEG)]
    if mode == "360":
        return [View(y) for y in ordered_ring(ring_yaws())]
    if mode == "sphere":
        return sphere_views(hfov_deg, aspect)
    raise ValueError(f"unknown mode {mode!r}: expected single, stage, 360, sphere or a path .json file")


def sphere_views(hfov_deg: float | None, aspect: float = 0.75) -> list[View]:
    """A level ring, rings above and below, then straight up and down, so floor and sky are generated.

    Neighbours are at most ``SPHERE_MAX_STEP`` of the field of view apart (horizontally within a ring, vertically
    between rings), so every view overlaps an earlier one by at least 40 % of its field of view. ``aspect`` is
    height / width. Rings shrink with cos(pitch); the floor ring comes before the sky ring of the same pitch.
    """
    hfov = hfov_deg if hfov_deg is not None else math.degrees(2 * math.atan(0.5))
    vfov = math.degrees(2 * math.atan(math.tan(math.radians(hfov) / 2) * aspect))
    pitch_step = SPHERE_MAX_STEP * vfov
    views: list[View] = []
    pitch = 0.0
    while pitch < 90.0 - 0.5 * pitch_step:
        count = max(3, math.ceil(360.0 * math.cos(math.radians(pitch)) / (SPHERE_MAX_STEP * hfov)))
        yaws = ordered_ring([i * 360.0 / count for i in range(count)])
        for sign in (1.0,) if pitch == 0 else (-1.0, 1.0):  # floor first: it is what people notice missing
            views += [View(y, sign * pitch) for y in yaws]
        pitch += pitch_step
    views += [View(0.0, -90.0), View(0.0, 90.0)]
    return views


def load_path_json(path: str | Path) -> list[View]:
    """Read a custom path: ``{"hfov_deg": 60, "views": [{"yaw": 0, "pitch": 0, "position": [x, y, z]}, ...]}``.

    A view may instead be ``{"world_to_cam": [[...4x4...]]}``. Raises ValueError naming the bad field.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read path file {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"path file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("views"), list) or not data["views"]:
        raise ValueError(f"path file {path}: field 'views' must be a non-empty list")
    default_fov = _number(data, "hfov_deg", path, None, 10.0, 170.0)
    views: list[View] = []
    for i, item in enumerate(data["views"]):
        where = f"views[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"path file {path}: field '{where}' must be an object")
        if "world_to_cam" in item:
            try:
                matrix = torch.tensor(item["world_to_cam"], dtype=torch.float64)
            except (TypeError, ValueError):
                matrix = None
            if matrix is None or matrix.shape != (4, 4) or not torch.isfinite(matrix).all():
                raise ValueError(f"path file {path}: field '{where}.world_to_cam' must be a 4x4 matrix of numbers")
            R = matrix[:3, :3]
            if not torch.allclose(R @ R.T, torch.eye(3, dtype=R.dtype), atol=1e-4):
                raise ValueError(f"path file {path}: field '{where}.world_to_cam' rotation is not orthonormal")
            fov = _number(item, "hfov_deg", path, default_fov, 10.0, 170.0, where)
            views.append(View(hfov_deg=fov, world_to_cam=matrix))
            continue
        yaw = _number(item, "yaw", path, 0.0, -720.0, 720.0, where)
        pitch = _number(item, "pitch", path, 0.0, -90.0, 90.0, where)
        fov = _number(item, "hfov_deg", path, default_fov, 10.0, 170.0, where)
        position = item.get("position", [0.0, 0.0, 0.0])
        if (
            not isinstance(position, list)
            or len(position) != 3
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in position)
        ):
            raise ValueError(f"path file {path}: field '{where}.position' must be a list of 3 numbers")
        views.append(View(yaw, pitch, tuple(float(v) for v in position), fov))
    return views


def _number(obj: dict, key: str, path, default, lo: float, hi: float, where: str = "") -> float | None:
    name = f"{where}.{key}" if where else key
    if key not in obj:
        return default
    value = obj[key]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"path file {path}: field '{name}' must be a number, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"path file {path}: field '{name}' = {value} is outside [{lo}, {hi}]")
    return float(value)


def make_cameras(mode: str | Path, size: tuple[int, int], hfov_deg: float | None = None) -> list[Camera]:
    """Cameras for a named mode or a path JSON file.

    Args:
        mode: ``single``, ``stage``, ``360``, ``sphere`` or a path to a JSON file (see :func:`load_path_json`).
        size: ``(width, height)`` in pixels, as everywhere else in the project.
        hfov_deg: horizontal field of view of every view that does not set its own (a path file's ``hfov_deg``
            wins over it); None = focal equal to the image width (≈ 53.13°).

    Returns:
        One float32 :class:`Camera` per view, in generation order.

    Example:
        >>> cameras = make_cameras("stage", (64, 48))
        >>> len(cameras), cameras[0].width, cameras[0].height
        (3, 64, 48)
    """
    width, height = size
    text = str(mode)
    views = load_path_json(text) if text.endswith(".json") else path_views(text, hfov_deg, height / width)
    cameras = []
    for view in views:
        K = intrinsics(height, width, view.hfov_deg if view.hfov_deg is not None else hfov_deg)
        if view.world_to_cam is not None:
            w2c = view.world_to_cam
        else:
            w2c = pose(rotation_yaw_pitch(view.yaw_deg, view.pitch_deg), torch.tensor(view.position))
        cameras.append(Camera(K, w2c.float(), height, width))
    return cameras
