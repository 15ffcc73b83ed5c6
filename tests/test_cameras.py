"""Cameras, paths and the geometry core agree with the written conventions."""

from __future__ import annotations

import json
import math

import pytest
import torch

from core.cameras import (
    intrinsics,
    load_path_json,
    look_at,
    make_cameras,
    ring_yaws,
    rotation_yaw_pitch,
)
from core.geometry import project, unproject


def forward_of(camera) -> torch.Tensor:
    return camera.cam_to_world[:3, 2]


def test_default_fov_is_focal_equals_width():
    camera = make_cameras("single", (512, 384))[0]
    assert float(camera.K[0, 0]) == 512
    assert camera.hfov_deg == pytest.approx(2 * math.degrees(math.atan(0.5)))  # 53.13°


def test_ring_takes_invisible_stitchs_step_to_both_sides_and_closes():
    yaws = sorted(ring_yaws())
    assert len(yaws) == 14 and yaws[0] == 0.0 and 180.0 in yaws
    steps = [b - a for a, b in zip(yaws, yaws[1:] + [360.0])]
    # 25° steps out to ±150° (each new view's hole the same size), and 180° between the two sides' last views
    assert sorted(steps) == pytest.approx([25.0] * 12 + [30.0] * 2)
    half_fov = math.degrees(math.atan(0.5))
    assert 150.0 + half_fov > 180.0 - half_fov  # the view at 180° sees both sides' last views: the ring is closed


def test_360_order_each_view_neighbours_an_earlier_one():
    cameras = make_cameras("360", (64, 48))
    for i in range(1, len(cameras)):
        angles = [
            math.degrees(math.acos(float(torch.dot(forward_of(cameras[i]), forward_of(c)).clamp(-1, 1))))
            for c in cameras[:i]
        ]
        assert min(angles) <= 37.0, f"view {i} is {min(angles):.1f}° from everything before it"


def test_yaw_turns_right_and_pitch_looks_up():
    right = rotation_yaw_pitch(90, 0)[:, 2]
    assert torch.allclose(right, torch.tensor([1.0, 0, 0], dtype=right.dtype), atol=1e-9)
    up = rotation_yaw_pitch(0, 90)[:, 2]
    assert torch.allclose(up, torch.tensor([0.0, -1, 0], dtype=up.dtype), atol=1e-9)  # world up is -y


def test_sphere_sees_floor_and_sky_and_neighbours_overlap_40_percent():
    height, width = 48, 64
    cameras = make_cameras("sphere", (width, height))
    forwards = torch.stack([forward_of(c) for c in cameras]).double()
    assert forwards[:, 1].max() > 0.99 and forwards[:, 1].min() < -0.99  # straight down and straight up
    hfov = cameras[0].hfov_deg
    vfov = 2 * math.degrees(math.atan(0.5 * height / float(cameras[0].K[1, 1])))
    pitch = torch.rad2deg(torch.asin(-forwards[:, 1]))
    yaw = torch.rad2deg(torch.atan2(forwards[:, 0], forwards[:, 2]))
    for i in range(1, len(cameras)):
        dyaw = ((yaw[i] - yaw[:i] + 180) % 360 - 180).abs()
        horizontal = dyaw * torch.cos(torch.deg2rad(torch.maximum(pitch[i].abs(), pitch[:i].abs())))
        vertical = (pitch[i] - pitch[:i]).abs()
        ok = (horizontal <= 0.6 * hfov + 1e-6) & (vertical <= 0.6 * vfov + 1e-6)
        assert ok.any(), f"view {i} (yaw {yaw[i]:.0f}, pitch {pitch[i]:.0f}) overlaps no earlier view by 40 %"


def test_unproject_then_project_roundtrip():
    camera = make_cameras("stage", (32, 24))[1]
    depth = torch.rand(24, 32) * 4 + 1
    points = unproject(depth, camera.K, camera.cam_to_world).reshape(-1, 3)
    uv, z = project(points, camera.K, camera.world_to_cam)
    assert torch.allclose(z, depth.flatten(), atol=1e-4)
    assert torch.allclose(uv[0], torch.tensor([0.5, 0.5]), atol=1e-4)  # pixel centres at +0.5


def test_look_at_points_the_camera_at_the_target():
    w2c = look_at(torch.tensor([1.0, -1.0, 0.0]), torch.tensor([1.0, -1.0, 5.0]))
    uv, z = project(torch.tensor([[1.0, -1.0, 5.0]]), intrinsics(48, 64), w2c.float())
    assert torch.allclose(uv[0], torch.tensor([32.0, 24.0]), atol=1e-4) and z[0] > 0


def test_path_json_views_and_matrices(tmp_path):
    """Every camera of a path file follows its fields: yaw/pitch/position views and world_to_cam matrices both take
    the file's field of view (a matrix view used to get the default 53° instead), a view's own FoV wins."""
    matrix = torch.eye(4)
    matrix[:3, 3] = torch.tensor([0.5, 0.0, -2.0])  # camera centre at (-0.5, 0, 2)
    path = tmp_path / "p.json"
    views = [
        {"yaw": 10, "pitch": 5, "position": [0, 0, 1]},
        {"world_to_cam": matrix.tolist()},
        {"yaw": -30, "hfov_deg": 40},
    ]
    path.write_text(json.dumps({"hfov_deg": 70, "views": views}))
    cameras = make_cameras(str(path), (64, 48))
    assert len(cameras) == 3
    assert [c.hfov_deg for c in cameras] == pytest.approx([70, 70, 40])
    assert all((c.width, c.height) == (64, 48) and c.world_to_cam.dtype == torch.float32 for c in cameras)
    assert torch.allclose(cameras[0].center, torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
    forward0 = cameras[0].cam_to_world[:3, 2]  # yaw 10° right, pitch 5° up (up is -y)
    assert forward0[0] > 0 and forward0[1] < 0
    assert torch.allclose(cameras[1].world_to_cam, matrix)
    assert torch.allclose(cameras[1].center, torch.tensor([-0.5, 0.0, 2.0]), atol=1e-6)
    forward2 = cameras[2].cam_to_world[:3, 2]
    assert forward2[0] == pytest.approx(-math.sin(math.radians(30)), abs=1e-6)
    assert torch.allclose(cameras[2].center, torch.zeros(3), atol=1e-6)


@pytest.mark.parametrize(
    "content, field",
    [
        ({"views": []}, "views"),
        ({"views": [{"yaw": "x"}]}, "views[0].yaw"),
        ({"views": [{"pitch": 120}]}, "views[0].pitch"),
        ({"views": [{"position": [0, 1]}]}, "views[0].position"),
        ({"views": [{"world_to_cam": [[1, 0], [0, 1]]}]}, "views[0].world_to_cam"),
        ({"hfov_deg": 500, "views": [{}]}, "hfov_deg"),
    ],
)
def test_bad_path_json_names_the_field(tmp_path, content, field):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_path_json(path)


def test_path_json_not_json(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_path_json(path)
