"""Closing the 360° ring (pipeline/ring.py): the error is spread over the ring instead of piling up at its end."""

from __future__ import annotations

import math

import torch

from core.cameras import Camera, make_cameras, pose, rotation_yaw_pitch
from core.components import DepthEstimate
from evaluation.worlds import make_world
from models.depth_align import AlignedCompleter
from pipeline.config import GrowConfig
from pipeline.grow import ScenePipeline
from pipeline.ring import RingClosure, azimuth_deg, ring_centre
from renderers import get_point_renderer

SIZE = (96, 72)  # (width, height)
WARP = 0.10  # the estimator is 10 % off in a smooth way


class TrueColours:
    def __init__(self, world, cameras):
        self.world, self.queue = world, list(cameras[1:])

    def outpaint(self, image, fill_mask, prompt, negative_prompt, seed, cancel=None, **where):
        truth, _ = self.world.render(self.queue.pop(0))
        return torch.where(fill_mask[..., None], truth, image)


class SmoothlyWrongEstimator:
    """Metric, right on average, off by up to 10 % in a smooth pattern across every image."""

    def __init__(self, world):
        self.world = world

    def estimate(self, image, camera):
        _, depth = self.world.render(camera)
        v, u = torch.meshgrid(torch.linspace(0, 1, camera.height), torch.linspace(0, 1, camera.width), indexing="ij")
        return DepthEstimate(depth * 1.4 * (1 + WARP * torch.sin(2.1 * u + 0.7) * torch.cos(1.3 * v)), "metric")


def _grow_ring(close: bool):
    world = make_world("room")
    cameras = make_cameras("360", SIZE)
    image, depth0 = world.render(cameras[0])
    estimator = SmoothlyWrongEstimator(world)
    pipe = ScenePipeline(
        TrueColours(world, cameras),
        estimator,
        AlignedCompleter(estimator),
        get_point_renderer("torch"),
        GrowConfig(close_ring=close),
    )
    return world, depth0, pipe(image, cameras, initial_depth=depth0)


def _new_region_errors(world, result) -> list[float]:  # median relative error of each grown view's new pixels
    errors = []
    for frame in result.frames[1:]:
        _, truth = world.render(frame.camera)
        new = frame.fill_mask & (truth > 0)
        errors.append(float(((frame.depth - truth).abs() / truth)[new].median()))
    return errors


def test_ring_is_detected_only_for_a_level_ring_at_one_centre():
    assert ring_centre(make_cameras("360", SIZE)) is not None
    assert ring_centre(make_cameras("stage", SIZE)) is None  # three views do not go round
    assert ring_centre(make_cameras("sphere", SIZE)) is None  # pitched views
    moved = [
        Camera(c.K, pose(rotation_yaw_pitch(25.0 * i, 0.0), torch.tensor([0.1 * i, 0.0, 0.0])), 72, 96)
        for i, c in enumerate(make_cameras("360", SIZE))
    ]
    assert ring_centre(moved) is None  # the centre moves


def test_correction_is_zero_over_view_0_and_continuous():
    closure = RingClosure(
        torch.zeros(3), 10.0, torch.tensor([26.0, 150.0, 210.0, 334.0]), torch.tensor([0.0, -0.1, 0.08, 0.0]), 0.18
    )
    azimuths = torch.linspace(-180.0, 180.0, 3601, dtype=torch.float64)
    values = closure.correction(azimuths)
    assert float(values[(azimuths - 10.0).abs() <= 26.0].abs().max()) == 0.0
    assert float(values.diff().abs().max()) < 0.002  # no jump anywhere (0.1 deg steps, slopes < 0.002 / step)
    assert math.isclose(float(closure.correction(torch.tensor([160.0]))), -0.1, rel_tol=1e-6)
    points = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert azimuth_deg(points, torch.zeros(3)).tolist() == [90.0, 0.0]


def test_ring_closure_spreads_the_error_instead_of_ending_in_the_last_views():
    world, depth0, closed = _grow_ring(True)
    _, _, open_ring = _grow_ring(False)
    before, after = _new_region_errors(world, open_ring), _new_region_errors(world, closed)
    # without closure the chains drift: the last views end far off; with it the error stays near the first view's
    assert max(before[-3:]) > 0.1, f"the open ring did not drift ({before})"
    assert max(after) < 0.06, f"closed ring errors {[round(e, 3) for e in after]}"
    assert after[-1] < 0.4 * before[-1]
    # view 0's given depth and its points are untouched
    assert torch.equal(closed.frames[0].depth, depth0)
    from_view_0 = closed.cloud.source_view == 0
    assert torch.equal(closed.cloud.points[from_view_0], open_ring.cloud.points[open_ring.cloud.source_view == 0])


class CrudeEstimator:
    """Metric but wrong in shape (a tilted plane everywhere): 20-50 % off, no reference for the ring's scale."""

    def estimate(self, image, camera):
        v, u = torch.meshgrid(torch.linspace(0, 1, camera.height), torch.linspace(0, 1, camera.width), indexing="ij")
        return DepthEstimate(2.0 + 3.0 * u * (1 - v), "metric")


def test_closure_is_not_measured_against_an_estimator_that_disagrees_with_the_scene():
    world = make_world("room")
    cameras = make_cameras("360", SIZE)
    image, depth0 = world.render(cameras[0])
    renderer = get_point_renderer("torch")
    from pipeline.fusion import lift_pixels
    from pipeline.ring import measure_closure

    frames = ScenePipeline(
        TrueColours(world, cameras[:1]), CrudeEstimator(), AlignedCompleter(CrudeEstimator()), renderer
    )(image, cameras[:1], initial_depth=depth0).frames
    cloud = lift_pixels(image, depth0, torch.ones_like(depth0, dtype=torch.bool), cameras[0], 0, 0.5)
    assert measure_closure(frames, cloud, renderer, CrudeEstimator(), ring_centre(cameras)) is None
    assert measure_closure(frames, cloud, renderer, SmoothlyWrongEstimator(world), ring_centre(cameras)) is not None

    class CountingRenderer:
        calls = 0

        def render(self, *args, **kwargs):
            CountingRenderer.calls += 1
            return renderer.render(*args, **kwargs)

    # the first view that disagrees settles it: the other views are not rendered (13 renders of the whole cloud)
    assert measure_closure(frames * 3, cloud, CountingRenderer(), CrudeEstimator(), ring_centre(cameras)) is None
    assert CountingRenderer.calls == 1
