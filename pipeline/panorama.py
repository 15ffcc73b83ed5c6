"""An equirectangular 360° panorama (RGB + 16-bit distance) rendered from the scene's point cloud.

The panorama is seen from view 0's camera centre: its middle column looks where the input photo looks, its top
row straight up (scene -y), longitude grows to the right (the ring's positive yaw) from -180° at the left edge to
+180° at the right, latitude from +90° (top) to -90°. Width = 2 × height.

Rendering splats each point into the panorama by its direction: a point of world radius ``r`` at distance ``d``
covers ``FOOTPRINT_SCALE · r / d`` radians around its direction (an ellipse in pixels, wider toward the poles where
rows shrink), and on each pixel the nearest point along the ray wins (a z-buffer: occlusion).
Pixels no point covers stay unknown: black in the RGB image, 0 in the depth image.

Depth is the **distance along the ray** (Euclidean, metres), the usual convention for equirectangular depth
(it has no single optical axis); stored as 16-bit millimetres like the frames' depth PNGs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from core.cameras import Camera
from core.types import PointCloud
from pipeline.export import OUTPUT_PNG_LEVEL, depth_to_uint16_mm, png_bytes

PANORAMA_MODES = ("360", "sphere")
"""Camera paths that go all around: a panorama of anything narrower would be mostly empty."""
PANORAMA_WIDTH = 2048
"""Default width (height = width / 2): 0.18° per pixel, about the angular resolution of 512-px views at the
default ~53° field of view (0.1° per pixel) without wasting pixels on gaps between points."""
FOOTPRINT_SCALE = 2.0
"""A point's footprint radius (half a pixel of the view that lifted it) covers the gap to its neighbour at 2×."""
MAX_FOOTPRINT_PX = 8
"""Largest footprint radius in pixel rows: points nearer than that look like blobs; capped for bounded work."""
DISTANCE_QUANTUM = 1e-5
"""Distances are compared in 10 µm steps (packed into an integer key with the point's index)."""
INDEX_BITS = 30
"""Bits of the z-buffer key that hold the point index: up to ~1 billion points."""
MAX_PANORAMA_PIXELS = 8192 * 4096
"""Bounded memory: the z-buffer and images take ~28 bytes/pixel, ~0.9 GB at 8192 × 4096."""


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
    if width < 8 or width % 2 or (width // 2) * width > MAX_PANORAMA_PIXELS:
        raise ValueError(f"panorama width must be even and between 8 and {int(math.sqrt(2 * MAX_PANORAMA_PIXELS))}")
    if len(cloud) == 0:
        raise ValueError("the point cloud is empty: nothing to render into a panorama")
    height = width // 2
    pixel_rad = 2 * math.pi / width  # one pixel, in radians, along a row at the equator and along a column

    # 1. Points in view 0's camera axes: longitude/latitude, distance and angular footprint
    w2c = camera.world_to_cam.double().cpu()
    points = cloud.points.detach().double().cpu() @ w2c[:3, :3].T + w2c[:3, 3]  # [N, 3]
    distance = points.norm(dim=1)  # [N]
    usable = distance > 1e-9
    points, distance = points[usable], distance[usable]
    colors = cloud.colors.detach().float().cpu()[usable]  # [N, 3]
    lon = torch.atan2(points[:, 0], points[:, 2])  # [N] right of forward
    lat = torch.asin((-points[:, 1] / distance).clamp(-1, 1))  # [N] up positive
    col = (lon / (2 * math.pi) + 0.5) * width  # [N] fractional pixel coordinates
    row = (0.5 - lat / math.pi) * height
    reach = FOOTPRINT_SCALE * cloud.radii.detach().double().cpu()[usable] / distance / pixel_rad  # [N] pixels
    reach_rows = reach.clamp(max=MAX_FOOTPRINT_PX)
    reach_cols = (reach / lat.cos().clamp_min(1e-6)).clamp(max=width / 2)  # rows shrink toward the poles

    # 2. Z-buffer over every pixel a point's footprint ellipse covers (its own pixel always); nearest wins. The
    # key packs the quantised distance above the point index, so one amin picks the winner and its id.
    order = torch.argsort(reach_cols, descending=True)  # points needing the widest footprints first
    key_buffer = torch.full((height * width,), torch.iinfo(torch.int64).max, dtype=torch.int64)
    keys = (distance[order] / DISTANCE_QUANTUM).round().long().clamp(max=(1 << 62 >> INDEX_BITS) - 1)
    keys = (keys << INDEX_BITS) | order
    row_o, col_o = row[order], col[order]
    rr_o, rc_o = reach_rows[order], reach_cols[order]
    base_row, base_col = row_o.floor().long(), col_o.floor().long()
    max_dr = math.ceil(float(rr_o.max()))
    widest = reach_cols[order]
    for dc in range(-math.ceil(float(widest[0])), math.ceil(float(widest[0])) + 1):
        count = int((widest >= abs(dc) - 1).sum())  # sorted: the points that may reach this column offset
        if count == 0:
            continue
        for dr in range(-max_dr, max_dr + 1):
            r = base_row[:count] + dr
            c = base_col[:count] + dc
            du = (c + 0.5 - col_o[:count]) / rc_o[:count].clamp_min(1e-9)
            dv = (r + 0.5 - row_o[:count]) / rr_o[:count].clamp_min(1e-9)
            hit = (du * du + dv * dv <= 1.0) | ((dr == 0) & (dc == 0))
            hit &= (r >= 0) & (r < height)
            if not bool(hit.any()):
                continue
            target = r[hit] * width + c[hit] % width  # longitude wraps around
            key_buffer.scatter_reduce_(0, target, keys[:count][hit], reduce="amin")

    # 3. Images
    known = key_buffer != torch.iinfo(torch.int64).max  # [H * W]
    winner = (key_buffer[known] & ((1 << INDEX_BITS) - 1)).long()
    rgb = torch.zeros(height * width, 3)
    dist = torch.zeros(height * width)
    rgb[known] = colors[winner]
    dist[known] = distance[winner].float()
    return Panorama(rgb.reshape(height, width, 3), dist.reshape(height, width), known.reshape(height, width))


def panorama_files(panorama: Panorama) -> dict[str, bytes]:
    """``panorama.png`` (8-bit RGB, unknown = black) and ``panorama_depth.png`` (16-bit distance in mm, 0 = unknown).

    Example:
        >>> sorted(panorama_files(Panorama(torch.zeros(4, 8, 3), torch.zeros(4, 8), torch.zeros(4, 8, dtype=bool))))
        ['panorama.png', 'panorama_depth.png']
    """
    from core.images import to_uint8

    return {
        "panorama.png": png_bytes(to_uint8(panorama.rgb), OUTPUT_PNG_LEVEL),
        "panorama_depth.png": png_bytes(depth_to_uint16_mm(panorama.distance), OUTPUT_PNG_LEVEL),
    }
