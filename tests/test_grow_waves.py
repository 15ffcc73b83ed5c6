"""Views that cannot see each other are outpainted together (two PatchMatch fills at once on two cores): the scene
must come out exactly as it does one view after another, and a view that does see its wave's new content must be
outpainted again instead of keeping a stale fill."""

from __future__ import annotations

import math

import pytest
import torch

from core.cameras import Camera, intrinsics, make_cameras, ordered_ring, pose, ring_yaws, rotation_yaw_pitch
from core.components import DepthEstimate, ParallelOutpainter
from models.depth_align import AlignedCompleter
from pipeline import grow
from pipeline.grow import ScenePipeline, outpaint_wave, outpaint_waves
from renderers import get_point_renderer

WIDTH, HEIGHT = 128, 96  # large enough that the ring's alternate views are clear of each other's borders


class ContentOutpainter:
    """Fills with a colour that depends on what the view sees and on the seed, so a stale fill would show."""

    def __init__(self, parallel_views: int):
        self.parallel_views = parallel_views
        self.single: list[int] = []
        self.waves: list[list[int]] = []

    def outpaint(
        self, image, fill_mask, prompt, negative_prompt, seed, cancel=None, *, camera=None, view=None, known_mask=None
    ):
        self.single.append(view)
        return self._fill(image, fill_mask, seed)

    def outpaint_many(self, requests, cancel=None):
        self.waves.append([r.view for r in requests])
        return [self._fill(r.image, r.fill_mask, r.seed) for r in requests]

    @staticmethod
    def _fill(image, fill_mask, seed):
        known = ~fill_mask
        mean = image[known].mean(0) if known.any() else torch.zeros(3)
        rows = torch.linspace(0, 1, image.shape[0])[:, None, None]
        colour = (mean + 0.1 * rows + 0.01 * (seed % 7)).clamp(0, 1).expand_as(image)
        return torch.where(fill_mask[..., None], colour, image)


class SlopedEstimator:
    def estimate(self, image, camera):
        rows = torch.linspace(2.0, 4.0, image.shape[0])[:, None].expand(image.shape[:2])
        return DepthEstimate(rows.clone(), "metric")


def _grow(outpainter, cameras, image):
    estimator = SlopedEstimator()
    pipe = ScenePipeline(outpainter, estimator, AlignedCompleter(estimator), get_point_renderer("torch"))
    return pipe(image, cameras, "", "", seed=3)


def _assert_same_scene(a, b):
    assert torch.equal(a.cloud.points, b.cloud.points) and torch.equal(a.cloud.colors, b.cloud.colors)
    for x, y in zip(a.frames, b.frames, strict=True):
        assert torch.equal(x.rgb, y.rgb) and torch.equal(x.depth, y.depth) and torch.equal(x.lifted_mask, y.lifted_mask)


def test_ring_sides_take_turns():
    signed = [((y + 180) % 360) - 180 for y in ordered_ring(ring_yaws())]
    assert signed[0] == 0
    sides = [s > 0 for s in signed[1:13]]
    assert sides == [True, False] * 6  # right, left, right, ... then 180° where they meet
    assert sorted(round(y, 6) for y in ordered_ring(ring_yaws())) == sorted(round(y, 6) for y in ring_yaws())


def _camera(yaw: float, position=(0.0, 0.0, 0.0)) -> Camera:
    return Camera(intrinsics(HEIGHT, WIDTH), pose(rotation_yaw_pitch(yaw, 0.0), torch.tensor(position)), HEIGHT, WIDTH)


@pytest.mark.parametrize(
    ("yaw_a", "yaw_b", "overlap"),
    [(25.0, -36.7, False), (25.0, 50.0, True), (0.0, 180.0, False), (150.0, 200.0, True), (10.0, 10.0, True)],
)
def test_views_overlap_by_field_of_view(yaw_a, yaw_b, overlap):
    from core.cameras import views_overlap

    assert views_overlap(_camera(yaw_a), _camera(yaw_b)) is overlap
    assert views_overlap(_camera(yaw_b), _camera(yaw_a)) is overlap


def test_views_overlapping_only_inside_grown_views_are_apart():
    from core.cameras import views_overlap

    left, right = _camera(-25.0), _camera(25.0)  # both see the photo's middle, nothing of each other's new side
    assert views_overlap(left, right)
    assert not views_overlap(left, right, covered=[_camera(0.0)])
    assert views_overlap(left, right, covered=[_camera(40.0)])  # a grown view elsewhere does not cover the middle


def test_views_at_different_centres_are_taken_to_overlap():
    from core.cameras import views_overlap

    assert views_overlap(_camera(0.0), _camera(180.0, position=(0.0, 0.0, 0.5)))


def test_views_overlap_margin_is_in_pixels():
    from core.cameras import views_overlap

    half_fov = math.degrees(math.atan(0.5))  # focal = width
    gap_deg = 2.0  # two views whose borders are 2° apart: about 5.6 px at this size (focal / cos² = 160 px/rad)
    a, b = _camera(0.0), _camera(2 * half_fov + gap_deg)
    assert not views_overlap(a, b, margin_px=0.0)
    assert views_overlap(a, b, margin_px=8.0)


def test_waves_pair_the_two_sides_of_the_ring():
    cameras = make_cameras("360", (WIDTH, HEIGHT))
    waves = outpaint_waves(cameras, 2)
    assert [len(w) for w in waves] == [2, 2, 2, 2, 2, 2, 1]  # 180° sees both sides' last views
    assert outpaint_wave(cameras, 1, 1) == [1]


def test_ring_outpainted_in_pairs_equals_one_view_at_a_time():
    cameras = make_cameras("360", (WIDTH, HEIGHT))
    image = torch.rand(HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(0))
    paired, alone = ContentOutpainter(2), ContentOutpainter(1)
    assert isinstance(paired, ParallelOutpainter)
    together = _grow(paired, cameras, image)
    one_by_one = _grow(alone, cameras, image)
    assert paired.waves == [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12]] and paired.single == [13]
    assert alone.waves == [] and alone.single == list(range(1, 14))
    _assert_same_scene(together, one_by_one)


def test_view_that_sees_its_waves_new_points_is_outpainted_again(monkeypatch):
    """Neighbouring views wrongly taken as apart: the second sees what the first added, so its fill from the
    earlier render is thrown away and it is outpainted again, and the scene is still the sequential one."""
    monkeypatch.setattr(grow, "views_overlap", lambda a, b, covered=(): False)
    cameras = make_cameras("stage", (WIDTH, HEIGHT))  # 0°, +25°, -25°: views 1 and 2 both overlap view 0 only
    cameras = [cameras[0], cameras[1], _camera(50.0)]  # view 2 at 50° sees view 1's new content
    image = torch.rand(HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(1))
    paired = ContentOutpainter(2)
    together = _grow(paired, cameras, image)
    assert paired.waves == [[1, 2]] and paired.single == [2]  # view 2 filled again after view 1 was fused
    _assert_same_scene(together, _grow(ContentOutpainter(1), cameras, image))


def test_progress_names_the_views_of_a_wave():
    cameras = make_cameras("360", (WIDTH, HEIGHT))[:5]
    estimator = SlopedEstimator()
    pipe = ScenePipeline(ContentOutpainter(2), estimator, AlignedCompleter(estimator), get_point_renderer("torch"))
    events = []
    pipe(torch.rand(HEIGHT, WIDTH, 3), cameras, progress=events.append)
    messages = [e.message for e in events if e.stage == "outpaint"]
    assert messages == ["views 2-3/5: outpaint", "views 4-5/5: outpaint"]
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions)  # progress never goes back
