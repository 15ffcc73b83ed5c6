"""An equirectangular 360° panorama (RGB + 16-bit distance) rendered from the scene's point cloud.

The panorama is seen from view 0's camera centre: its middle column looks where the input photo looks, its top
row straight up (scene -y), longitude grows to the right (the ring's positive yaw) from -180° at the left edge to
+180° at the right, latitude from +90° (top) to -90°. Width = 2 × height.

Rendering is by ray direction: every panorama pixel's ray is matched (k-d tree on unit directions) to the cloud
points whose angular footprint it passes through — a point of world radius ``r`` at distance ``d`` covers
``FOOTPRINT_SCALE · r / d`` radians around its direction — and the nearest of them along the ray wins (occlusion).
Pixels no point covers stay unknown: black in the RGB image, 0 in the depth image.

Depth is the **distance along the ray** (Euclidean, metres), the usual convention for equirectangular depth
(it has no single optical axis); stored as 16-bit millimetres like the frames' depth PNGs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from core.cameras import Camera
from core.types import PointCloud
from pipeline.export import depth_to_uint16_mm, png_bytes

PANORAMA_MODES = ("360", "sphere")
"""Camera paths that go all around: a panorama of anything narrower would be mostly empty."""
PANORAMA_WIDTH = 2048
"""Default width (height = width / 2): 0.18° per pixel, about the angular resolution of 512-px views at the
default ~53° field of view (0.1° per pixel) without wasting pixels on gaps between points."""
FOOTPRINT_SCALE = 2.0
"""A point's footprint radius (half a pixel of the view that lifted it) covers the gap to its neighbour at 2×."""
NEIGHBOURS = 16
"""Candidate points per ray: enough to reach the front surface behind a few background points in direction."""
MAX_PANORAMA_PIXELS = 8192 * 4096
"""Bounded memory: the ray table is 12 bytes/pixel (plus k-d tree answers), ~1.5 GB at 8192 × 4096."""


@dataclass
class Panorama:
    """An equirectangular rendering of the scene."""

    rgb: Tensor  # [H, W, 3] float32 in [0, 1], 0 where unknown
    distance: Tensor  # [H, W] float32 metres along the ray, 0 = unknown
    known: Tensor  # [H, W] bool, True where a point covers the pixel

    @property
    def coverage(self) -> float:
        """Fraction of the sphere's pixels that are known (not area-weighted)."""
        return float(self.known.float().mean())


def pixel_directions(height: int, width: int) -> Tensor:  # -> [H, W, 3] unit vectors, view-0 camera axes
    """The ray of each panorama pixel centre in view 0's camera axes (x right, y down, z forward)."""
    lon = ((torch.arange(width, dtype=torch.float64) + 0.5) / width - 0.5) * 2 * math.pi  # [W]
    lat = (0.5 - (torch.arange(height, dtype=torch.float64) + 0.5) / height) * math.pi  # [H]
    lat, lon = torch.meshgrid(lat, lon, indexing="ij")
    return torch.stack([lat.cos() * lon.sin(), -lat.sin(), lat.cos() * lon.cos()], dim=-1)


def render_panorama(cloud: PointCloud, camera: Camera, width: int = PANORAMA_WIDTH) -> Panorama:
    """Render ``cloud`` into an equirectangular panorama centred on ``camera`` (view 0).

    Args:
        cloud: the fused point cloud (``SceneResult.cloud``), scene frame.
        camera: the panorama's centre and orientation (``result.frames[0].camera``).
        width: panorama width in pixels (even; the height is half of it).

    Returns:
        The panorama; see the module docstring for the layout.

    Raises:
        ValueError: an odd or out-of-range width, or an empty cloud.
    """
    from scipy.spatial import cKDTree

    if width < 8 or width % 2 or (width // 2) * width > MAX_PANORAMA_PIXELS:
        raise ValueError(f"panorama width must be even and between 8 and {int(math.sqrt(2 * MAX_PANORAMA_PIXELS))}")
    if len(cloud) == 0:
        raise ValueError("the point cloud is empty: nothing to render into a panorama")
    height = width // 2

    # 1. Points in view 0's camera axes: direction and distance from the centre
    w2c = camera.world_to_cam.double().cpu()
    points = cloud.points.detach().double().cpu() @ w2c[:3, :3].T + w2c[:3, 3]  # [N, 3]
    distance = points.norm(dim=1)  # [N]
    usable = distance > 1e-9
    points, distance = points[usable], distance[usable]
    colors = cloud.colors.detach().float().cpu()[usable]  # [N, 3]
    reach = FOOTPRINT_SCALE * cloud.radii.detach().double().cpu()[usable] / distance  # [N] radians
    directions = (points / distance[:, None]).numpy()

    # 2. For every pixel ray, the nearest-in-direction points; keep those whose footprint the ray passes through
    rays = pixel_directions(height, width).reshape(-1, 3).numpy()  # [P, 3]
    k = min(NEIGHBOURS, len(directions))
    chord, index = cKDTree(directions).query(rays, k=k)  # [P, k] each
    chord, index = chord.reshape(len(rays), k), index.reshape(len(rays), k)
    angle = 2 * np.arcsin(np.clip(chord / 2, 0, 1))  # chord length on the unit sphere -> angle
    covers = angle <= reach.numpy()[index]  # [P, k]
    along = np.where(covers, distance.numpy()[index], np.inf)  # [P, k]
    best = along.argmin(axis=1)  # [P]
    known = np.isfinite(along[np.arange(len(rays)), best])  # [P]
    winner = index[np.arange(len(rays)), best]  # [P]

    # 3. Images
    known_t = torch.from_numpy(known).reshape(height, width)
    rgb = torch.where(known_t[..., None], colors[torch.from_numpy(winner)].reshape(height, width, 3), 0.0)
    dist = torch.where(known_t, distance.float()[torch.from_numpy(winner)].reshape(height, width), 0.0)
    return Panorama(rgb.float(), dist.float(), known_t)


def panorama_files(panorama: Panorama) -> dict[str, bytes]:
    """``panorama.png`` (8-bit RGB, unknown = black) and ``panorama_depth.png`` (16-bit distance in mm, 0 = unknown).

    Example:
        >>> sorted(panorama_files(Panorama(torch.zeros(4, 8, 3), torch.zeros(4, 8), torch.zeros(4, 8, dtype=bool))))
        ['panorama.png', 'panorama_depth.png']
    """
    from core.images import to_uint8

    return {
        "panorama.png": png_bytes(to_uint8(panorama.rgb)),
        "panorama_depth.png": png_bytes(depth_to_uint16_mm(panorama.distance)),
    }
