"""A coloured triangle mesh of the scene for engines and DCC tools (Blender, Unity, three.js): GLB bytes.

Each generated view becomes a depth mesh: a grid over the pixels that view lifted into the point cloud
(``Frame.lifted_mask``), one vertex per (sub-sampled) pixel at its depth, two triangles per grid cell. A triangle
whose corners' depths differ by :data:`core.masks.SNAP_REL_THRESHOLD` or more spans a depth edge (the snapped
boundary between a foreground object and what is behind it) and is dropped, so objects are not joined to the
background by stretched "curtains". Because each view meshes only the pixels it added, the per-view meshes tile
the scene without overlapping layers; they are merged into one mesh with per-vertex colours (glTF ``COLOR_0``).

Axes: glTF's (+Y up, right-handed, metres). The scene frame (OpenCV: x right, y down, z forward, view 0's
camera at the origin) is turned 180° about x: view 0's camera sits at the origin looking along -Z, glTF's camera
convention, with +Y up.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch

from core.geometry import unproject
from core.masks import SNAP_REL_THRESHOLD
from core.types import Frame

OPENCV_TO_GLTF = np.diag([1.0, -1.0, -1.0])
"""Scene frame (y down, z forward) to glTF (y up, z backward): a 180° turn about x (keeps handedness)."""
MESH_MAX_SIDE = 256
"""Each view is meshed on a grid of at most this many vertices along its longer side: a 13-view 512×384 scene
gives ~0.5 M vertices (~15 MB of GLB) instead of ~2.5 M at full resolution."""
DEPTH_EDGE_REL = SNAP_REL_THRESHOLD
"""Triangles whose corner depths differ by this fraction or more of the nearest corner are cut: the same
definition of a depth discontinuity as the depth-edge snapping that shaped these depth maps."""


def view_mesh(
    frame: Frame, max_side: int = MESH_MAX_SIDE, edge_rel: float = DEPTH_EDGE_REL
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The depth mesh of one view's lifted pixels, in the scene frame.

    Args:
        frame: a generated view; its ``lifted_mask`` (all pixels when missing) selects the pixels it added.
        max_side: grid vertices along the longer image side (the view is sub-sampled by a whole stride).
        edge_rel: relative depth jump between neighbouring pixels at which a triangle counts as spanning a depth
            edge (multiplied by the sub-sampling stride: grid neighbours are that many pixels apart).

    Returns:
        ``vertices [V, 3]`` float32 (scene frame), ``faces [F, 3]`` int64 (indices into vertices, wound so the
        front faces the view's camera), ``colors [V, 3]`` uint8.
    """
    depth = frame.depth.detach().float().cpu()  # [H, W]
    height, width = depth.shape
    stride = max(1, math.ceil(max(height, width) / max_side))
    points = unproject(depth, frame.camera.K.float().cpu(), frame.camera.cam_to_world.float().cpu())  # [H, W, 3]
    mask = frame.lifted_mask if frame.lifted_mask is not None else torch.ones_like(depth, dtype=torch.bool)
    mask = mask.detach().cpu() & (depth > 0) & depth.isfinite()
    points, depth, mask = points[::stride, ::stride], depth[::stride, ::stride], mask[::stride, ::stride]
    rgb = frame.rgb.detach().float().cpu()[::stride, ::stride]  # [h, w, 3]
    rows, cols = depth.shape

    # 1. Two triangles per grid cell: (top-left, bottom-left, top-right) and (top-right, bottom-left, bottom-right)
    index = torch.arange(rows * cols).reshape(rows, cols)
    top_left, top_right = index[:-1, :-1], index[:-1, 1:]
    bottom_left, bottom_right = index[1:, :-1], index[1:, 1:]
    faces = torch.cat(
        [
            torch.stack([top_left, bottom_left, top_right], dim=-1).reshape(-1, 3),
            torch.stack([top_right, bottom_left, bottom_right], dim=-1).reshape(-1, 3),
        ]
    )  # [F, 3]

    # 2. Keep triangles whose three corners were lifted and lie on one surface (no depth edge between them)
    flat_depth, flat_mask = depth.reshape(-1), mask.reshape(-1)
    corner_depth = flat_depth[faces]  # [F, 3]
    near, far = corner_depth.min(dim=1).values, corner_depth.max(dim=1).values
    # a slanted surface's depth changes by `stride` pixels' worth between grid neighbours
    keep = flat_mask[faces].all(dim=1) & (far - near < edge_rel * stride * near)
    faces = faces[keep]

    # 3. Drop vertices no triangle uses and renumber
    used = torch.zeros(rows * cols, dtype=torch.bool)
    used[faces.reshape(-1)] = True
    renumber = torch.full((rows * cols,), -1, dtype=torch.long)
    renumber[used] = torch.arange(int(used.sum()))
    vertices = points.reshape(-1, 3)[used].numpy().astype(np.float32)
    colors = (rgb.reshape(-1, 3)[used].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return vertices, renumber[faces].numpy(), colors


def scene_mesh(frames: list[Frame], max_side: int = MESH_MAX_SIDE, edge_rel: float = DEPTH_EDGE_REL):
    """All views' depth meshes merged into one ``trimesh.Trimesh`` in glTF axes (see module docstring).

    Raises:
        ValueError: no view produced a single triangle (nothing to export).
    """
    import trimesh

    vertices, faces, colors, offset = [], [], [], 0
    for frame in frames:
        v, f, c = view_mesh(frame, max_side, edge_rel)
        vertices.append(v)
        faces.append(f + offset)
        colors.append(c)
        offset += len(v)
    if offset == 0 or not sum(len(f) for f in faces):
        raise ValueError("the scene has no surface to mesh: no view lifted two neighbouring pixels")
    merged = np.concatenate(vertices) @ OPENCV_TO_GLTF.T.astype(np.float32)  # [V, 3]
    alpha = np.full((offset, 1), 255, np.uint8)
    return trimesh.Trimesh(
        vertices=merged,
        faces=np.concatenate(faces),
        vertex_colors=np.concatenate([np.concatenate(colors), alpha], axis=1),
        process=False,
    )


def scene_mesh_glb(frames: list[Frame], max_side: int = MESH_MAX_SIDE, edge_rel: float = DEPTH_EDGE_REL) -> bytes:
    """Binary glTF (GLB) of :func:`scene_mesh`: vertex positions, per-vertex colours (``COLOR_0``), triangles.

    Args:
        frames: the generated views (``SceneResult.frames``).
        max_side: grid vertices along each view's longer side.
        edge_rel: relative depth jump at which a triangle counts as spanning a depth edge.

    Returns:
        GLB bytes that trimesh, Blender's glTF importer and Gradio's ``Model3D`` open.

    Raises:
        ValueError: nothing to mesh.
    """
    mesh = scene_mesh(frames, max_side, edge_rel)
    buffer = io.BytesIO()
    mesh.export(buffer, file_type="glb")
    return buffer.getvalue()
