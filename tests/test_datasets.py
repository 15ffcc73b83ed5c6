"""Data loaders with true depth (evaluation.datasets): generic RGB-D folders, resizing, ray-cast meshes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.cameras import Camera, intrinsics
from evaluation.datasets import (
    Y_UP_TO_PROJECT,
    MeshScene,
    RGBDView,
    camera_looking,
    load_rgbd_folder,
    resize_view,
    shared_data_root,
)


def _write_folder(root, frames=2, K=((50.0, 0, 31.5), (0, 50.0, 23.5), (0, 0, 1))):
    root.mkdir(parents=True)
    meta = {"K": [list(row) for row in K], "frames": []}
    for i in range(frames):
        (root / f"{i:05d}").mkdir()
        Image.fromarray(np.full((48, 64, 3), 40 * i, dtype=np.uint8)).save(root / f"{i:05d}" / "rgb.png")
        Image.fromarray(np.full((48, 64), 1500 + 10 * i, dtype=np.uint16)).save(root / f"{i:05d}" / "depth.png")
        c2w = np.eye(4)
        c2w[0, 3] = 0.1 * i
        meta["frames"].append(
            {"name": f"{i:05d}", "rgb": f"{i:05d}/rgb.png", "depth": f"{i:05d}/depth.png", "c2w": c2w.tolist()}
        )
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def test_rgbd_folder_loads_metres_poses_and_pixel_centres(tmp_path):
    views = load_rgbd_folder(_write_folder(tmp_path / "seq"))
    assert [v.name for v in views] == ["00000", "00001"]
    assert torch.allclose(views[1].depth, torch.full((48, 64), 1.51))  # millimetres -> metres
    assert views[1].camera.center.tolist() == pytest.approx([0.1, 0.0, 0.0], abs=1e-6)
    # OpenCV's principal point (31.5, 23.5) is the project's image centre (32, 24): pixel centres at +0.5
    assert views[0].camera.K[0, 2].item() == 32.0 and views[0].camera.K[1, 2].item() == 24.0
    assert views[1].rgb[0, 0, 0].item() == pytest.approx(40 / 255)


def test_rgbd_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_rgbd_folder(tmp_path)
    _write_folder(tmp_path / "bad", K=((1.0, 0.0), (0.0, 1.0)))
    with pytest.raises(ValueError, match="'K'"):
        load_rgbd_folder(tmp_path / "bad")


def test_resize_keeps_depth_values_and_scales_intrinsics():
    depth = torch.ones(48, 64)
    depth[:, 32:] = 3.0  # a clean step: nearest resizing must not blend it
    camera = Camera(intrinsics(48, 64), torch.eye(4), 48, 64)
    small = resize_view(RGBDView(torch.rand(48, 64, 3), depth, camera), (32, 24))
    assert set(small.depth.unique().tolist()) == {1.0, 3.0}
    assert small.camera.K[0, 0].item() == pytest.approx(32.0) and small.camera.K[0, 2].item() == pytest.approx(16.0)


def test_mesh_scene_ray_casts_exact_depth_in_the_project_frame(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    # a +Y-up glTF: a wall 3 m in front (glTF looks down -z) and a floor 1.2 m below the origin
    wall = trimesh.creation.box(extents=(20.0, 20.0, 0.1))
    wall.apply_translation((0.0, 0.0, -3.05))
    floor = trimesh.creation.box(extents=(20.0, 0.1, 20.0))
    floor.apply_translation((0.0, -1.25, 0.0))
    path = tmp_path / "room.glb"
    trimesh.Scene([wall, floor]).export(path)
    mesh = MeshScene(path, world_from_mesh=Y_UP_TO_PROJECT)
    # in the project's frame (y down, the glTF's -z is +z) the camera looks along +z, level
    camera = camera_looking((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0), 60.0, (64, 48))
    rgb, depth = mesh.render(camera)
    assert rgb.shape == (48, 64, 3)
    top = depth[:10]  # the upper rows see the wall: z-depth exactly 3 m
    assert torch.allclose(top, torch.full_like(top, 3.0), atol=1e-4)
    bottom_row_floor = depth[-1, 32]  # the lowest rows see the floor 1.2 m below: z = 1.2 * f / (v - cy)
    focal = 32 / np.tan(np.radians(30.0))
    assert float(bottom_row_floor) == pytest.approx(1.2 * focal / 23.5, rel=1e-4)


@pytest.mark.skipif(shared_data_root() is None, reason="../shared/data is absent")
def test_icl_frames_match_their_metadata():
    folder = shared_data_root() / "rgbd" / "icl_nuim_livingroom1"
    meta = json.loads((folder / "meta.json").read_text())
    views = load_rgbd_folder(folder)
    assert len(views) == 5
    for view, frame in zip(views, meta["frames"]):
        valid = view.depth > 0
        assert float(valid.float().mean()) == pytest.approx(frame["depth_valid_fraction"], abs=1e-3)
        assert float(view.depth[valid].min()) == pytest.approx(frame["depth_range_m"][0], abs=1e-3)
