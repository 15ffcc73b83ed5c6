"""Mask morphology and depth-edge ("noodle") snapping.

Conventions are the project's (see :mod:`core.cameras`): masks are bool ``[H, W]`` with True = the thing
named, depth is z-depth ``[H, W]`` in scene units with 0 = unknown. Everything here is vectorised torch (a fixed,
small number of shifted whole-image operations, no loops over pixels); device and dtype follow the inputs.

Morphology treats the outside of the image as "no information": the image border never erodes a mask and never
dilates into it. A region only shrinks away from pixels that really are False inside the image, which is what the
grow loop wants (the frame edge of a rendered view is not a seam).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

MaskShape = Literal["square", "disk"]

KNOWN_ERODE_PX = 2
"""The rendered known region shrinks by 2 px before it is trusted: its border pixels are only partly covered by the
reprojected points and blend foreground with background (and colour with the empty render), so they are
regenerated instead (Invisible Stitch uses the same 2 px)."""

OUTPAINT_DILATE_PX = 2
"""The inpainter's mask grows by 2 px so it repaints across the seam instead of stopping exactly at it, which would
leave a visible hard line between rendered and generated pixels."""

SPARSE_DEPTH_ERODE_PX = 1
"""The sparse depth handed to a depth completer is eroded by 1 px: reprojected depth is least reliable at the
border of the covered region (half-covered pixels mix the depths of whatever they straddle)."""

SNAP_REL_THRESHOLD = 0.05
"""A pixel straddles a discontinuity when its depth is 5 % or more (relatively) away from the surfaces on both
sides of it. The jump is relative to the pixel's own depth, not to the global depth range as in Invisible Stitch:
a relative jump is what a moving camera sees as a stretched point (the parallax between two surfaces is
proportional to ``1/z_near - 1/z_far``), and it does not depend on how deep the rest of the scene is (a distant
sky would make every indoor edge invisible to a fraction of the global range)."""

PLANE_BEND = 0.25
"""Three pixels lie on one surface when the two inverse-depth steps between them differ by at most 25 % of the
larger: exactly 0 on any plane, small on gently curved surfaces, while a blurred step bends by far more (a box
blur of a 1 → 3 depth step bends by 25-60 % per pixel)."""

PLANE_EPS = 1e-5
"""Relative slack of the line test on flat surfaces, where both steps are ~0 (float32 rounding is ~1e-7)."""

SNAP_BAND_PX = 4
"""The surfaces on either side of a pixel are looked for up to 4 px away, so blurred edges (ramps) up to 4 px wide
are snapped whole. Monocular depth networks blur occlusion edges over a few pixels (their features are 14-16x
coarser than the image); Invisible Stitch's band is 3 px wide."""


def _check_mask(mask: Tensor, name: str = "mask") -> None:
    if not isinstance(mask, Tensor) or mask.ndim != 2 or mask.dtype != torch.bool:
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        dtype = mask.dtype if isinstance(mask, Tensor) else None
        raise ValueError(f"{name} must be a bool tensor [H, W], got shape {shape} dtype {dtype}")


def _check_px(px: int, shape: str) -> None:
    if isinstance(px, bool) or not isinstance(px, int) or px < 0:
        raise ValueError(f"px must be a non-negative int, got {px!r}")
    if shape not in ("square", "disk"):
        raise ValueError(f"shape must be 'square' or 'disk', got {shape!r}")


def _shift_max(x: Tensor, radius: int, dim: int) -> Tensor:  # [H, W] -> [H, W]
    """Running max over ``[-radius, radius]`` along ``dim``; outside the image counts as nothing.

    Slices and ``torch.maximum`` (works for bool and float): several times faster on CPU than ``max_pool2d`` with
    stride 1, and it never pads, so the border needs no fill value.
    """
    out = x.clone()
    length = x.shape[dim]
    for step in range(1, min(radius, length - 1) + 1):
        head, tail = out.narrow(dim, step, length - step), out.narrow(dim, 0, length - step)
        torch.maximum(head, x.narrow(dim, 0, length - step), out=head)
        torch.maximum(tail, x.narrow(dim, step, length - step), out=tail)
    return out


def _box_max(x: Tensor, radius: int) -> Tensor:  # [H, W] -> [H, W], max over a (2r+1)^2 window
    return _shift_max(_shift_max(x, radius, 1), radius, 0)


def _disk_max(x: Tensor, radius: int) -> Tensor:  # [H, W] -> [H, W], max over a disk of the given radius
    height = x.shape[0]
    out = x.clone()
    row_max: dict[int, Tensor] = {}
    for dy in range(-radius, radius + 1):
        if abs(dy) >= height:
            continue
        half_width = math.isqrt(radius * radius - dy * dy)  # exact integer disk: dx^2 + dy^2 <= r^2
        if half_width not in row_max:
            row_max[half_width] = _shift_max(x, half_width, 1)
        source = row_max[half_width]
        if dy >= 0:  # pixel (v, u) sees source row v + dy
            torch.maximum(out[: height - dy], source[dy:], out=out[: height - dy])
        else:
            torch.maximum(out[-dy:], source[: height + dy], out=out[-dy:])
    return out


def _grow(mask: Tensor, px: int, shape: MaskShape) -> Tensor:  # [H, W] bool -> [H, W] bool
    return _box_max(mask, px) if shape == "square" else _disk_max(mask, px)


def dilate(
    mask: Tensor,  # [H, W] bool
    px: int,
    shape: MaskShape = "square",
) -> Tensor:  # [H, W] bool
    """Grow the True region by ``px`` pixels.

    Args:
        mask: the region to grow.
        px: radius in pixels; 0 returns a copy.
        shape: structuring element, a ``(2 px + 1)``-wide "square" (Chebyshev distance) or a "disk"
            (Euclidean distance).

    Returns:
        True wherever a True pixel of ``mask`` lies within ``px`` pixels.

    Example:
        >>> m = torch.zeros(5, 5, dtype=torch.bool); m[2, 2] = True
        >>> int(dilate(m, 1).sum()), int(dilate(m, 1, "disk").sum())
        (9, 5)
    """
    _check_mask(mask)
    _check_px(px, shape)
    if px == 0:
        return mask.clone()
    return _grow(mask, px, shape)


def erode(
    mask: Tensor,  # [H, W] bool
    px: int,
    shape: MaskShape = "square",
) -> Tensor:  # [H, W] bool
    """Shrink the True region by ``px`` pixels (the image border does not erode).

    Args:
        mask: the region to shrink.
        px: radius in pixels; 0 returns a copy.
        shape: structuring element, "square" or "disk" (see :func:`dilate`).

    Returns:
        True where ``mask`` is True and no False pixel of the image lies within ``px`` pixels.

    Example:
        >>> m = torch.zeros(5, 5, dtype=torch.bool); m[1:4, 1:4] = True
        >>> int(erode(m, 1).sum()), int(erode(torch.ones(3, 3, dtype=torch.bool), 1).sum())
        (1, 9)
    """
    _check_mask(mask)
    _check_px(px, shape)
    if px == 0:
        return mask.clone()
    return ~_grow(~mask, px, shape)


class SnapResult(NamedTuple):
    """Output of :func:`snap_depth_edges`."""

    depth: Tensor  # [H, W] depth with edge pixels moved onto the far surface
    edge_mask: Tensor  # [H, W] bool, True = the pixel straddled a discontinuity (and was moved)


def _on_a_line(padded: Tensor, inverse: Tensor, pad: int, dy: int, dx: int) -> Tensor:  # -> [H, W] bool
    """Pixels whose inverse depth continues the line through their next two pixels on one side along (dy, dx).

    Inverse depth is linear in the pixel coordinates on any plane, so such a pixel may lie on a steep surface (a
    floor at a grazing angle, a table top seen from just above) rather than between two surfaces.
    """
    height, width = inverse.shape
    out = torch.zeros(height, width, dtype=torch.bool, device=inverse.device)
    for sign in (1, -1):
        first = _shifted(padded, pad, sign * dy, sign * dx, height, width)
        second = _shifted(padded, pad, 2 * sign * dy, 2 * sign * dx, height, width)
        step_near, step_far = inverse - first, first - second
        tolerance = PLANE_BEND * torch.maximum(step_near.abs(), step_far.abs()) + PLANE_EPS * inverse
        out |= (first > 0) & (second > 0) & ((step_near - step_far).abs() <= tolerance)
    return out


def _shifted(padded: Tensor, pad: int, dy: int, dx: int, height: int, width: int) -> Tensor:  # -> [H, W]
    """``padded`` (the map with ``pad`` zero pixels all round) read at (v + dy, u + dx) for every pixel."""
    return padded[pad + dy : pad + dy + height, pad + dx : pad + dx + width]


def snap_depth_edges(
    depth: Tensor,  # [H, W] z-depth, 0 (or non-finite) = unknown
    rel_threshold: float = SNAP_REL_THRESHOLD,
    band_px: int = SNAP_BAND_PX,
) -> SnapResult:
    """Move pixels that straddle a depth discontinuity onto the far surface.

    Depth maps smooth occlusion edges into ramps; lifted to 3D, the ramp pixels become points strung between the
    foreground and the background ("noodles") that show up as streaks from any other viewpoint. This finds them
    and gives them the depth of the far surface next to them, so every lifted point lies on a real surface.

    The test works in inverse depth, where every plane is a linear function of the pixel coordinates (any tilt,
    any distance), so slopes, grazing floors and creases between walls are not mistaken for edges. Along the
    rows and the columns, the surface on each side of the pixel is extrapolated linearly from the nearest pair of
    pixels on that side (at distances ``r`` and ``r + 1``, ``r <= band_px``) that agree within ``rel_threshold``
    (of the larger inverse depth), i.e. lie on one surface. A pixel straddles a discontinuity when its inverse
    depth lies between the two extrapolated surfaces and differs from both by at least ``rel_threshold`` of its
    own value, **and** no plane explains it: a pixel whose inverse depth continues the line through its next two
    pixels on one side (a plane seen edge-on along that axis: a floor at a grazing angle, a table top seen from
    just above) is on a surface unless it straddles an edge along the other axis too (the corner of a blurred
    object). An edge pixel takes the depth of the far flank pixel (the farthest found over both directions, and
    always farther than the pixel). Pixels on either surface, including both sides of a clean step edge and
    one-pixel-thin structures, are left alone. Fully vectorised: ``4 * band_px + 4`` shifted comparisons.

    What a single depth map cannot tell apart: a real surface only one or two pixels across, between a near and
    a far one (the front edge of a table top, the rim of a ball), from a blurred ramp of the same width. Both are
    flagged. The grow loop therefore does not *move* edge pixels: it leaves them out of the cloud
    (``~edge_mask``), so a real sliver costs a pixel-wide gap that the renderer's pinhole fill closes, never a
    point on the wrong surface.

    Unknown pixels are ignored (a flank needs known pixels) and returned unchanged.

    Args:
        depth: z-depth map.
        rel_threshold: smallest relative jump treated as a discontinuity (0.05 = 5 %).
        band_px: largest flank distance: ramps up to this many pixels wide are snapped whole (wider ones only in
            their middle).

    Returns:
        ``SnapResult(depth, edge_mask)``: the snapped depth, and the edge pixels (those that were moved). A caller
        that drops such pixels rather than snap them (the grow loop) uses ``~edge_mask``.

    Example:
        >>> d = torch.ones(8, 8); d[:, 4:] = 2.0; d[:, 4] = 1.5  # a one-pixel ramp between two planes
        >>> snapped = snap_depth_edges(d)
        >>> snapped.depth[0, 3:6].tolist(), snapped.edge_mask[0, 3:6].tolist()
        ([1.0, 2.0, 2.0], [False, True, False])
    """
    if not isinstance(depth, Tensor) or depth.ndim != 2 or not depth.is_floating_point():
        shape = tuple(depth.shape) if isinstance(depth, Tensor) else type(depth).__name__
        raise ValueError(f"depth must be a float tensor [H, W], got {shape}")
    if not (0.0 < rel_threshold < 1.0):
        raise ValueError(f"rel_threshold must be in (0, 1), got {rel_threshold}")
    if isinstance(band_px, bool) or not isinstance(band_px, int) or band_px < 1:
        raise ValueError(f"band_px must be an int >= 1, got {band_px!r}")

    height, width = depth.shape
    valid = torch.isfinite(depth) & (depth > 0)
    inverse = torch.where(valid, 1.0 / torch.where(valid, depth, torch.ones_like(depth)), torch.zeros_like(depth))
    pad = band_px + 1
    padded = torch.nn.functional.pad(inverse, (pad, pad, pad, pad))  # 0 = unknown, also outside the image
    threshold = rel_threshold * inverse
    straddle = torch.zeros_like(valid)
    far_inverse = torch.full_like(inverse, float("inf"))  # smallest inverse depth = farthest flank
    per_direction = []
    for dy, dx in ((0, 1), (1, 0)):  # along rows, along columns
        # every pair of neighbours (q, q + step) once: its inverse-depth difference and whether it lies on one surface
        following = torch.nn.functional.pad(padded[dy:, dx:], (0, dx, 0, dy))
        pair_diff = padded - following
        pair_smooth = (
            (padded > 0) & (following > 0) & (pair_diff.abs() < rel_threshold * torch.maximum(padded, following))
        )
        sides = []
        for sign in (1, -1):
            # the nearest smooth flank pair on this side, extrapolated to the pixel (exact for planes); pairs are
            # visited from far to near so the nearest smooth one is written last. NaN = no smooth pair found, and
            # every comparison with NaN below is False.
            surface = torch.full_like(inverse, float("nan"))
            flank = torch.full_like(inverse, float("nan"))
            for r in range(band_px, 0, -1):
                near = _shifted(padded, pad, sign * r * dy, sign * r * dx, height, width)
                # pair (p + r, p + r + 1) has near - beyond = diff; pair (p - r - 1, p - r) has near - beyond = -diff
                at = r if sign > 0 else -(r + 1)
                slope = _shifted(pair_diff, pad, at * dy, at * dx, height, width)
                usable = _shifted(pair_smooth, pad, at * dy, at * dx, height, width)
                surface = torch.where(usable, torch.add(near, slope, alpha=sign * r), surface)
                flank = torch.where(usable, near, flank)
            sides.append((surface, flank))
        (surface_a, flank_a), (surface_b, flank_b) = sides
        off_a, off_b = inverse - surface_a, inverse - surface_b
        far = torch.minimum(flank_a, flank_b)
        hit = (
            valid
            & (off_a * off_b < 0)  # between the two surfaces ...
            & (off_a.abs() >= threshold)  # ... and on neither
            & (off_b.abs() >= threshold)
            & (far < inverse)  # the far flank really is farther: snapping moves outwards
        )
        per_direction.append((hit, far, _on_a_line(padded, inverse, pad, dy, dx)))
    for (hit, far, on_line), (hit_across, _, _) in zip(per_direction, per_direction[::-1]):
        # a pixel on a line with its next two pixels, on a surface that is smooth across (no edge the other way),
        # lies on a plane: a steep one (a floor at a grazing angle, a table top seen from just above), not a ramp.
        # The corner of a blurred object is a ramp both ways and stays an edge.
        hit = hit & ~(on_line & ~hit_across)
        straddle |= hit
        far_inverse = torch.where(hit, torch.minimum(far_inverse, far), far_inverse)
    snapped = torch.where(straddle, 1.0 / far_inverse.clamp(min=torch.finfo(depth.dtype).tiny), depth)
    return SnapResult(snapped, straddle)
