"""Grow where I look: one more view toward a chosen direction, from the existing cloud, within a memory budget."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from core.cameras import make_cameras
from core.components import Cancelled
from core.images import fit_size, load_depth_file, load_image, resize_depth
from models.registry import build_components
from pipeline.config import GrowConfig
from pipeline.grow import ScenePipeline
from pipeline.grow_more import GrowLimitError, GrowLimits, camera_toward, grow_more
from renderers import get_point_renderer

ROOT = Path(__file__).resolve().parents[1]
SIZE = (64, 48)  # (W, H)


@pytest.fixture(scope="module")
def scene():
    """A one-view scene of the room example (its own depth) and the offline pipeline that made it."""
    components = build_components("offline")
    pipe = ScenePipeline(
        components.outpainter, components.estimator, components.completer, get_point_renderer("torch"), GrowConfig()
    )
    image = fit_size(load_image(ROOT / "examples" / "room" / "image.png"), SIZE)
    depth_file = load_depth_file(ROOT / "examples" / "room" / "depth.png")
    depth, valid = resize_depth(depth_file.depth.float(), depth_file.valid_mask, SIZE)
    result = pipe(image, make_cameras("single", SIZE), "a living room", initial_depth=torch.where(valid, depth, 0))
    return pipe, result


def test_grows_toward_the_chosen_direction_and_keeps_the_old_scene(scene):
    pipe, result = scene
    before = len(result.cloud)
    grown = grow_more(result, pipe, yaw_deg=40.0, prompt="a living room", seed=3)
    assert len(result.frames) == 1 and len(result.cloud) == before  # the input is not modified
    assert len(grown.frames) == 2 and grown.frames[1].index == 1
    added = grown.frames[1].points_added
    assert added > 0 and len(grown.cloud) == before + added and grown.points_per_view == [before, added]
    # the new view overlaps the photo on its left (40° turn, 53° field of view): known there, new on the right
    known = grown.frames[1].known_mask
    assert known[:, : SIZE[0] // 4].float().mean() > 0.5 and known[:, -SIZE[0] // 4 :].float().mean() < 0.1
    new_points = grown.cloud.points[before:]
    assert float(new_points[:, 0].median()) > 0  # turned right: the new points lie to the right (+x)
    assert torch.equal(grown.cloud.points[:before], result.cloud.points)


def test_growing_the_same_way_twice_adds_little(scene):
    pipe, result = scene
    once = grow_more(result, pipe, yaw_deg=40.0, seed=3)
    twice = grow_more(once, pipe, yaw_deg=40.0, seed=3)
    assert twice.frames[2].points_added < 0.1 * once.frames[1].points_added


def test_budget_cancel_and_bad_angles(scene):
    pipe, result = scene
    with pytest.raises(GrowLimitError, match="at most 1 views"):
        grow_more(result, pipe, 30.0, limits=GrowLimits(max_views=1))
    with pytest.raises(GrowLimitError, match="at most 1,000 points"):
        grow_more(result, pipe, 30.0, limits=GrowLimits(max_points=1000))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        grow_more(result, pipe, 30.0, cancel=cancel)
    with pytest.raises(ValueError, match="pitch"):
        camera_toward(result.frames[0].camera, 0.0, 120.0)
