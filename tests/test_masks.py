"""Mask morphology and depth-edge snapping (core/masks.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core import masks
from core.cameras import Camera, intrinsics, pose, rotation_yaw_pitch
from core.masks import SnapResult, dilate, erode, snap_depth_edges
from evaluation.worlds import Box, Light, Material, SyntheticWorld, plain


def _random_mask(height: int, width: int, density: float, seed: int) -> torch.Tensor:  # [H, W] bool
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(height, width, generator=generator) < density


def _reference_dilate(mask: torch.Tensor, px: int, shape: str) -> torch.Tensor:  # [H, W] bool
    """Obviously correct dilation by convolution with the structuring element (zero padding = nothing outside)."""
    offsets = torch.arange(-px, px + 1)
    if shape == "square":
        element = torch.ones(2 * px + 1, 2 * px + 1)
    else:
        element = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= px * px).float()
    hits = F.conv2d(mask.float()[None, None], element[None, None], padding=px)[0, 0]
    return hits > 0.5


# ---------------------------------------------------------------- morphology


def test_named_constants():
    assert masks.KNOWN_ERODE_PX == 2
    assert masks.OUTPAINT_DILATE_PX == 2
    assert masks.SPARSE_DEPTH_ERODE_PX == 1


@pytest.mark.parametrize("px", [1, 2, 3])
def test_dilate_single_pixel_sizes(px):
    mask = torch.zeros(15, 17, dtype=torch.bool)
    mask[7, 8] = True
    assert int(dilate(mask, px).sum()) == (2 * px + 1) ** 2
    disk_sizes = {1: 5, 2: 13, 3: 29}  # lattice points with dx^2 + dy^2 <= r^2
    assert int(dilate(mask, px, "disk").sum()) == disk_sizes[px]


def test_erode_block_sizes_and_border():
    mask = torch.zeros(20, 20, dtype=torch.bool)
    mask[5:15, 3:13] = True  # 10 x 10
    assert int(erode(mask, 2).sum()) == 6 * 6
    assert int(erode(mask, 1).sum()) == 8 * 8
    # the image border is not a boundary: a full mask, or a block touching the frame, is not eaten from outside
    assert bool(erode(torch.ones(6, 7, dtype=torch.bool), 2).all())
    corner = torch.zeros(10, 10, dtype=torch.bool)
    corner[:5, :5] = True
    assert int(erode(corner, 1).sum()) == 4 * 4
    # and dilation does not wrap around or leak past the frame
    assert int(dilate(corner, 1).sum()) == 6 * 6


@pytest.mark.parametrize("shape", ["square", "disk"])
@pytest.mark.parametrize("px", [1, 2, 4])
def test_morphology_matches_reference(shape, px):
    mask = _random_mask(33, 41, 0.15, seed=px)
    assert torch.equal(dilate(mask, px, shape), _reference_dilate(mask, px, shape))
    assert torch.equal(erode(mask, px, shape), ~_reference_dilate(~mask, px, shape))


def test_zero_radius_is_a_copy():
    mask = _random_mask(8, 8, 0.5, seed=0)
    out = erode(mask, 0)
    assert torch.equal(out, mask) and out is not mask
    assert torch.equal(dilate(mask, 0), mask)


def test_morphology_errors():
    with pytest.raises(ValueError, match="bool tensor"):
        erode(torch.zeros(4, 4), 1)
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        dilate(torch.zeros(2, 4, 4, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="-1"):
        erode(torch.zeros(4, 4, dtype=torch.bool), -1)
    with pytest.raises(ValueError, match="'hexagon'"):
        dilate(torch.zeros(4, 4, dtype=torch.bool), 1, "hexagon")


# ---------------------------------------------------------------- depth-edge snapping

NEAR = 1.0
FAR_BASE = 3.0
FAR_SLOPE = 0.004  # depth units per pixel: a gently tilted background wall


def _step_scene(blur_radius: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A near square on a tilted far plane; the depth map box-blurred like a network's soft edge.

    Returns the blurred depth, the far plane's depth and the sharp near-square mask.
    """
    height, width = 64, 80
    columns = torch.arange(width, dtype=torch.float32).expand(height, width)
    far = FAR_BASE + FAR_SLOPE * columns
    square = torch.zeros(height, width, dtype=torch.bool)
    square[20:44, 25:55] = True
    sharp = torch.where(square, torch.full_like(far, NEAR), far)
    if blur_radius == 0:
        return sharp, far, square
    size = 2 * blur_radius + 1
    padded = F.pad(sharp[None, None], (blur_radius,) * 4, mode="replicate")
    blurred = F.avg_pool2d(padded, size, stride=1)[0, 0]
    return blurred, far, square


def _between(depth: torch.Tensor, far: torch.Tensor, tolerance: float) -> torch.Tensor:  # [H, W] bool
    """Pixels strictly between the near square and the far plane (beyond a relative tolerance)."""
    return (depth > NEAR * (1 + tolerance)) & (depth < far / (1 + tolerance))


def _corners(square: torch.Tensor, reach: int) -> torch.Tensor:  # [H, W] bool: within ``reach`` px of a corner
    rows, cols = torch.nonzero(square, as_tuple=True)
    out = torch.zeros_like(square)
    for v in (int(rows.min()), int(rows.max())):
        for u in (int(cols.min()), int(cols.max())):
            out[max(v - reach, 0) : v + reach + 1, max(u - reach, 0) : u + reach + 1] = True
    return out


@pytest.mark.parametrize("blur_radius", [1, 2])
def test_snap_leaves_no_depth_between_surfaces(blur_radius):
    depth, far, square = _step_scene(blur_radius)
    assert int(_between(depth, far, 0.05).sum()) > 50  # the blur made plenty of noodle pixels
    result = snap_depth_edges(depth)
    assert isinstance(result, SnapResult)
    # Along the edges every ramp pixel is snapped. Right at a corner the 2D blur leaves a few pixels whose depth
    # runs on a line along one axis with no edge across it, which is what a steep real plane looks like: those
    # are kept (the price of never moving real steep surfaces).
    left = _between(result.depth, far, 0.05)
    assert int(left.sum()) <= 4 * 6 * blur_radius
    assert not bool((left & ~_corners(square, blur_radius + 1)).any())
    # snapped pixels went to the far surface: within the threshold of the plane's depth right there (the blur
    # also pulls far pixels next to the square's corners a few % nearer, and those are the fill's sources)
    moved = result.edge_mask
    assert bool(moved.any())
    assert torch.allclose(result.depth[moved], far[moved], rtol=0.05)
    # edge_mask is exactly the set of changed pixels
    assert torch.equal(moved, result.depth != depth)


def test_snap_leaves_pixels_away_from_edges_unchanged():
    depth, far, square = _step_scene(blur_radius=2)
    result = snap_depth_edges(depth)
    edge_zone = masks.dilate(square, 2 + masks.SNAP_BAND_PX + 1) & ~masks.erode(square, 2 + masks.SNAP_BAND_PX + 1)
    assert torch.equal(result.depth[~edge_zone], depth[~edge_zone])
    assert not bool(result.edge_mask[~edge_zone].any())


def test_snap_keeps_a_clean_step_and_smooth_surfaces():
    depth, far, square = _step_scene(blur_radius=0)
    result = snap_depth_edges(depth)
    assert torch.equal(result.depth, depth)  # nothing is between the surfaces: nothing to move
    assert not bool(result.edge_mask.any())
    assert torch.equal(snap_depth_edges(far).depth, far)  # a gentle slope is not an edge


GRAY = Material(plain((0.5, 0.5, 0.5)))


def _exact_depth(world: SyntheticWorld, pitch_deg: float = 0.0) -> torch.Tensor:  # [96, 128] exact z-depth
    camera = Camera(intrinsics(96, 128), pose(rotation_yaw_pitch(0.0, pitch_deg)).float(), 96, 128)
    return world.render(camera).depth


@pytest.mark.parametrize("pitch", [0.0, -10.0])
def test_snap_leaves_a_plane_at_a_grazing_angle(pitch):
    # a pavement 15 cm high beside the road, 2 m to the right of a camera 1.5 m above the ground: its top is seen at
    # a grazing angle as a steep run of depths between the road and the far end (the old test moved 12-14 pixels)
    ground = Box((-40.0, -10.0, -4.0), (40.0, 1.5, 60.0), GRAY)
    pavement = Box((2.0, 1.35, -4.0), (8.0, 1.5, 60.0), GRAY)
    depth = _exact_depth(SyntheticWorld("pavement", (ground, pavement), Light(direction=(0, -1, 0))), pitch)
    result = snap_depth_edges(depth)
    assert not bool(result.edge_mask.any()), f"{int(result.edge_mask.sum())} pixels of a plane taken for an edge"
    assert torch.equal(result.depth, depth)


def test_snap_leaves_a_table_top_below_eye_level():
    # a table top 30 cm below the eye, 2-3 m away, in front of a far wall: 6 px of steep but continuous depth (the
    # old test moved 160 of its pixels onto the wall behind)
    room = Box((-4.0, -1.5, -4.0), (4.0, 1.5, 6.0), GRAY)
    top = Box((-0.8, 0.3, 2.0), (0.8, 0.34, 3.0), GRAY)
    depth = _exact_depth(SyntheticWorld("table", (room, top), Light(direction=(0, -1, 0))))
    result = snap_depth_edges(depth)
    assert not bool(result.edge_mask.any())
    assert torch.equal(result.depth, depth)


def test_snap_ignores_unknown_pixels():
    depth = torch.full((32, 32), 2.0)
    depth[10:20, 10:20] = 0.0  # a hole of unknown depth
    depth[0, 0] = float("nan")
    result = snap_depth_edges(depth)
    assert torch.equal(result.depth[depth == depth], depth[depth == depth])
    assert bool(result.depth[0, 0].isnan())
    assert not bool(result.edge_mask.any())


def test_snap_follows_dtype_and_rejects_bad_input():
    depth, _, _ = _step_scene(blur_radius=1)
    out = snap_depth_edges(depth.double())
    assert out.depth.dtype == torch.float64 and out.edge_mask.dtype == torch.bool
    with pytest.raises(ValueError, match=r"\(3, 4, 4\)"):
        snap_depth_edges(torch.ones(3, 4, 4))
    with pytest.raises(ValueError, match="rel_threshold"):
        snap_depth_edges(depth, rel_threshold=0.0)
    with pytest.raises(ValueError, match="1.5"):
        snap_depth_edges(depth, rel_threshold=1.5)
    with pytest.raises(ValueError, match="band_px"):
        snap_depth_edges(depth, band_px=0)


def _reference_snap(depth: torch.Tensor, rel: float, band: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel loops over the documented rule: nearest smooth flank pairs extrapolated in inverse depth, minus
    pixels on a line with their next two pixels on one side whose other direction shows no edge."""
    height, width = depth.shape
    d = depth.tolist()

    def inv(v, u):
        inside = 0 <= v < height and 0 <= u < width
        return 1.0 / d[v][u] if inside and d[v][u] > 0 else None

    out = depth.clone()
    moved = torch.zeros(height, width, dtype=torch.bool)
    for v in range(height):
        for u in range(width):
            w = inv(v, u)
            if w is None:
                continue
            found = {}  # direction -> (is an edge, far flank, on a line)
            for dv, du in ((0, 1), (1, 0)):
                sides, on_line = [], False
                for sign in (-1, 1):
                    for r in range(1, band + 1):
                        near = inv(v + sign * r * dv, u + sign * r * du)
                        beyond = inv(v + sign * (r + 1) * dv, u + sign * (r + 1) * du)
                        if near is not None and beyond is not None and abs(near - beyond) < rel * max(near, beyond):
                            sides.append((near + r * (near - beyond), near))
                            break
                    first, second = inv(v + sign * dv, u + sign * du), inv(v + 2 * sign * dv, u + 2 * sign * du)
                    if first is not None and second is not None:
                        a, b = w - first, first - second
                        on_line |= abs(a - b) <= masks.PLANE_BEND * max(abs(a), abs(b)) + masks.PLANE_EPS * w
                edge, far = False, None
                if len(sides) == 2:
                    (surface_a, flank_a), (surface_b, flank_b) = sides
                    far = min(flank_a, flank_b)
                    off_a, off_b = w - surface_a, w - surface_b
                    edge = off_a * off_b < 0 and min(abs(off_a), abs(off_b)) >= rel * w and far < w
                found[(dv, du)] = (edge, far, on_line)
            farthest = None
            for key, across in (((0, 1), (1, 0)), ((1, 0), (0, 1))):
                edge, far, on_line = found[key]
                if edge and not (on_line and not found[across][0]):
                    farthest = far if farthest is None else min(farthest, far)
            if farthest is not None:
                out[v, u] = 1.0 / farthest
                moved[v, u] = True
    return out, moved


def test_snap_edge_mask_matches_pixel_loop_reference():
    generator = torch.Generator().manual_seed(3)
    depth = 1.0 + 2.0 * torch.rand(18, 21, generator=generator)
    depth[4:9, 5:11] = 0.0  # some unknown pixels
    result = snap_depth_edges(depth.double(), 0.1, 2)
    reference_depth, reference_moved = _reference_snap(depth.double(), 0.1, 2)
    assert bool(reference_moved.any())
    assert torch.equal(result.edge_mask, reference_moved)
    assert torch.allclose(result.depth, reference_depth, rtol=1e-12)
    moved = result.edge_mask
    assert bool((result.depth[moved] > depth[moved]).all())  # always onto a farther surface
    # a blurred corner: ramps both ways (edges) next to pixels on a line with no edge across (kept)
    corner = _step_scene(2)[0][14:30, 19:35].double()
    result = snap_depth_edges(corner)
    reference_depth, reference_moved = _reference_snap(corner, masks.SNAP_REL_THRESHOLD, masks.SNAP_BAND_PX)
    assert bool(reference_moved.any()) and torch.equal(result.edge_mask, reference_moved)
    assert torch.allclose(result.depth, reference_depth, rtol=1e-12)
