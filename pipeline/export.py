"""Writers for what the loop makes: point-cloud PLY, frame PNGs with depth previews, transforms.json.

Encoders are pure functions returning bytes; files are written at the edge, atomically (a temp file in the same
folder, then ``os.replace``), so a crash never leaves a partial file under the final name.
"""

from __future__ import annotations

import io
import json
import zipfile

import cv2
import numpy as np
import torch
from PIL import Image
from plyfile import PlyData, PlyElement
from torch import Tensor

from core.images import to_uint8
from core.types import Frame, PointCloud

AXES_COMMENT = "WorldStitch: OpenCV axes, +x right, +y down, +z forward (world = view 0's camera); up is -y"
# nerfstudio / Blender camera axes are x right, y up, z backward: flip the camera's y and z axes.
OPENCV_TO_OPENGL_CAMERA = np.diag([1.0, -1.0, -1.0, 1.0])
DEPTH_PNG_SCALE = 1000.0  # 16-bit depth PNGs store millimetres when the scene fits (<= 65.535 m)
MAX_DEPTH_PNG_M = 65.535  # largest depth a 16-bit millimetre PNG can hold
DEPTH_PNG_UNITS_M = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)  # per-scene PNG steps: 1 mm, else the finest that
# holds the deepest pixel (2 mm holds 131 m: Depth Anything V2 Metric-Outdoor's 80 m), named in transforms.json


def points_ply_bytes(cloud: PointCloud) -> bytes:
    """Binary little-endian PLY (written by ``plyfile``): float x, y, z and uchar red, green, blue per vertex."""
    points = cloud.points.detach().float().cpu().numpy()  # [N, 3]
    if not np.isfinite(points).all():
        raise ValueError("the point cloud has non-finite coordinates; refusing to write it")
    colors = to_uint8(cloud.colors)  # [N, 3]
    vertex = np.empty(
        len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    )
    vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
    vertex["red"], vertex["green"], vertex["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    ply = PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<", comments=[AXES_COMMENT])
    buffer = io.BytesIO()
    ply.write(buffer)
    return buffer.getvalue()


OUTPUT_PNG_LEVEL = 1
"""zlib level of the PNGs a run writes (frames, depth, masks, panorama). Measured on a 512×384 frame on the shared
2 cores: level 6 (Pillow's default) 122 ms / 144 KB, level 3 52 ms / 158 KB, level 1 18 ms / 173 KB; an offline
``360`` run writes 54 of them, so level 1 saves seconds for 20 % larger files."""


def png_bytes(array: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG of a uint8 [H, W, 3] / [H, W] or uint16 [H, W] array (deterministic bytes); zlib ``compress_level`` 0-9."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def depth_to_uint16_mm(depth: Tensor) -> np.ndarray:  # [H, W] metres -> [H, W] uint16 millimetres, 0 = unknown
    return depth_to_uint16(depth, 1.0 / DEPTH_PNG_SCALE)


def depth_png_unit(frames: list[Frame]) -> float:
    """Metres per step of the scene's 16-bit depth PNGs: 1 mm, or the finest unit that holds its deepest pixel."""
    deepest = max((float(f.depth[f.depth.isfinite()].max()) for f in frames if f.depth.isfinite().any()), default=0)
    return next((unit for unit in DEPTH_PNG_UNITS_M if deepest / unit <= 65535), DEPTH_PNG_UNITS_M[-1])


def depth_to_uint16(depth: Tensor, unit_m: float) -> np.ndarray:  # [H, W] metres -> [H, W] uint16 steps, 0 = unknown
    values = depth.detach().float().cpu().numpy()
    values = np.where(np.isfinite(values) & (values > 0), values, 0.0)
    return np.clip(np.round(values / unit_m), 0, 65535).astype(np.uint16)


def depth_preview(depth: Tensor, near: float | None = None, far: float | None = None) -> np.ndarray:
    """A colour picture of depth (OpenCV's turbo map on inverse depth: near = warm, far = cool, unknown = black),
    on a range shared across frames when ``near``/``far`` are given.

    Args:
        depth: ``[H, W]`` z-depth, 0 / non-finite = unknown.
        near, far: the depth range mapped to the ends of the colour map (default: this map's own range).

    Returns:
        ``[H, W, 3]`` uint8 RGB.
    """
    values = depth.detach().float().cpu().numpy()
    valid = np.isfinite(values) & (values > 0)
    if not valid.any():
        return np.zeros((*values.shape, 3), np.uint8)
    inverse = np.where(valid, 1.0 / np.maximum(values, 1e-6), 0.0)
    lo = 1.0 / (far if far else values[valid].max())
    hi = 1.0 / (near if near else values[valid].min())
    t = np.clip((inverse - lo) / max(hi - lo, 1e-9), 0, 1)
    bgr = cv2.applyColorMap(to_uint8(t), cv2.COLORMAP_TURBO)  # [H, W, 3] BGR
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    rgb[~valid] = 0
    return rgb


def frame_files(frames: list[Frame]) -> dict[str, bytes]:
    """PNG files for every frame: colour, 16-bit depth (in :func:`depth_png_unit` steps), depth preview, mask."""
    depths = torch.cat([f.depth.flatten() for f in frames])
    depths = depths[(depths > 0) & depths.isfinite()]
    near, far = (float(depths.min()), float(depths.max())) if depths.numel() else (None, None)
    files = {}
    unit = depth_png_unit(frames)
    for frame in frames:
        stem = f"frame_{frame.index:03d}"
        files[f"images/{stem}.png"] = png_bytes(to_uint8(frame.rgb), OUTPUT_PNG_LEVEL)
        files[f"depth/{stem}.png"] = png_bytes(depth_to_uint16(frame.depth, unit), OUTPUT_PNG_LEVEL)
        files[f"depth_preview/{stem}.png"] = png_bytes(depth_preview(frame.depth, near, far), OUTPUT_PNG_LEVEL)
        files[f"masks/{stem}.png"] = png_bytes(to_uint8(frame.fill_mask.float()), OUTPUT_PNG_LEVEL)
    return files


def transforms_json_bytes(frames: list[Frame], ply_file_path: str | None = "points.ply") -> bytes:
    """nerfstudio-style transforms.json (OpenGL camera axes, camera-to-world matrices, depth PNG unit in metres)."""
    first = frames[0].camera
    data: dict = {
        "camera_model": "OPENCV",
        "w": first.width,
        "h": first.height,
        "depth_unit_scale_factor": depth_png_unit(frames),
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


STORED_SUFFIXES = (".png", ".jpg", ".mp4", ".glb")
"""Already-compressed files go into zips as they are: deflating them again costs time and saves nothing."""


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip of the given files with fixed timestamps (same content → same bytes); text deflated, images stored."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if name.endswith(STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return buffer.getvalue()
