"""Real and mesh data with true depth: RGB-D folders with poses, ScanNet, Hypersim, and ray-cast meshes.

Every loader returns :class:`RGBDView` s in the project's conventions (OpenCV camera axes, ``K`` with pixel centres
at +0.5, z-depth in metres, 0 = unknown, colour float32 in [0, 1]).

* :func:`load_rgbd_folder` — a generic RGB-D sequence: ``meta.json`` with ``K`` (OpenCV pixel-index convention),
  ``frames: [{name, rgb, depth, c2w}]``; ``depth`` a 16-bit PNG in millimetres. This is the layout of
  ``../shared/data/rgbd/`` (ICL-NUIM living room, TUM office).
* :func:`load_scannet_view` / :func:`scannet_frames` — ScanNet scenes as Invisible Stitch's
  ``benchmark/scannet_eval.py`` reads them: ``DIR/<scene>/color/<i>.jpg``, ``depth/<i>.png`` (uint16 mm),
  ``pose/<i>.txt`` (4x4 camera-to-world, OpenCV axes), ``intrinsic/intrinsic_depth.txt`` (4x4).
* :func:`load_hypersim_view` / :func:`hypersim_pair_rows` — Hypersim as Invisible Stitch's
  ``benchmark/hypersim_pair_builder.py`` leaves it (``<scene>_pairs.csv`` + the standard Hypersim tree; needs
  ``h5py``). Depth is converted from ray length to z-depth with their focal of 886.81 px at 1024 x 768.
* :class:`MeshScene` — a textured triangle mesh (the CC0 bathroom GLB) ray-cast with trimesh + embreex into exact
  albedo and z-depth from any camera.

``shared_data_root()`` finds ``../shared/data`` next to the project; loaders of data that is absent are not called
by :mod:`evaluation.pairs` (its iterators are then empty).
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.cameras import Camera

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
"""Where the real test data lives: ``../shared/data`` from the project root (read-only; never copied in)."""

MM_PER_M = 1000.0
HYPERSIM_FOCAL_1024 = 886.81
"""Hypersim focal in px at 1024 wide (a 60° horizontal FoV): Invisible Stitch's constant."""

Y_UP_TO_PROJECT = np.diag([1.0, -1.0, -1.0, 1.0])
"""Data sets with +Y up (glTF, ICL-NUIM) turned 180° about x into the project's frame, where world up is -y:
``x_project = Y_UP_TO_PROJECT @ x_data`` (its own inverse). Estimators that use the camera's tilt (the geometric
prior) then see the floor below."""

BATHROOM_CENTRE = (-0.079, -1.2, 1.275)
"""A point in the middle of the bathroom, 1.2 m above the floor (its README's 360° check uses it), in the project's
frame (the GLB's (-0.079, 1.2, -1.275))."""


@dataclass
class RGBDView:
    """One view with true depth."""

    rgb: Tensor  # [H, W, 3] float32 in [0, 1]
    depth: Tensor  # [H, W] float32 z-depth in metres, 0 = unknown
    camera: Camera
    name: str = ""


def shared_data_root() -> Path | None:
    """``../shared/data`` when it exists, else None (callers skip cleanly)."""
    return SHARED_DATA if SHARED_DATA.is_dir() else None


def resize_view(view: RGBDView, size: tuple[int, int]) -> RGBDView:
    """The view at ``size = (width, height)``: colour area-averaged, depth nearest (never blends surfaces), K scaled.

    Args:
        view: the view.
        size: target ``(width, height)``.

    Returns:
        The resized view (the same object when the size already matches).
    """
    width, height = size
    if (view.camera.width, view.camera.height) == (width, height):
        return view
    rgb = F.interpolate(view.rgb.permute(2, 0, 1)[None], size=(height, width), mode="area")[0].permute(1, 2, 0)
    depth = F.interpolate(view.depth[None, None], size=(height, width), mode="nearest")[0, 0]
    return RGBDView(rgb.contiguous(), depth, view.camera.scaled(height, width), view.name)


def _read_rgb(path: Path) -> Tensor:  # -> [H, W, 3] float32 in [0, 1]
    from PIL import Image

    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB")).astype(np.float32) / 255.0)


def _read_depth_mm(path: Path) -> Tensor:  # -> [H, W] float32 metres, 0 = unknown
    from PIL import Image

    with Image.open(path) as image:
        raw = np.asarray(image)
    if raw.dtype not in (np.uint16, np.int32, np.uint32):
        raise ValueError(f"{path}: expected a 16-bit depth PNG in millimetres, got {raw.dtype}")
    return torch.from_numpy(raw.astype(np.float32) / MM_PER_M)


def to_project_axes(camera: Camera) -> Camera:
    """A camera of a +Y-up data set in the project's frame (see :data:`Y_UP_TO_PROJECT`)."""
    flip = torch.from_numpy(Y_UP_TO_PROJECT)
    world_to_cam = (camera.world_to_cam.double() @ flip).float()
    return Camera(camera.K, world_to_cam, camera.height, camera.width)


def camera_from_c2w(K_index: np.ndarray, cam_to_world: np.ndarray, height: int, width: int) -> Camera:
    """A project camera from intrinsics in OpenCV's pixel-index convention and a camera-to-world 4x4.

    OpenCV puts the centre of the top-left pixel at (0, 0); the project puts it at (0.5, 0.5), so the principal
    point moves by half a pixel.
    """
    K = torch.tensor(np.asarray(K_index, dtype=np.float64)[:3, :3], dtype=torch.float64)
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    world_to_cam = torch.linalg.inv(torch.tensor(np.asarray(cam_to_world, dtype=np.float64)))
    return Camera(K.float(), world_to_cam.float(), height, width)


def load_rgbd_folder(folder: str | Path) -> list[RGBDView]:
    """All frames of a generic RGB-D folder (``meta.json`` + per-frame ``rgb.png`` / 16-bit mm ``depth.png``).

    Args:
        folder: the sequence folder (e.g. ``../shared/data/rgbd/icl_nuim_livingroom1``).

    Returns:
        One view per frame, in the order of ``meta.json``.

    Raises:
        FileNotFoundError: when ``meta.json`` is missing; ValueError when a field is malformed.
    """
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no meta.json in {folder}")
    meta = json.loads(meta_path.read_text())
    K = np.asarray(meta.get("K"), dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{meta_path}: field 'K' must be a 3x3 matrix, got shape {K.shape}")
    views = []
    for index, frame in enumerate(meta.get("frames", [])):
        c2w = np.asarray(frame.get("c2w"), dtype=np.float64)
        if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
            raise ValueError(f"{meta_path}: frames[{index}].c2w must be a finite 4x4 matrix")
        rgb, depth = _read_rgb(folder / frame["rgb"]), _read_depth_mm(folder / frame["depth"])
        if rgb.shape[:2] != depth.shape:
            raise ValueError(
                f"{folder}: frame {frame.get('name')} colour {tuple(rgb.shape[:2])} != depth {depth.shape}"
            )
        height, width = depth.shape
        views.append(RGBDView(rgb, depth, camera_from_c2w(K, c2w, height, width), str(frame.get("name", index))))
    if not views:
        raise ValueError(f"{meta_path}: field 'frames' is empty")
    return views


# --- ScanNet -------------------------------------------------------------------------------------------------------

SCANNET_STRIDE = 50
SCANNET_GAP = 10
"""Invisible Stitch's ScanNet schedule: sequences start every 50 frames, the pair's frames are 10 apart."""


def _frame_key(path: Path) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.stem))


def load_scannet_view(scene_dir: Path, frame: str, intrinsic: np.ndarray) -> RGBDView | None:
    """One ScanNet frame at the depth resolution, or None when its pose is invalid (ScanNet marks lost tracking
    with -inf/nan poses)."""
    pose = np.loadtxt(scene_dir / "pose" / f"{frame}.txt").reshape(4, 4)
    if not np.isfinite(pose).all():
        return None
    depth = _read_depth_mm(scene_dir / "depth" / f"{frame}.png")
    height, width = depth.shape
    rgb = _read_rgb(scene_dir / "color" / f"{frame}.jpg")
    if rgb.shape[:2] != (height, width):
        rgb = F.interpolate(rgb.permute(2, 0, 1)[None], size=(height, width), mode="area")[0].permute(1, 2, 0)
    K = torch.from_numpy(intrinsic[:3, :3].astype(np.float32))
    world_to_cam = torch.linalg.inv(torch.from_numpy(pose).double()).float()
    return RGBDView(rgb.contiguous(), depth, Camera(K, world_to_cam, height, width), f"{scene_dir.name}/{frame}")


def scannet_frame_pairs(root: str | Path) -> list[tuple[Path, str, str, np.ndarray]]:
    """``(scene_dir, frame_a, frame_b, intrinsic)`` for pairs (i, i + 10), i = 0, 50, 100, ... of every scene."""
    scenes = sorted(p for p in Path(root).iterdir() if (p / "pose").is_dir())
    if not scenes:
        raise FileNotFoundError(f"no ScanNet scenes (folders with pose/, color/, depth/, intrinsic/) in {root}")
    pairs = []
    for scene_dir in scenes:
        intrinsic = np.loadtxt(scene_dir / "intrinsic" / "intrinsic_depth.txt").reshape(4, 4)
        frames = [p.stem for p in sorted((scene_dir / "pose").glob("*.txt"), key=_frame_key)]
        for start in range(0, len(frames) - SCANNET_GAP, SCANNET_STRIDE):
            pairs.append((scene_dir, frames[start], frames[start + SCANNET_GAP], intrinsic))
    return pairs


# --- Hypersim ------------------------------------------------------------------------------------------------------


def _read_hdf5(path: Path) -> np.ndarray:
    """The ``dataset`` array of a Hypersim HDF5 file (needs h5py)."""
    try:
        import h5py
    except ImportError as err:
        raise RuntimeError("reading Hypersim needs h5py: pip install h5py") from err
    with h5py.File(path, "r") as handle:
        return handle["dataset"][:]


def hypersim_z_depth(distance: np.ndarray) -> np.ndarray:  # [H, W] ray length -> [H, W] z-depth
    """Hypersim's depth_meters is the distance along each pixel's ray; z-depth = distance · f / |ray|."""
    height, width = distance.shape
    focal = HYPERSIM_FOCAL_1024 * width / 1024
    x = np.linspace(-0.5 * width + 0.5, 0.5 * width - 0.5, width, dtype=np.float64)[None, :]
    y = np.linspace(-0.5 * height + 0.5, 0.5 * height - 0.5, height, dtype=np.float64)[:, None]
    ray_norm = np.sqrt(x**2 + y**2 + focal**2)
    return (distance / ray_norm * focal).astype(np.float32)


def hypersim_camera(position: np.ndarray, orientation: np.ndarray, meters_per_unit: float, height: int, width: int):
    """Hypersim's camera (x right, y up, z backward; asset units) → a project Camera (OpenCV axes, metres)."""
    cam_to_world = np.eye(4)
    cam_to_world[:3, :3] = orientation @ np.diag([1.0, -1.0, -1.0])  # OpenGL-style camera axes -> OpenCV axes
    cam_to_world[:3, 3] = position * meters_per_unit
    focal = HYPERSIM_FOCAL_1024 * width / 1024
    K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=torch.float32)
    world_to_cam = torch.linalg.inv(torch.from_numpy(cam_to_world)).float()
    return Camera(K, world_to_cam, height, width)


def _meters_per_asset_unit(scene_dir: Path) -> float:
    with open(scene_dir / "_detail" / "metadata_scene.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["parameter_name"] == "meters_per_asset_unit":
                return float(row["parameter_value"])
    raise ValueError(f"{scene_dir}/_detail/metadata_scene.csv has no meters_per_asset_unit")


def load_hypersim_view(scene_dir: Path, camera_name: str, frame: int) -> RGBDView:
    """One Hypersim frame: HDR colour clipped to [0, 1] and gamma-encoded (1/2.2), z-depth in metres."""
    meters_per_unit = _meters_per_asset_unit(scene_dir)
    detail = scene_dir / "_detail" / camera_name
    positions = _read_hdf5(detail / "camera_keyframe_positions.hdf5")
    orientations = _read_hdf5(detail / "camera_keyframe_orientations.hdf5")
    images = scene_dir / "images"
    color = _read_hdf5(images / f"scene_{camera_name}_final_hdf5" / f"frame.{frame:04d}.color.hdf5")
    distance = _read_hdf5(images / f"scene_{camera_name}_geometry_hdf5" / f"frame.{frame:04d}.depth_meters.hdf5")
    depth = np.nan_to_num(hypersim_z_depth(np.asarray(distance, dtype=np.float64)), nan=0.0, posinf=0.0)
    rgb = np.clip(np.nan_to_num(np.asarray(color, dtype=np.float32)), 0, 1) ** (1 / 2.2)
    height, width = depth.shape
    camera = hypersim_camera(positions[frame], orientations[frame], meters_per_unit, height, width)
    name = f"{scene_dir.name}/{camera_name}/{frame}"
    return RGBDView(torch.from_numpy(np.ascontiguousarray(rgb)).float(), torch.from_numpy(depth).float(), camera, name)


def hypersim_pair_rows(root: str | Path) -> list[dict[str, str]]:
    """The rows of every ``root/<scene>_pairs.csv`` (columns scene, camera, frame_id, remaining_frame_id, ...)."""
    lists = sorted(Path(root).glob("*_pairs.csv"))
    if not lists:
        raise FileNotFoundError(f"no <scene>_pairs.csv in {root} (made by Invisible Stitch's hypersim_pair_builder)")
    rows = []
    for pair_list in lists:
        with open(pair_list, newline="") as handle:
            rows += list(csv.DictReader(handle))
    return rows


# --- meshes (the bathroom) ---------------------------------------------------------------------------------------


def camera_looking(
    position: tuple[float, float, float] | np.ndarray,
    forward: tuple[float, float, float] | np.ndarray,
    up: tuple[float, float, float] | np.ndarray,
    hfov_deg: float,
    size: tuple[int, int],
) -> Camera:
    """A level-horizon pinhole camera at ``position`` looking along ``forward`` with world ``up`` (any world frame).

    Args:
        position: camera centre in world coordinates.
        forward: viewing direction (need not be unit).
        up: the world's up direction (the camera's y axis points against it: OpenCV y is down).
        hfov_deg: horizontal field of view.
        size: ``(width, height)``.

    Returns:
        The camera (float32).
    """
    width, height = size
    z = np.asarray(forward, dtype=np.float64)
    z = z / np.linalg.norm(z)
    up = np.asarray(up, dtype=np.float64)
    y = -(up - np.dot(up, z) * z)
    if np.linalg.norm(y) < 1e-9:
        raise ValueError("forward is parallel to up: the camera's roll is undefined")
    y = y / np.linalg.norm(y)
    x = np.cross(y, z)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, y, z], axis=1)
    c2w[:3, 3] = position
    focal = width / 2 / math.tan(math.radians(hfov_deg) / 2)
    K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=torch.float32)
    return Camera(K, torch.linalg.inv(torch.from_numpy(c2w)).float(), height, width)


class MeshScene:
    """A textured triangle mesh that renders exact albedo and z-depth from any pinhole camera.

    Loads a glTF/GLB with trimesh and ray-casts it with embree (``embreex``; trimesh falls back to its far slower
    numpy engine without it). Colour is the base-colour texture at the hit (nearest texel; UVs wrap) or the
    material's base colour, sRGB-encoded; no lighting. Rays that hit nothing (the bathroom's open window) get
    depth 0 and colour 0.

    Args:
        path: the mesh file.
        skip: names of geometries to leave out (e.g. the bathroom's glass bulbs, ``"BulbGlass"``, to see through).
        world_from_mesh: 4x4 taking mesh coordinates to the world frame the cameras live in (None = the same);
            :data:`Y_UP_TO_PROJECT` for a +Y-up glTF in the project's frame.
    """

    def __init__(self, path: str | Path, skip: tuple[str, ...] = (), world_from_mesh: np.ndarray | None = None) -> None:
        self.world_from_mesh = np.eye(4) if world_from_mesh is None else np.asarray(world_from_mesh, dtype=np.float64)
        try:
            import trimesh
        except ImportError as err:
            raise RuntimeError(
                "ray-casting meshes needs trimesh and embreex: pip install -r requirements-dev.txt"
            ) from err

        loaded = trimesh.load(str(path))
        scene = loaded if isinstance(loaded, trimesh.Scene) else trimesh.Scene(loaded)
        # dump() applies the scene graph: one Trimesh per geometry, in world coordinates
        geometries = [g for g in scene.dump() if g.metadata.get("name", "") not in skip]
        if not geometries:
            raise ValueError(f"{path}: no triangle geometry")
        vertex_offsets = np.cumsum([0] + [len(g.vertices) for g in geometries])
        self.face_offsets = np.cumsum([0] + [len(g.faces) for g in geometries])
        self.mesh = trimesh.Trimesh(
            np.vstack([g.vertices for g in geometries]),
            np.vstack([g.faces + o for g, o in zip(geometries, vertex_offsets)]),
            process=False,
        )
        self.geometries = geometries
        self.textures: list[np.ndarray | None] = []
        self.base_colors: list[np.ndarray] = []
        for geometry in geometries:
            material = getattr(geometry.visual, "material", None)
            texture = getattr(material, "baseColorTexture", None)
            self.textures.append(np.asarray(texture.convert("RGB"), dtype=np.float32) / 255 if texture else None)
            factor = getattr(material, "baseColorFactor", None)
            linear = np.asarray(factor[:3], dtype=np.float64) / 255 if factor is not None else np.full(3, 0.8)
            self.base_colors.append(linear ** (1 / 2.2))  # linear reflectance -> about sRGB

    def render(self, camera: Camera, color: bool = True) -> tuple[Tensor | None, Tensor]:  # -> [H, W, 3], [H, W]
        """Albedo (sRGB, [0, 1]) and z-depth (0 where the ray escapes) of a camera."""
        import trimesh

        height, width = camera.height, camera.width
        c2w = np.linalg.solve(self.world_from_mesh, camera.cam_to_world.double().numpy())  # camera to mesh
        K = camera.K.double().numpy()
        u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        cam_dirs = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
        directions = cam_dirs @ c2w[:3, :3].T
        origins = np.broadcast_to(c2w[:3, 3], directions.shape)
        locations, ray_index, face_index = self.mesh.ray.intersects_location(origins, directions, multiple_hits=False)
        depth = np.zeros(height * width)
        depth[ray_index] = (locations - c2w[:3, 3]) @ c2w[:3, 2]
        depth_t = torch.from_numpy(depth.reshape(height, width)).float()
        if not color:
            return None, depth_t
        rgb = np.zeros((height * width, 3))
        geometry_index = np.searchsorted(self.face_offsets, face_index, side="right") - 1
        for i, geometry in enumerate(self.geometries):
            hit = geometry_index == i
            if not hit.any():
                continue
            texture = self.textures[i]
            uv_attr = getattr(geometry.visual, "uv", None)
            if texture is None or uv_attr is None:
                rgb[ray_index[hit]] = self.base_colors[i]
                continue
            faces = face_index[hit] - self.face_offsets[i]
            bary = trimesh.triangles.points_to_barycentric(self.mesh.triangles[face_index[hit]], locations[hit])
            uv = np.einsum("nk,nkj->nj", bary, uv_attr[geometry.faces[faces]]) % 1.0  # UVs repeat; v points up
            rows = ((1 - uv[:, 1]) * (texture.shape[0] - 1)).astype(int)
            cols = (uv[:, 0] * (texture.shape[1] - 1)).astype(int)
            rgb[ray_index[hit]] = texture[rows, cols]
        return torch.from_numpy(rgb.reshape(height, width, 3)).float().clamp(0, 1), depth_t


def load_bathroom(root: Path | None = None) -> tuple[MeshScene, dict] | None:
    """The bathroom mesh and its ``camera.json``, or None when ``../shared/data`` (or the bathroom) is absent."""
    root = root if root is not None else shared_data_root()
    if root is None or not (root / "bathroom" / "bathroom.glb").is_file():
        return None
    mesh = MeshScene(root / "bathroom" / "bathroom.glb", world_from_mesh=Y_UP_TO_PROJECT)
    return mesh, json.loads((root / "bathroom" / "camera.json").read_text())


def bathroom_reference_camera(meta: dict, size: tuple[int, int]) -> Camera:
    """The bathroom's reference camera (``camera.json``: ``c2w_opencv``, horizontal FoV) at ``size``, in the
    project's frame (:data:`Y_UP_TO_PROJECT`)."""
    width, height = size
    focal = width / 2 / math.tan(math.radians(meta["fov_x_deg"]) / 2)
    K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=torch.float32)
    c2w = torch.from_numpy(Y_UP_TO_PROJECT) @ torch.tensor(meta["c2w_opencv"], dtype=torch.float64)
    return Camera(K, torch.linalg.inv(c2w).float(), height, width)
