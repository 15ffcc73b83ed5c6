"""What someone driving ``ScenePipeline`` from their own code relies on: the outpainter is told which view it fills,
every frame exposes what the loop saw and what it lifted, and a depth map the user gave is kept as given."""

from __future__ import annotations

import torch

from core.cameras import make_cameras
from core.components import DepthEstimate
from models.depth_align import AlignedCompleter
from pipeline.grow import ScenePipeline
from renderers import get_point_renderer

WIDTH, HEIGHT = 48, 32


class RecordingOutpainter:
    """Fills with a flat grey and remembers which camera and view each call was for."""

    def __init__(self):
        self.calls: list[tuple[int, object]] = []

    def outpaint(
        self, image, fill_mask, prompt, negative_prompt, seed, cancel=None, *, camera=None, view=None, known_mask=None
    ):
        self.calls.append((view, camera))
        return torch.where(fill_mask[..., None], torch.full_like(image, 0.5), image)


class FlatEstimator:
    def estimate(self, image, camera):
        return DepthEstimate(torch.full(image.shape[:2], 2.0), "metric")


def _pipeline(outpainter) -> ScenePipeline:
    estimator = FlatEstimator()
    return ScenePipeline(outpainter, estimator, AlignedCompleter(estimator), get_point_renderer("torch"))


def test_outpainter_is_told_the_camera_and_view():
    cameras = make_cameras("stage", (WIDTH, HEIGHT))
    outpainter = RecordingOutpainter()
    _pipeline(outpainter)(torch.rand(HEIGHT, WIDTH, 3), cameras)
    assert [view for view, _ in outpainter.calls] == [1, 2]
    assert [camera for _, camera in outpainter.calls] == cameras[1:]


def test_frames_expose_known_and_lifted_pixels():
    cameras = make_cameras("stage", (WIDTH, HEIGHT))
    result = _pipeline(RecordingOutpainter())(torch.rand(HEIGHT, WIDTH, 3), cameras)
    first, turned = result.frames[0], result.frames[1]
    assert not first.known_mask.any() and first.lifted_mask.all()
    assert turned.known_mask.any() and not turned.known_mask.all()  # a 25° turn sees part of view 0
    assert ((turned.known_depth > 0) == turned.known_mask).all()
    for frame in result.frames:
        assert frame.lifted_mask.shape == (HEIGHT, WIDTH) and frame.lifted_mask.dtype == torch.bool
        assert int(frame.lifted_mask.sum()) == frame.points_added
        assert not (frame.lifted_mask & ~frame.fill_mask).any()  # only generated pixels become new points


def test_user_depth_map_is_kept_as_given():
    """A step between two walls with one column halfway between: edge snapping would move that column onto the far
    wall, but the user said it is there, so view 0's depth equals the given map exactly."""
    depth = torch.full((HEIGHT, WIDTH), 1.0)
    depth[:, WIDTH // 2 :] = 3.0
    depth[:, WIDTH // 2] = 1.4  # a straddling column no plane explains: the kind of pixel snapping moves
    image = torch.rand(HEIGHT, WIDTH, 3)
    cameras = make_cameras("single", (WIDTH, HEIGHT))
    result = _pipeline(RecordingOutpainter())(image, cameras, initial_depth=depth)
    assert torch.equal(result.frames[0].depth, depth)


def test_partial_user_depth_keeps_valid_pixels():
    depth = torch.linspace(1.0, 2.0, WIDTH).expand(HEIGHT, WIDTH).clone()
    depth[:8, :8] = 0.0  # a hole the completer fills
    cameras = make_cameras("single", (WIDTH, HEIGHT))
    result = _pipeline(RecordingOutpainter())(torch.rand(HEIGHT, WIDTH, 3), cameras, initial_depth=depth)
    valid = depth > 0
    assert torch.equal(result.frames[0].depth[valid], depth[valid])
    assert (result.frames[0].depth[~valid] > 0).all()
