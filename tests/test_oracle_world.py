"""The oracle-world test: the real loop on a world whose every view is known exactly.

The outpainter returns the true colours where asked and the depth estimator returns truth × scale + a smooth
warp, so every remaining error comes from our conventions, masks, reprojection, alignment and fusion.
"""

from __future__ import annotations

import math

import pytest
import torch

from core.cameras import Camera, make_cameras, pose, rotation_yaw_pitch
from core.components import DepthEstimate
from core.masks import dilate
from evaluation.worlds import make_world
from models.depth_align import AlignedCompleter
from pipeline.config import GrowConfig
from pipeline.grow import ScenePipeline
from renderers import get_point_renderer

HEIGHT, WIDTH = 96, 128
SMOOTH_WARP = 0.01  # amplitude of the warped estimator's smooth shape error (relative depth)


class OracleOutpainter:
    """Returns the world's true colours inside the fill mask, for the cameras in path order."""

    def __init__(self, world, cameras: list[Camera]):
        self.world = world
        self.queue = list(cameras[1:])

    def outpaint(
        self, image, fill_mask, prompt, negative_prompt, seed, cancel=None, *, camera=None, view=None, known_mask=None
    ):
        truth, _ = self.world.render(self.queue.pop(0))
        return torch.where(fill_mask[..., None], truth, image)


class WarpedEstimator:
    """Truth × scale + a smooth low-frequency warp: right up to scale, wrong in shape by a few percent."""

    def __init__(self, world, scale: float = 1.7, warp: float = SMOOTH_WARP):
        self.world = world
        self.scale = scale
        self.warp = warp

    def estimate(self, image, camera):
        _, depth = self.world.render(camera)
        v, u = torch.meshgrid(torch.linspace(0, 1, camera.height), torch.linspace(0, 1, camera.width), indexing="ij")
        warp = 1.0 + self.warp * torch.sin(2.1 * u + 0.7) * torch.cos(1.3 * v)
        return DepthEstimate(depth * self.scale * warp, "metric")


def grow(world_name: str, mode: str, warp: float = SMOOTH_WARP, size: tuple[int, int] = (HEIGHT, WIDTH)):
    world = make_world(world_name)
    cameras = make_cameras(mode, (size[1], size[0]))
    image, depth0 = world.render(cameras[0])
    estimator = WarpedEstimator(world, warp=warp)
    pipe = ScenePipeline(
        OracleOutpainter(world, cameras),
        estimator,
        AlignedCompleter(estimator),
        get_point_renderer("torch"),
        GrowConfig(),
    )
    return world, pipe(image, cameras, initial_depth=depth0, seed=0)


def relative_error(depth, truth):  # [H, W], [H, W] -> [H, W]
    return (depth - truth).abs() / truth


@pytest.fixture(scope="module")
def exact_360():
    """An estimator right up to scale: isolates conventions, masks, reprojection and fusion."""
    return grow("room", "360", warp=0.0)


@pytest.fixture(scope="module")
def warped_360():
    """An estimator also wrong in shape (smooth warp): alignment and seam handling matter."""
    return grow("room", "360")


def test_known_region_rerenders_truth(exact_360):
    world, result = exact_360
    assert len(result.frames) == 14
    for frame in result.frames[1:]:
        truth_rgb, truth_depth = world.render(frame.camera)
        known = ~frame.fill_mask
        assert known.float().mean() > 0.2, f"view {frame.index} sees almost nothing of the existing scene"
        rel = relative_error(frame.depth, truth_depth)[known]
        assert rel.median() < 0.005, f"view {frame.index}: known depth median rel error {rel.median():.4f}"
        colour = (frame.rgb - truth_rgb).abs().mean(-1)[known]
        assert colour.median() < 0.05, f"view {frame.index}: known colour median error {colour.median():.3f}"


def test_exact_estimator_gives_exact_cloud(exact_360):
    world, result = exact_360
    error = surface_error(world, result)
    assert error.median() <= 0.005, f"median point-to-surface error {error.median():.4f} of depth"


def surface_error(world, result):  # -> [N] distance to the nearest surface / distance to the source camera
    cloud = result.cloud
    centers = torch.stack([f.camera.center for f in result.frames])  # [V, 3]
    distance_to_camera = (cloud.points - centers[cloud.source_view]).norm(dim=-1)
    return world.surface_distance(cloud.points) / distance_to_camera


def test_fused_cloud_lies_on_the_surfaces(warped_360):
    world, result = warped_360
    error = surface_error(world, result)
    assert error.median() <= 0.01, f"median point-to-surface error {error.median():.4f} of depth"
    assert (error < 0.05).float().mean() > 0.95


def test_seam_is_continuous(warped_360):
    """Just inside the generated region, depth continues the known depth (no step at the seam)."""
    world, result = warped_360
    for frame in result.frames[1:]:
        _, truth = world.render(frame.camera)
        known = ~frame.fill_mask
        band = dilate(known, 3) & frame.fill_mask
        rim = dilate(frame.fill_mask, 3) & known
        seam_error = relative_error(frame.depth, truth)[band].median()
        known_error = relative_error(frame.depth, truth)[rim].median()
        assert seam_error <= known_error + 0.005, (
            f"view {frame.index}: seam {seam_error:.4f} vs known {known_error:.4f}"
        )


def test_points_counted_per_view_and_no_duplicates_on_revisit(exact_360):
    _, result = exact_360
    assert sum(result.points_per_view) == len(result.cloud)
    assert all(count > 0 for count in result.points_per_view)
    # the closing view of the ring mostly revisits what exists: it adds far less than a full view
    assert result.points_per_view[-1] < 0.2 * HEIGHT * WIDTH


def test_sphere_covers_floor_and_ceiling():
    world, result = grow("room", "sphere", warp=0.0, size=(48, 64))
    renderer = get_point_renderer("torch")
    for pitch in (-90.0, 90.0):
        camera = Camera(make_cameras("single", (64, 48))[0].K, pose(rotation_yaw_pitch(0.0, pitch)).float(), 48, 64)
        seen = renderer.render(result.cloud.points, result.cloud.colors, camera, result.cloud.radii)
        coverage = seen.known_mask.float().mean()
        assert coverage > 0.9, f"looking {'down' if pitch < 0 else 'up'}: only {coverage:.0%} covered"
        _, truth = world.render(camera)
        rel = ((seen.depth - truth).abs() / truth)[seen.known_mask]
        assert rel.median() < 0.03, f"floor/ceiling depth median rel error {rel.median():.4f}"


def test_same_seed_same_result():
    _, first = grow("street", "stage", size=(48, 64))
    _, second = grow("street", "stage", size=(48, 64))
    for a, b in zip(first.frames, second.frames):
        assert torch.equal(a.rgb, b.rgb) and torch.equal(a.depth, b.depth)
    assert math.isclose(float(first.cloud.points.sum()), float(second.cloud.points.sum()))


@pytest.fixture(scope="module")
def exact_street():
    """The street 360 with an exact estimator: pavements and kerbs seen at grazing angles, thin lamp posts."""
    return grow("street", "360", warp=0.0)


def test_exact_depth_puts_every_point_on_a_surface(exact_street):
    # edge handling must never move a continuous surface: with exact depth every fused point lies on the world's
    # surfaces to within 1 % of its distance (edge snapping used to move pavement tops onto the far facades)
    world, result = exact_street
    error = surface_error(world, result)
    assert float(error.max()) < 0.01, f"{int((error >= 0.01).sum())} points off the surfaces by >= 1 %"


def test_user_depth_is_kept_as_given_except_invalid_values():
    world = make_world("room")
    camera = make_cameras("single", (WIDTH, HEIGHT))[0]
    image, truth = world.render(camera)
    # a blurred map (ramps at every edge, which snapping would have moved) with invalid values in it
    given = torch.nn.functional.avg_pool2d(truth[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    given[10, 10], given[20, 30], given[30, 40], given[40, 50] = float("nan"), float("inf"), -1.0, 0.0
    valid = torch.isfinite(given) & (given > 0)
    estimator = WarpedEstimator(world, warp=0.0)
    pipe = ScenePipeline(
        OracleOutpainter(world, [camera]), estimator, AlignedCompleter(estimator), get_point_renderer("torch")
    )
    frame = pipe(image, [camera], initial_depth=given).frames[0]
    assert torch.equal(frame.depth[valid], given[valid]), "a valid user depth value was changed"
    assert bool(torch.isfinite(frame.depth).all()) and bool((frame.depth > 0).all()), "invalid values not filled"
    assert bool(frame.lifted_mask[valid].all()), "a valid user depth pixel was not lifted"
