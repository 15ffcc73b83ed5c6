"""The GLB mesh export: per-view depth meshes, cut at depth edges, merged, that trimesh reads back."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from core.cameras import make_cameras
from core.images import fit_size, load_depth_file, load_image, resize_depth
from core.types import Frame
from pipeline.fusion import lift_pixels
from pipeline.mesh import DEPTH_EDGE_REL, OPENCV_TO_GLTF, scene_mesh_glb, view_mesh

ROOT = Path(__file__).resolve().parents[1]
SIZE = (64, 48)  # (W, H)
WALL_M, BOX_M = 3.0, 1.0  # a box 1 m away in front of a wall 3 m away


def box_frame(lifted: torch.Tensor | None = None) -> Frame:
    """One view of a box in front of a wall: a depth step of 200 % along the box's outline."""
    camera = make_cameras("single", SIZE)[0]
    width, height = SIZE
    depth = torch.full((height, width), WALL_M)
    depth[16:32, 20:44] = BOX_M
    rgb = torch.rand(height, width, 3, generator=torch.Generator().manual_seed(0))
    everything = torch.ones(height, width, dtype=torch.bool)
    lifted = everything if lifted is None else lifted
    return Frame(0, camera, rgb, depth, everything, int(lifted.sum()), None, None, lifted)


def load_glb(data: bytes) -> trimesh.Trimesh:
    scene = trimesh.load(io.BytesIO(data), file_type="glb", process=False)
    meshes = list(scene.geometry.values()) if isinstance(scene, trimesh.Scene) else [scene]
    assert len(meshes) == 1
    return meshes[0]


def test_glb_reads_back_with_colours_and_no_triangle_across_the_depth_edge():
    frame = box_frame()
    mesh = load_glb(scene_mesh_glb([frame]))
    width, height = SIZE
    assert len(mesh.vertices) == width * height  # every pixel is used by some triangle
    depth = -mesh.vertices[:, 2]  # glTF looks along -z
    corners = depth[mesh.faces]  # [F, 3]
    assert np.all(corners.max(1) - corners.min(1) < DEPTH_EDGE_REL * corners.min(1))
    # only triangles along the box's outline (24 x 16 pixels) are cut: at most 2 per outline cell
    removed = 2 * (width - 1) * (height - 1) - len(mesh.faces)
    assert 0 < removed <= 2 * 2 * (24 + 16 + 2)
    colors = mesh.visual.vertex_colors[:, :3]
    assert colors.std() > 30  # the frame's colours, not a flat default
    # triangles face the camera (at the origin): normals point back toward it
    centres = mesh.triangles_center
    assert np.all((mesh.face_normals * centres).sum(1) < 0)


def test_without_the_edge_cut_triangles_would_span_the_step():
    vertices, faces, _ = view_mesh(box_frame(), edge_rel=float("inf"))
    depth = vertices[:, 2]
    corners = depth[faces]
    assert (corners.max(1) / corners.min(1) > 2).any()


def test_only_lifted_pixels_are_meshed_and_views_merge():
    width, height = SIZE
    left = torch.zeros(height, width, dtype=torch.bool)
    left[:, : width // 2] = True
    one = load_glb(scene_mesh_glb([box_frame(left)]))
    both = load_glb(scene_mesh_glb([box_frame(left), box_frame(~left)]))
    assert len(one.vertices) == height * width // 2
    assert len(both.vertices) == height * width  # the second view adds the right half, no vertex twice
    assert one.vertices[:, 0].max() < 0 + 1e-6  # left half only (x <= 0 in front of the camera)


def test_room_example_mesh_matches_its_point_cloud():
    image = fit_size(load_image(ROOT / "examples" / "room" / "image.png"), (128, 96))
    depth_file = load_depth_file(ROOT / "examples" / "room" / "depth.png")
    depth, valid = resize_depth(depth_file.depth.float(), depth_file.valid_mask, (128, 96))
    camera = make_cameras("single", (128, 96))[0]
    frame = Frame(0, camera, image, depth, valid, int(valid.sum()), None, None, valid)
    cloud = lift_pixels(image, depth, valid, camera, 0, 0.5)
    mesh = load_glb(scene_mesh_glb([frame], max_side=64))
    points = cloud.points.numpy() @ OPENCV_TO_GLTF.T  # the cloud in glTF axes
    low, high = points.min(0), points.max(0)
    extent = high - low
    assert np.all(mesh.bounds[0] >= low - 1e-4) and np.all(mesh.bounds[1] <= high + 1e-4)
    assert np.all(mesh.extents > 0.9 * extent)  # sub-sampled by 2, cut at edges, but the same room
    assert mesh.bounds[1][1] > 0 > mesh.bounds[0][1]  # +Y up: the ceiling above the camera, the floor below
    assert 0.95 * 64 * 48 < len(mesh.vertices) <= 64 * 48  # the room has few depth edges


def test_nothing_to_mesh_is_an_error():
    nothing = torch.zeros(SIZE[1], SIZE[0], dtype=torch.bool)
    with pytest.raises(ValueError, match="no surface"):
        scene_mesh_glb([box_frame(nothing)])
