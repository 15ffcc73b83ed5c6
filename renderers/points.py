"""Point-cloud reprojection with a torch z-buffer (same code on CPU and CUDA tensors).

Each point is drawn as a small square footprint centred on its projection; the nearest surface wins every pixel,
the point of that surface whose centre is nearest the pixel centre gives the pixel its colour, and the pixel's depth
is that surface interpolated at the pixel centre (inverse-squared-distance weights over the covering points).
Small holes inside covered areas (pinholes between stretched points) and pixels where a far surface shows through
such gaps ("see-through") are then filled from the surrounding foreground and reported as known, so that the
outpainter is only asked for genuinely unseen regions.

Conventions are the ones in :mod:`core.cameras`: OpenCV axes, ``world_to_cam`` 4x4, ``K`` in pixels, pixel
centres at +0.5, z-depth with 0 = unknown. Device and dtype follow the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.cameras import Camera
from core.checks import check_tensor
from core.components import RenderResult
from core.geometry import project

# The z-buffer packs (quantised squared pixel distance, point index) into one int64 key so that a single
# ``scatter_reduce(amin)`` returns the winning point's index. The index takes the low 32 bits ...
INDEX_BITS = 32
INDEX_MASK = (1 << INDEX_BITS) - 1
# ... and the squared distance, in units of 2**-22 px², the high 31 bits: footprints up to MAX_FOOTPRINT_LIMIT_PX
# give squared distances below 2 * (8 + 1)² = 162 px², and 162 * 2**22 < 2**31 keeps the key positive.
DIST_KEY_SCALE = float(1 << 22)
MAX_FOOTPRINT_LIMIT_PX = 8.0
# Largest int64, the "no point here" value of the packed z-buffer.
EMPTY_KEY = torch.iinfo(torch.int64).max
# Depth is interpolated with weights 1 / (dist² + eps): eps keeps a point exactly on the pixel centre finite, and at
# 0.01 px² such a point outweighs a neighbour one pixel away 100 to 1 (re-rendering from the lifting camera is exact).
DEPTH_WEIGHT_EPS_PX2 = 0.01


@dataclass(frozen=True)
class PointRenderConfig:
    """Settings of the point renderers (both backends share them)."""

    near: float = 1e-3
    """Near plane in scene units: points with camera z <= near are ignored (behind or touching the camera)."""

    min_footprint_px: float = 0.75
    """Smallest footprint half-width in pixels. A cloud lifted from a depth map at the render resolution has
    radius 0.5 px (its points tile the image exactly from the lifting camera); turning the camera 25° spreads those
    points up to ~1.25 px apart horizontally and ~1.12 px vertically near the image edge, so a 0.75 px half-width
    (1.5 px wide squares) still leaves no pinholes, while a point re-rendered from its own camera still covers only
    its own pixel."""

    max_footprint_px: float = 3.0
    """Largest footprint half-width in pixels: points very close to the camera are capped so one point cannot
    paint a large blob; gaps this leaves are filled as pinholes or left to the outpainter. At most 8."""

    surface_band: float = 0.03
    """Footprints whose depth is within this fraction of the nearest depth at a pixel belong to the same surface;
    the point among them whose centre is nearest the pixel centre gives the colour (so a slanted surface
    re-renders each point at its own pixel instead of letting a slightly nearer neighbour's footprint take it), and
    their depths are interpolated at the pixel centre. Matches the fusion's 3 % duplicate tolerance."""

    hole_fill_px: int = 2
    """Reach of the pinhole filler in pixels: an unknown pixel with covered pixels within this many steps on both
    sides (along its row, column or a diagonal) is filled, i.e. holes up to ``2 * hole_fill_px - 1`` pixels wide.
    Larger unknown regions and regions open to the image border stay unknown. 0 disables filling and the
    see-through test."""

    see_through_ratio: float = 1.1
    """A covered pixel whose depth exceeds this factor times the depth of covered pixels on both sides of it
    (within ``hole_fill_px``, along a row, column or diagonal) is a far surface seen through a gap in a nearer
    one: it is refilled from the foreground. Also the depth band (relative to the nearest neighbour) of the
    neighbours averaged into a fill."""

    def __post_init__(self) -> None:
        if not self.near > 0:
            raise ValueError(f"near must be > 0, got {self.near}")
        if not 0 < self.min_footprint_px <= self.max_footprint_px:
            raise ValueError(
                f"footprints must satisfy 0 < min_footprint_px <= max_footprint_px, got "
                f"{self.min_footprint_px} and {self.max_footprint_px}"
            )
        if self.max_footprint_px > MAX_FOOTPRINT_LIMIT_PX:
            raise ValueError(f"max_footprint_px must be <= {MAX_FOOTPRINT_LIMIT_PX}, got {self.max_footprint_px}")
        if not self.surface_band >= 0:
            raise ValueError(f"surface_band must be >= 0, got {self.surface_band}")
        if not isinstance(self.hole_fill_px, int) or self.hole_fill_px < 0:
            raise ValueError(f"hole_fill_px must be an int >= 0, got {self.hole_fill_px!r}")
        if not self.see_through_ratio > 1:
            raise ValueError(f"see_through_ratio must be > 1, got {self.see_through_ratio}")


def check_render_inputs(
    points: Tensor,  # [N, 3]
    colors: Tensor,  # [N, 3]
    camera: Camera,
    radii: Tensor | None,  # [N]
) -> None:
    """Raise ValueError (showing the actual shape/value) unless the arguments of ``render`` fit together."""
    sizes = check_tensor(points, "N 3", "points", "float")
    check_tensor(colors, "N 3", "colors", sizes=sizes)
    if radii is not None:
        check_tensor(radii, "N", "radii", sizes=sizes)
    if colors.device != points.device or (radii is not None and radii.device != points.device):
        where = [str(t.device) for t in (points, colors, radii) if t is not None]
        raise ValueError(f"points, colors and radii must be on one device, got {', '.join(where)}")
    if sizes["N"] > INDEX_MASK:
        raise ValueError(f"at most {INDEX_MASK} points can be rendered at once, got {sizes['N']}")
    if not isinstance(camera, Camera):
        raise ValueError(f"camera must be a core.cameras.Camera, got {type(camera).__name__}")
    check_tensor(camera.K, "3 3", "camera.K")
    check_tensor(camera.world_to_cam, "4 4", "camera.world_to_cam")
    if int(camera.height) < 1 or int(camera.width) < 1:
        raise ValueError(f"camera size must be positive, got height={camera.height} width={camera.width}")


def footprint_px(
    radii: Tensor | None,  # [N] world radius, or None
    z: Tensor,  # [N] camera z-depth (> 0)
    focal: float,
    config: PointRenderConfig,
) -> Tensor:  # [N] footprint half-width in pixels
    """Pixel half-width of each point's footprint: world radius * focal / z, clamped to the configured range.

    ``radii=None`` gives every point the smallest footprint (about one pixel).
    """
    if radii is None:
        return torch.full_like(z, config.min_footprint_px)
    return (radii.to(z) * focal / z).clamp(config.min_footprint_px, config.max_footprint_px)


def splat_footprints(
    uv: Tensor,  # [N, 2] projected pixel coordinates (u = column, v = row; centres at +0.5)
    half_width: Tensor,  # [N, 2] footprint half-width in pixels along u and v
    height: int,
    width: int,
    valid: Tensor | None = None,  # [N] bool, False = skip the point; None = all
) -> tuple[Tensor, Tensor, Tensor]:  # [M] pixel index, [M] point index, [M] squared distance in px²
    """Every (pixel, point) pair whose pixel centre lies inside the point's square footprint.

    Pixel (row, col) is covered by a point at (u, v) when ``|col + 0.5 - u| <= half_u`` and
    ``|row + 0.5 - v| <= half_v``. Pixels are flattened row-major (``row * width + col``). Points whose footprint
    misses the image, or whose ``uv`` or ``half_width`` is not finite, are dropped.
    """
    device = uv.device
    first = torch.ceil(uv - 0.5 - half_width)  # [N, 2] first covered column / row
    last = torch.floor(uv - 0.5 + half_width)  # [N, 2] last covered column / row
    limit = torch.tensor([width - 1, height - 1], device=device, dtype=uv.dtype)
    on_screen = ((last >= 0) & (first <= limit) & (first <= last)).all(dim=1)  # False for NaN / inf too
    if valid is not None:
        on_screen &= valid
    point = on_screen.nonzero().squeeze(1)  # [K]
    if point.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty.clone(), torch.zeros(0, dtype=uv.dtype, device=device)
    first = first.index_select(0, point).clamp_min(0)  # clipped to the image
    last = torch.minimum(last.index_select(0, point), limit)
    count = (last - first + 1).long()  # [K, 2] covered columns / rows, >= 1
    num_cols, num_rows = count[:, 0], count[:, 1]
    offset = first + 0.5 - uv.index_select(0, point)  # [K, 2] first covered pixel centre minus the projection
    offset_u, offset_v = offset[:, 0], offset[:, 1]
    first_pixel = first[:, 1].long() * width + first[:, 0].long()  # [K]

    # One pass per offset (dy, dx) inside the footprints, over the points whose footprint reaches it
    # (most points cover 1-2 pixels per axis, so later passes are small).
    pixels, owners, dist2 = [], [], []
    rows_left = None  # indices (into the K points) of footprints with a row at offset dy; None = all
    for dy in range(int(num_rows.max())):
        if dy > 0:
            reach = num_rows > dy if rows_left is None else num_rows.index_select(0, rows_left) > dy
            rows_left = reach.nonzero().squeeze(1) if rows_left is None else rows_left[reach]
        cols_left = rows_left
        for dx in range(int(num_cols.max())):
            if dx > 0:
                reach = num_cols > dx if cols_left is None else num_cols.index_select(0, cols_left) > dx
                cols_left = reach.nonzero().squeeze(1) if cols_left is None else cols_left[reach]
            if cols_left is None:  # the first pixel of every footprint: no gathers needed
                pixels.append(first_pixel)
                owners.append(point)
                dist2.append(offset_u.square() + offset_v.square())
                continue
            if cols_left.numel() == 0:
                break
            pixels.append(first_pixel.index_select(0, cols_left) + (dy * width + dx))
            owners.append(point.index_select(0, cols_left))
            dist2.append(
                (offset_u.index_select(0, cols_left) + dx).square()
                + (offset_v.index_select(0, cols_left) + dy).square()
            )
    return torch.cat(pixels), torch.cat(owners), torch.cat(dist2)


def zbuffer(
    pixel: Tensor,  # [M] flattened pixel index
    owner: Tensor,  # [M] point index
    dist2: Tensor,  # [M] squared distance of the pixel centre to the point's projection, px²
    z: Tensor,  # [N] camera z-depth of every point
    num_pixels: int,
    surface_band: float,
) -> tuple[Tensor, Tensor]:  # [num_pixels] winning point index (-1 = none), [num_pixels] depth (0 = none)
    """Resolve visibility: the nearest surface wins each pixel.

    The nearest depth per pixel comes from one ``scatter_reduce(amin)``; footprints within ``surface_band`` of it
    form the visible surface. Its point nearest the pixel centre gives the pixel its colour (a second amin over
    the packed key ``(quantised dist2 << 32) | point index``; ties go to the lower index, so the result is
    deterministic), and the pixel's depth is the inverse-squared-distance weighted mean of the surface's depths,
    i.e. the surface interpolated at the pixel centre rather than the depth a pixel away at a neighbour's centre.
    """
    splat_z = z.index_select(0, owner)
    nearest = torch.full((num_pixels,), float("inf"), device=z.device, dtype=z.dtype)
    nearest.scatter_reduce_(0, pixel, splat_z, reduce="amin", include_self=True)
    behind = splat_z > nearest.index_select(0, pixel) * (1.0 + surface_band)  # [M] footprints of a farther surface

    key = (dist2 * DIST_KEY_SCALE).round().long() << INDEX_BITS | owner
    best = torch.full((num_pixels,), EMPTY_KEY, device=z.device, dtype=torch.long)
    best.scatter_reduce_(0, pixel, key.masked_fill_(behind, EMPTY_KEY), reduce="amin", include_self=True)
    covered = best != EMPTY_KEY
    winner = torch.where(covered, best & INDEX_MASK, torch.full_like(best, -1))

    weight = (1.0 / (dist2.to(z.dtype) + DEPTH_WEIGHT_EPS_PX2)).masked_fill_(behind, 0.0)  # [M]
    total = torch.zeros_like(nearest).index_add_(0, pixel, weight)
    weighted = torch.zeros_like(nearest).index_add_(0, pixel, weight * splat_z)
    depth = torch.where(covered, weighted / total.clamp_min(torch.finfo(z.dtype).tiny), torch.zeros_like(nearest))
    return winner, depth


def _covered_on_both_sides(
    depth: Tensor,  # [H, W] inf where unknown
    reach: int,
    ratio: float,
) -> Tensor:  # [H, W] bool
    """Pixels with a covered pixel nearer than ``depth / ratio`` within ``reach`` steps on both sides along a
    row, a column or a diagonal. For unknown pixels (inf) any covered pixel counts.

    Diagonals matter for a near surface drawn as a grid of isolated pixels: the gap pixel between four
    diagonal neighbours has only gap pixels along its row and column."""
    height, width = depth.shape
    padded = torch.nn.functional.pad(depth[None, None], (reach, reach, reach, reach), value=float("inf"))[0, 0]
    threshold = depth / ratio

    def nearer_within(dy: int, dx: int) -> Tensor:  # any nearer pixel at offsets s*(dy, dx), s = 1..reach
        found = torch.zeros_like(depth, dtype=torch.bool)
        for step in range(1, reach + 1):
            r0, c0 = reach + step * dy, reach + step * dx
            found |= padded[r0 : r0 + height, c0 : c0 + width] < threshold
        return found

    across_row = nearer_within(0, -1) & nearer_within(0, 1)
    across_col = nearer_within(-1, 0) & nearer_within(1, 0)
    across_diagonal = nearer_within(-1, -1) & nearer_within(1, 1)
    across_antidiagonal = nearer_within(-1, 1) & nearer_within(1, -1)
    return across_row | across_col | across_diagonal | across_antidiagonal


def fill_pinholes(
    rgb: Tensor,  # [H, W, 3]
    depth: Tensor,  # [H, W] z-depth, 0 where unknown
    known_mask: Tensor,  # [H, W] bool
    config: PointRenderConfig,
) -> RenderResult:
    """Fill small holes and see-through pixels from the surrounding foreground and mark them known.

    A pixel is refilled when, along its row, its column or a diagonal, covered pixels nearer than ``depth /
    see_through_ratio`` lie within ``hole_fill_px`` on both sides; unknown pixels count as infinitely far, so
    any covered neighbours qualify. Its new depth and colour are the mean over the covered, not-refilled pixels
    of its ``(2 * hole_fill_px + 1)²`` window whose depth is within ``see_through_ratio`` of the nearest of them
    (the local foreground). Large unknown regions and regions open to the image border stay unknown.
    """
    reach = config.hole_fill_px
    if reach == 0:
        return RenderResult(rgb, depth, known_mask)
    height, width = depth.shape
    far = torch.where(known_mask, depth, torch.full_like(depth, float("inf")))
    refill = _covered_on_both_sides(far, reach, config.see_through_ratio)
    rows, cols = refill.nonzero(as_tuple=True)  # [F]
    if rows.numel() == 0:
        return RenderResult(rgb, depth, known_mask)

    # Gather every refilled pixel's window of trusted (covered and not refilled) neighbours.
    offsets = torch.arange(-reach, reach + 1, device=depth.device)
    win_rows = rows[:, None, None] + offsets[None, :, None]  # [F, S, 1]
    win_cols = cols[:, None, None] + offsets[None, None, :]  # [F, 1, S]
    inside = (win_rows >= 0) & (win_rows < height) & (win_cols >= 0) & (win_cols < width)  # [F, S, S]
    flat = (win_rows.clamp(0, height - 1) * width + win_cols.clamp(0, width - 1)).reshape(rows.numel(), -1)
    trusted = (known_mask & ~refill).reshape(-1)[flat] & inside.reshape(rows.numel(), -1)  # [F, S*S]
    window_depth = far.reshape(-1)[flat].masked_fill(~trusted, float("inf"))  # [F, S*S]
    foreground = window_depth.amin(dim=1, keepdim=True)  # [F, 1]
    weight = (trusted & (window_depth <= foreground * config.see_through_ratio)).to(depth.dtype)  # [F, S*S]
    count = weight.sum(dim=1)  # [F]
    fillable = count > 0  # a window whose only cover is itself refilled keeps its pixel as it was
    count = count.clamp_min(1)
    new_depth = (weight * window_depth.masked_fill(~trusted, 0.0)).sum(dim=1) / count
    new_rgb = (weight.to(rgb.dtype)[..., None] * rgb.reshape(-1, 3)[flat]).sum(dim=1) / count.to(rgb.dtype)[:, None]

    rows, cols = rows[fillable], cols[fillable]
    depth, rgb, known_mask = depth.clone(), rgb.clone(), known_mask.clone()
    depth[rows, cols] = new_depth[fillable]
    rgb[rows, cols] = new_rgb[fillable]
    known_mask[rows, cols] = True
    return RenderResult(rgb, depth, known_mask)


def render_from_winners(
    winner: Tensor,  # [H * W] point index, -1 = none
    depth: Tensor,  # [H * W] z-depth, 0 = none
    colors: Tensor,  # [N, 3]
    height: int,
    width: int,
) -> RenderResult:
    """Images from per-pixel winning point indices and depths (before pinhole filling)."""
    known = winner >= 0
    rgb = torch.where(
        known[:, None], colors[winner.clamp_min(0)], torch.zeros((), device=colors.device, dtype=colors.dtype)
    )
    return RenderResult(rgb.reshape(height, width, 3), depth.reshape(height, width), known.reshape(height, width))


def empty_render(camera: Camera, points: Tensor, colors: Tensor) -> RenderResult:
    """An all-unknown result on the inputs' device/dtype."""
    shape = (camera.height, camera.width)
    return RenderResult(
        torch.zeros(*shape, 3, device=colors.device, dtype=colors.dtype),
        torch.zeros(shape, device=points.device, dtype=points.dtype),
        torch.zeros(shape, device=points.device, dtype=torch.bool),
    )


class TorchPointRenderer:
    """Z-buffer point splatting in plain torch; implements :class:`core.components.PointRenderer`.

    Example:
        >>> from core.cameras import make_cameras
        >>> from core.geometry import unproject
        >>> camera = make_cameras("single", (32, 32))[0]
        >>> points = unproject(torch.full((32, 32), 2.0), camera.K, camera.cam_to_world).reshape(-1, 3)
        >>> result = TorchPointRenderer().render(points, torch.rand(points.shape[0], 3), camera)
        >>> bool(result.known_mask.all()), float(result.depth[5, 7])
        (True, 2.0)
    """

    def __init__(self, config: PointRenderConfig | None = None) -> None:
        self.config = config if config is not None else PointRenderConfig()

    def render(
        self,
        points: Tensor,  # [N, 3] world
        colors: Tensor,  # [N, 3] in [0, 1]
        camera: Camera,
        radii: Tensor | None = None,  # [N] world-space footprint radius; None = the smallest footprint
    ) -> RenderResult:
        """Render the cloud into ``camera``.

        Args:
            points: world positions.  # [N, 3]
            colors: colours in [0, 1].  # [N, 3]
            camera: the view to render.
            radii: world-space footprint radius of each point (half a pixel at the depth it was lifted from), or
                None for the configured smallest footprint.  # [N]

        Returns:
            RenderResult with rgb [H, W, 3] (0 where unknown), z-depth [H, W] (0 where unknown) and known_mask
            [H, W]; pinholes and see-through pixels are already filled and marked known.

        Raises:
            ValueError: if the shapes do not fit together (the message shows them).
        """
        # 1. Check inputs
        check_render_inputs(points, colors, camera, radii)
        height, width = int(camera.height), int(camera.width)
        config = self.config

        # 2. Project; points behind the near plane or not finite are culled with the off-screen ones in step 4
        uv, z = project(points, camera.K, camera.world_to_cam)
        in_front = (z > config.near) & torch.isfinite(z)  # [N]; non-finite uv or radii fail the on-screen test

        # 3. Footprints (per axis, so non-square pixels get their own half-widths)
        K = camera.K.to(points)
        focal_u, focal_v = float(K[0, 0]), float(K[1, 1])
        z_safe = z.clamp_min(config.near)  # culled points only need a finite footprint
        half_u = footprint_px(radii, z_safe, focal_u, config)
        half_v = half_u if focal_v == focal_u else footprint_px(radii, z_safe, focal_v, config)
        half_width = torch.stack([half_u, half_v], dim=1)  # [N, 2]

        # 4. Z-buffer
        pixel, owner, dist2 = splat_footprints(uv, half_width, height, width, in_front)
        if owner.numel() == 0:
            return empty_render(camera, points, colors)
        winner, depth = zbuffer(pixel, owner, dist2, z, height * width, config.surface_band)

        # 5. Images, then pinhole / see-through filling
        raw = render_from_winners(winner, depth, colors, height, width)
        return fill_pinholes(raw.rgb, raw.depth, raw.known_mask, config)
