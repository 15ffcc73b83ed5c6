"""Writers for what the loop makes: point-cloud PLY, frame PNGs with depth previews, transforms.json.

Encoders are pure functions returning bytes; files are written at the edge, atomically (a temp file in the same
folder, then ``os.replace``), so a crash never leaves a partial file under the final name.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from pipeline.types import Frame, PointCloud

AXES_COMMENT = "WorldStitch: OpenCV axes, +x right, +y down, +z forward (world = view 0's camera); up is -y"
# nerfstudio / Blender camera axes are x right, y up, z backward: flip the camera's y and z axes.
OPENCV_TO_OPENGL_CAMERA = np.diag([1.0, -1.0, -1.0, 1.0])
DEPTH_PNG_SCALE = 1000.0  # 16-bit depth PNGs store millimetres
MAX_DEPTH_PNG_M = 65.535  # largest depth a 16-bit millimetre PNG can hold


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def points_ply_bytes(cloud: PointCloud) -> bytes:
    """Binary little-endian PLY: float x, y, z and uchar red, green, blue per vertex."""
    points = cloud.points.detach().float().cpu().numpy()
    if not np.isfinite(points).all():
        raise ValueError("the point cloud has non-finite coordinates; refusing to write it")
    colors = (cloud.colors.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    vertex = np.empty(
        len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    )
    vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
    vertex["red"], vertex["green"], vertex["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"comment {AXES_COMMENT}\n"
        f"element vertex {len(points)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "end_header\n"
    )
    return header.encode("ascii") + vertex.tobytes()


def png_bytes(array: np.ndarray) -> bytes:
    """PNG of a uint8 [H, W, 3] / [H, W] or uint16 [H, W] array (deterministic bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def rgb_to_uint8(image: Tensor) -> np.ndarray:  # [H, W, 3] float -> [H, W, 3] uint8
    return (image.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def depth_to_uint16_mm(depth: Tensor) -> np.ndarray:  # [H, W] metres -> [H, W] uint16 millimetres, 0 = unknown
    values = depth.detach().float().cpu().numpy()
    values = np.where(np.isfinite(values) & (values > 0), values, 0.0)
    return np.clip(np.round(values * DEPTH_PNG_SCALE), 0, 65535).astype(np.uint16)


def depth_preview(depth: Tensor, near: float | None = None, far: float | None = None) -> np.ndarray:
    """A colour picture of depth (near = warm, far = cool), shared range across frames when given."""
    values = depth.detach().float().cpu().numpy()
    valid = np.isfinite(values) & (values > 0)
    if not valid.any():
        return np.zeros((*values.shape, 3), np.uint8)
    inverse = np.where(valid, 1.0 / np.maximum(values, 1e-6), 0.0)
    lo = 1.0 / (far if far else values[valid].max())
    hi = 1.0 / (near if near else values[valid].min())
    t = np.clip((inverse - lo) / max(hi - lo, 1e-9), 0, 1)
    # a small perceptual ramp: dark blue → teal → yellow
    stops = np.array([[0.05, 0.03, 0.3], [0.1, 0.55, 0.55], [0.99, 0.9, 0.15]])
    idx = t * (len(stops) - 1)
    low = np.floor(idx).astype(int).clip(0, len(stops) - 2)
    frac = (idx - low)[..., None]
    rgb = stops[low] * (1 - frac) + stops[low + 1] * frac
    rgb[~valid] = 0
    return (rgb * 255 + 0.5).astype(np.uint8)


def frame_files(frames: list[Frame]) -> dict[str, bytes]:
    """PNG files for every frame: colour, 16-bit depth (mm), depth preview and the generated-region mask."""
    depths = torch.cat([f.depth.flatten() for f in frames])
    depths = depths[(depths > 0) & depths.isfinite()]
    near, far = (float(depths.min()), float(depths.max())) if depths.numel() else (None, None)
    files = {}
    for frame in frames:
        stem = f"frame_{frame.index:03d}"
        files[f"images/{stem}.png"] = png_bytes(rgb_to_uint8(frame.rgb))
        files[f"depth/{stem}.png"] = png_bytes(depth_to_uint16_mm(frame.depth))
        files[f"depth_preview/{stem}.png"] = png_bytes(depth_preview(frame.depth, near, far))
        files[f"masks/{stem}.png"] = png_bytes(frame.fill_mask.cpu().numpy().astype(np.uint8) * 255)
    return files


def transforms_json_bytes(frames: list[Frame], ply_file_path: str | None = "points.ply") -> bytes:
    """nerfstudio-style transforms.json (OpenGL camera axes, camera-to-world matrices, depth in mm PNGs)."""
    first = frames[0].camera
    data: dict = {
        "camera_model": "OPENCV",
        "w": first.width,
        "h": first.height,
        "depth_unit_scale_factor": 1.0 / DEPTH_PNG_SCALE,
        "frames": [],
    }
    if ply_file_path:
        data["ply_file_path"] = ply_file_path
    for frame in frames:
        cam = frame.camera
        c2w = cam.cam_to_world.double().cpu().numpy() @ OPENCV_TO_OPENGL_CAMERA
        stem = f"frame_{frame.index:03d}"
        data["frames"].append(
            {
                "file_path": f"images/{stem}.png",
                "depth_file_path": f"depth/{stem}.png",
                "mask_path": f"masks/{stem}.png",
                "fl_x": float(cam.K[0, 0]),
                "fl_y": float(cam.K[1, 1]),
                "cx": float(cam.K[0, 2]),
                "cy": float(cam.K[1, 2]),
                "w": cam.width,
                "h": cam.height,
                "transform_matrix": np.round(c2w, 8).tolist(),
            }
        )
    return (json.dumps(data, indent=2) + "\n").encode()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip of the given files with fixed timestamps (same content → same bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return buffer.getvalue()
