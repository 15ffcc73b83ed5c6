"""Point renderers: exact re-rendering, rotated views without pinholes, occlusion, see-through, backends agree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

from core.cameras import Camera, make_cameras
from core.components import PointRenderer
from core.geometry import project, ray_directions, unproject
from renderers import POINT_RENDERERS, get_point_renderer
from renderers.points import DEPTH_WEIGHT_EPS_PX2, PointRenderConfig, TorchPointRenderer

HEIGHT, WIDTH = 64, 80
NO_FILL = PointRenderConfig(hole_fill_px=0)
# A slanted plane n·x = d in view 0's frame (tilted in both axes so every pixel has its own depth).
PLANE_NORMAL = (0.3, -0.2, 1.0)
PLANE_OFFSET = 3.0
# The default footprint floor (0.75 px) bounds how far from a pixel centre a covering point can lie ...
FOOTPRINT_TOLERANCE_PX = 0.76
# ... and interpolating between the covering points brings the typical error well below that (measured ~0.05 px).
INTERPOLATED_TOLERANCE_PX = 0.15


def plane_depth(camera: Camera) -> Tensor:  # [H, W] analytic z-depth of the plane in ``camera``
    normal = torch.tensor(PLANE_NORMAL)
    normal = normal / normal.norm()
    c2w = camera.cam_to_world
    rays = ray_directions(camera.height, camera.width, camera.K) @ c2w[:3, :3].T  # world directions, cam z = 1
    return (PLANE_OFFSET - c2w[:3, 3] @ normal) / (rays @ normal)


def lift(depth: Tensor, camera: Camera) -> tuple[Tensor, Tensor, Tensor]:  # [N, 3] points, [N, 3] colours, [N] radii
    """Unproject every pixel with half a pixel's world radius, as the pipeline does."""
    points = unproject(depth, camera.K, camera.cam_to_world).reshape(-1, 3)
    colors = torch.rand(points.shape[0], 3, generator=torch.Generator().manual_seed(0))
    radii = (0.5 * depth / camera.K[0, 0]).reshape(-1)
    return points, colors, radii


def box_depth() -> Tensor:  # [H, W] a wall at 4 with a box face at 2 in front of it
    depth = torch.full((HEIGHT, WIDTH), 4.0)
    depth[20:44, 25:55] = 2.0
    return depth


@pytest.mark.parametrize("scene", ["plane", "box"])
def test_rerender_from_lifting_camera_is_exact(scene):
    camera = make_cameras("single", (WIDTH, HEIGHT))[0]
    depth = plane_depth(camera) if scene == "plane" else box_depth()
    points, colors, radii = lift(depth, camera)
    result = TorchPointRenderer().render(points, colors, camera, radii)
    assert result.known_mask.all()
    assert ((result.depth - depth).abs() / depth).max() < 1e-4
    assert torch.equal(result.rgb.reshape(-1, 3), colors)  # every point lands on its own pixel


def covered_by_view0(camera: Camera, depth: Tensor, margin_px: float) -> Tensor:  # [H, W] bool
    """Pixels of ``camera`` whose surface point (at ``depth``) projects inside view 0, ``margin_px`` from its edge."""
    view0 = make_cameras("single", (camera.width, camera.height))[0]
    world = unproject(depth, camera.K, camera.cam_to_world).reshape(-1, 3)
    uv, _ = project(world, view0.K, view0.world_to_cam)
    inside = (
        (uv[:, 0] > margin_px)
        & (uv[:, 0] < camera.width - margin_px)
        & (uv[:, 1] > margin_px)
        & (uv[:, 1] < camera.height - margin_px)
    )
    return inside.reshape(camera.height, camera.width)


@pytest.mark.parametrize("view", [1, 2])
def test_rotated_view_has_no_pinholes_and_analytic_depth(view):
    cameras = make_cameras("stage", (WIDTH, HEIGHT))  # views 1 and 2 are turned by +25° and -25°
    points, colors, radii = lift(plane_depth(cameras[0]), cameras[0])
    camera = cameras[view]
    truth = plane_depth(camera)

    for config in (NO_FILL, PointRenderConfig()):  # the footprint floor alone already leaves no pinholes
        result = TorchPointRenderer(config).render(points, colors, camera, radii)
        inside = covered_by_view0(camera, truth, margin_px=1.0)
        assert inside.float().mean() > 0.4
        assert result.known_mask[inside].all()
        # depth is the surface interpolated at the pixel centre from the points covering it; where a single point
        # covers the pixel it is that point's depth, at most a footprint (0.75 px here) away along u and v
        slope_v, slope_u = torch.gradient(truth)
        error_px = (result.depth - truth).abs() / (slope_u.abs() + slope_v.abs())  # in pixels of depth change
        known = result.known_mask
        assert error_px[known].max() <= FOOTPRINT_TOLERANCE_PX
        assert error_px[known].median() < INTERPOLATED_TOLERANCE_PX
        assert ((result.depth - truth).abs() / truth)[known].max() < 0.015
        # the part of the view that view 0 never saw stays unknown (besides a footprint-wide seam)
        outside = ~covered_by_view0(camera, truth, margin_px=-2.0)
        assert outside.float().mean() > 0.3
        assert not result.known_mask[outside].any()


def test_pinholes_are_filled_but_large_holes_and_border_stay_unknown():
    camera = make_cameras("single", (WIDTH, HEIGHT))[0]
    depth = plane_depth(camera)
    keep = torch.ones(HEIGHT, WIDTH, dtype=torch.bool)
    keep[10, 10] = False  # a pinhole
    keep[30:32, 20:23] = False  # a 2x3 hole
    keep[40:56, 40:60] = False  # a large hole
    keep[:, WIDTH - 6 :] = False  # a strip open to the image border
    points, colors, radii = lift(depth, camera)
    flat_keep = keep.reshape(-1)

    raw = TorchPointRenderer(NO_FILL).render(points[flat_keep], colors[flat_keep], camera, radii[flat_keep])
    assert torch.equal(raw.known_mask, keep)

    result = TorchPointRenderer().render(points[flat_keep], colors[flat_keep], camera, radii[flat_keep])
    assert result.known_mask[10, 10] and result.known_mask[30:32, 20:23].all()
    small = ~keep & result.known_mask
    assert ((result.depth - depth).abs() / depth)[small].max() < 0.02  # filled from the surrounding surface
    assert (result.rgb[small] > 0).any(dim=-1).all()
    assert not result.known_mask[42:54, 42:58].any()  # the large hole's interior stays unknown
    assert not result.known_mask[:, WIDTH - 5 :].any()  # so does the border strip
    assert torch.equal(result.known_mask[keep], torch.ones(int(keep.sum()), dtype=torch.bool))
    unknown = ~result.known_mask
    assert (result.depth[unknown] == 0).all() and (result.rgb[unknown] == 0).all()


def square_scene(near_stride: int) -> tuple[Tensor, Tensor, Camera]:  # far plane at 4 (blue), near square at 2 (red)
    camera = make_cameras("single", (WIDTH, HEIGHT))[0]
    far = unproject(torch.full((HEIGHT, WIDTH), 4.0), camera.K, camera.cam_to_world).reshape(-1, 3)
    near = unproject(torch.full((HEIGHT, WIDTH), 2.0), camera.K, camera.cam_to_world)
    near = near[20 : 20 + 24 : near_stride, 30 : 30 + 24 : near_stride].reshape(-1, 3)
    blue = torch.tensor([0.0, 0.0, 1.0]).expand(far.shape[0], 3)
    red = torch.tensor([1.0, 0.0, 0.0]).expand(near.shape[0], 3)
    # near points first, so a renderer that let the last write win would show the far plane
    return torch.cat([near, far]), torch.cat([red, blue]), camera


def test_near_surface_occludes_far_surface():
    points, colors, camera = square_scene(near_stride=1)
    for reverse in (False, True):
        order = torch.arange(points.shape[0]).flip(0) if reverse else torch.arange(points.shape[0])
        result = TorchPointRenderer().render(points[order], colors[order], camera)
        square = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
        square[20:44, 30:54] = True
        assert torch.allclose(result.depth[square], torch.tensor(2.0))
        assert torch.allclose(result.depth[~square], torch.tensor(4.0))
        assert (result.rgb[square] == torch.tensor([1.0, 0.0, 0.0])).all()
        assert (result.rgb[~square] == torch.tensor([0.0, 0.0, 1.0])).all()


def test_far_surface_seen_through_gaps_is_replaced_by_foreground():
    points, colors, camera = square_scene(near_stride=2)  # a near grid with one-pixel gaps
    raw = TorchPointRenderer(NO_FILL).render(points, colors, camera)
    gaps = raw.depth[20:43, 30:53] > 3.0
    assert gaps.float().mean() > 0.5  # the far plane shows through most of the square
    result = TorchPointRenderer().render(points, colors, camera)
    assert torch.allclose(result.depth[20:43, 30:53], torch.tensor(2.0))
    assert (result.rgb[20:43, 30:53] == torch.tensor([1.0, 0.0, 0.0])).all()
    assert torch.allclose(result.depth[:, :28], torch.tensor(4.0))  # the far plane elsewhere is untouched
    assert result.known_mask.all()


def reference_zbuffer(
    uv: Tensor, z: Tensor, half: Tensor, height: int, width: int, band: float
) -> tuple[Tensor, Tensor]:  # [H, W] winner (-1 = none), [H, W] depth
    """Slow, obviously-correct z-buffer: per pixel, the nearest surface; its point nearest the pixel centre
    wins, and the depth is the surface's inverse-squared-distance weighted mean depth."""
    winner = torch.full((height, width), -1, dtype=torch.long)
    depth = torch.zeros(height, width)
    for row in range(height):
        for col in range(width):
            du = col + 0.5 - uv[:, 0]
            dv = row + 0.5 - uv[:, 1]
            cover = (du.abs() <= half) & (dv.abs() <= half) & (z > 0)
            if not cover.any():
                continue
            nearest = z[cover].min()
            surface = (cover & (z <= nearest * (1 + band))).nonzero().squeeze(1)
            dist2 = (du.square() + dv.square())[surface]
            winner[row, col] = surface[dist2.argmin()]  # argmin returns the first (lowest index) minimum
            weight = 1.0 / (dist2 + DEPTH_WEIGHT_EPS_PX2)
            depth[row, col] = (weight * z[surface]).sum() / weight.sum()
    return winner, depth


def test_fast_zbuffer_matches_reference():
    height, width = 12, 16
    camera = make_cameras("single", (width, height))[0]
    generator = torch.Generator().manual_seed(1)
    count = 150
    uv = torch.rand(count, 2, generator=generator) * torch.tensor([width + 4.0, height + 4.0]) - 2.0
    z = 1.0 + 3.0 * torch.rand(count, generator=generator)
    z[::10] = -1.0  # some behind the camera
    K = camera.K
    points = torch.stack([(uv[:, 0] - K[0, 2]) / K[0, 0] * z, (uv[:, 1] - K[1, 2]) / K[1, 1] * z, z], dim=1)
    radii = (0.3 + 2.0 * torch.rand(count, generator=generator)) * z.abs() / K[0, 0]  # 0.3 .. 2.3 px
    colors = torch.rand(count, 3, generator=generator)
    config = NO_FILL

    result = TorchPointRenderer(config).render(points, colors, camera, radii)
    half = (radii * K[0, 0] / z.abs()).clamp(config.min_footprint_px, config.max_footprint_px)
    winner, depth = reference_zbuffer(uv, z, half, height, width, config.surface_band)
    known = winner >= 0
    assert torch.equal(result.known_mask, known)
    assert torch.allclose(result.depth, depth, rtol=1e-5)
    assert torch.equal(result.rgb[known], colors[winner[known]])


def test_points_behind_camera_are_ignored():
    camera = make_cameras("single", (WIDTH, HEIGHT))[0]
    points, colors, radii = lift(torch.full((HEIGHT, WIDTH), 2.0), camera)
    behind = points * torch.tensor([1.0, 1.0, -1.0])  # mirrored behind the camera: would project onto the image
    touching = points * torch.tensor([1e-4, 1e-4, 1e-4])  # in front, but closer than the near plane
    for renderer in (TorchPointRenderer(), get_point_renderer("torch")):
        result = renderer.render(torch.cat([behind, touching]), torch.cat([colors, colors]), camera)
        assert not result.known_mask.any()
        assert (result.depth == 0).all() and (result.rgb == 0).all()
        mixed = renderer.render(torch.cat([behind, points]), torch.cat([colors * 0, colors]), camera)
        assert mixed.known_mask.all() and torch.allclose(mixed.depth, torch.tensor(2.0))


def test_non_finite_points_and_radii_are_ignored():
    camera = make_cameras("single", (WIDTH, HEIGHT))[0]
    points, colors, radii = lift(torch.full((HEIGHT, WIDTH), 2.0), camera)
    bad_points = points[:3].clone()
    bad_points[0, 0], bad_points[1, 2], bad_points[2, 1] = float("nan"), float("inf"), float("-inf")
    bad_radii = radii.clone()
    bad_radii[[30 * WIDTH + 40, 30 * WIDTH + 43, 10 * WIDTH + 7]] = float("nan")  # isolated pixels inside the image
    result = TorchPointRenderer().render(
        torch.cat([points, bad_points]), torch.cat([colors, colors[:3]]), camera, torch.cat([bad_radii, radii[:3]])
    )
    assert torch.isfinite(result.depth).all() and torch.isfinite(result.rgb).all()
    assert result.known_mask.all()  # the points without a radius leave pinholes, filled from their neighbours
    assert torch.allclose(result.depth, torch.tensor(2.0))


def test_empty_cloud_and_dtype_follow_inputs():
    camera = make_cameras("single", (8, 8))[0]
    empty = TorchPointRenderer().render(torch.zeros(0, 3), torch.zeros(0, 3), camera)
    assert empty.rgb.shape == (8, 8, 3) and empty.depth.shape == (8, 8) and not empty.known_mask.any()
    points, colors, radii = lift(torch.full((8, 8), 2.0, dtype=torch.float64), camera)
    result = TorchPointRenderer().render(points, colors.double(), camera, radii)
    assert result.depth.dtype == torch.float64 and result.rgb.dtype == torch.float64
    assert result.known_mask.dtype == torch.bool and result.known_mask.all()


@pytest.mark.parametrize(
    ("points", "colors", "radii", "shown"),
    [
        (torch.zeros(5, 2), torch.zeros(5, 3), None, "[5, 2]"),
        (torch.zeros(5), torch.zeros(5, 3), None, "[5]"),
        (torch.zeros(5, 3), torch.zeros(4, 3), None, "[4, 3]"),
        (torch.zeros(5, 3), torch.zeros(5, 4), None, "[5, 4]"),
        (torch.zeros(5, 3), torch.zeros(5, 3), torch.zeros(5, 1), "[5, 1]"),
        (torch.zeros(5, 3, dtype=torch.long), torch.zeros(5, 3), None, "torch.int64"),
    ],
)
@pytest.mark.parametrize("name", POINT_RENDERERS)
def test_bad_shapes_raise_value_error_showing_them(name, points, colors, radii, shown):
    camera = make_cameras("single", (8, 8))[0]
    with pytest.raises(ValueError, match=re.escape(shown)):
        get_point_renderer(name).render(points, colors, camera, radii)


def test_bad_camera_and_config_and_name_raise_value_error():
    camera = make_cameras("single", (8, 8))[0]
    bad = Camera(camera.K[:2], camera.world_to_cam, 8, 8)
    with pytest.raises(ValueError, match=re.escape("camera.K must be a tensor [3, 3], got [2, 3]")):
        TorchPointRenderer().render(torch.zeros(1, 3), torch.zeros(1, 3), bad)
    with pytest.raises(ValueError, match="meta"):
        TorchPointRenderer().render(torch.zeros(1, 3), torch.zeros(1, 3, device="meta"), camera)
    with pytest.raises(ValueError, match="min_footprint_px"):
        PointRenderConfig(min_footprint_px=5.0, max_footprint_px=3.0)
    with pytest.raises(ValueError, match="hole_fill_px"):
        PointRenderConfig(hole_fill_px=-1)
    with pytest.raises(ValueError, match="torch, pytorch3d"):
        get_point_renderer("opengl")


def test_torch_and_pytorch3d_agree():
    pytest.importorskip("pytorch3d")
    cameras = make_cameras("stage", (WIDTH, HEIGHT))
    torch_renderer, p3d_renderer = get_point_renderer("torch"), get_point_renderer("pytorch3d")

    # the lifting camera: both put every point on its own pixel
    points, colors, radii = lift(box_depth(), cameras[0])
    a = torch_renderer.render(points, colors, cameras[0], radii)
    b = p3d_renderer.render(points, colors, cameras[0], radii)
    assert a.known_mask.all() and b.known_mask.all()
    assert torch.allclose(a.depth, b.depth, rtol=1e-5) and torch.equal(a.rgb, b.rgb)

    # a turned camera: the same surface where both cover (they may pick neighbouring points)
    points, colors, radii = lift(plane_depth(cameras[0]), cameras[0])
    a = torch_renderer.render(points, colors, cameras[1], radii)
    b = p3d_renderer.render(points, colors, cameras[1], radii)
    both = a.known_mask & b.known_mask
    assert both.sum() > 0.95 * a.known_mask.sum()
    assert ((a.depth - b.depth).abs() / a.depth)[both].max() < 0.02

    # occlusion with stacked surfaces: identical depths
    points, colors, camera = square_scene(near_stride=1)
    a = torch_renderer.render(points, colors, camera)
    b = p3d_renderer.render(points, colors, camera)
    assert torch.equal(a.known_mask, b.known_mask) and torch.allclose(a.depth, b.depth, rtol=1e-5)


@pytest.mark.parametrize("name", POINT_RENDERERS)
def test_registry_builds_protocol_renderers(name):
    assert isinstance(get_point_renderer(name), PointRenderer)


def test_package_imports_without_pytorch3d():
    code = "import sys, renderers; renderers.get_point_renderer('pytorch3d'); assert 'pytorch3d' not in sys.modules"
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=120)
