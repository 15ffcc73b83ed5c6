"""Evaluating virtual-object occlusion on data the learned model never saw: the CC0 bathroom mesh.

* :func:`load_bathroom`: the bathroom of ``../shared/data/bathroom`` as a ray-castable scene (embree through
  embreex), moved into our world frame (the reference camera of ``camera.json`` is view 0, OpenCV axes, up is -y);
  :meth:`BathroomScene.render` gives albedo x Lambert shading and the exact z-depth for any camera. None when
  the data is absent.
* :func:`degrade_depth`: a "generated-like" depth map from an exact one (blurred, misaligned edges, a small scale
  error, low-frequency noise, a new draw per view), used both to train the learned model (family ``blur``) and to
  evaluate it (``blur`` with fixed settings, and ``fatten``: foreground-fattened edges, a family never trained on).
* :func:`score_view`, :func:`flicker_counts`: occlusion IoU, accuracy in a band around the true occlusion edges,
  and the fraction of band pixels whose decision flips between consecutive frames while the truth does not.

The benchmark itself is ``scripts/bench_occlusion.py``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.cameras import Camera, intrinsics
from core.masks import dilate
from pipeline.objects import ObjectSpec

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
"""``../shared/data`` from the project root (read-only, never copied into the repository)."""

BATHROOM_FOV_X_DEG = 55.0
"""The reference camera's horizontal field of view (``camera.json``)."""
SKIPPED_MATERIALS = ("BulbGlass",)
"""Glass shells around the bulbs (alpha 0.1): a real camera sees through them."""
SHADE_AMBIENT = 0.55
"""Share of light independent of orientation in the albedo render (as in :mod:`evaluation.worlds`)."""
SHADE_LIGHT = (0.3, -0.9, -0.3)
"""Direction towards the light in the bathroom's world frame (ours: up is -y), roughly the ceiling bulbs."""
EDGE_BAND_PX = 4
"""Half-width of the band around true occlusion edges where edge accuracy and flicker are measured."""

DegradeMode = Literal["blur", "fatten"]


# --------------------------------------------------------------------------------------------------------------
# Degraded ("generated-like") depth
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DegradeConfig:
    """How exact depth is made to look like our generated depth."""

    factors: tuple[int, ...] = (2, 3, 4, 6)
    """``blur``: depth is averaged over k x k cells (one k drawn per view) and upsampled bilinearly, so edges
    become ramps up to k pixels wide and shift by up to k / 2 pixels, as in depth predicted at a lower
    resolution than the image (Depth Anything runs on 14-px patches)."""
    sigma_px: tuple[float, float] = (0.3, 1.5)
    """Range of the extra Gaussian blur (pixels) drawn per view."""
    fatten_px: tuple[int, int] = (2, 4)
    """``fatten``: range of the foreground dilation (pixels): near surfaces spill over their edges, the typical
    error of monocular depth networks at occlusion boundaries."""
    scale_error: float = 0.05
    """Global scale drawn in [1 - e, 1 + e] per view (the metric scale of each generated view wobbles)."""
    noise: float = 0.03
    """Amplitude of smooth multiplicative noise (a 4 x 3 random grid, bicubically upsampled)."""


def degrade_depth(
    depth: Tensor,  # [H, W] exact z-depth, 0 = unknown
    rng: np.random.Generator,
    mode: DegradeMode = "blur",
    config: DegradeConfig = DegradeConfig(),
) -> Tensor:  # [H, W] degraded z-depth, 0 where the input was unknown
    """A generated-like version of an exact depth map (one random draw of every error per call).

    Example:
        >>> d = torch.ones(32, 32); d[:, 16:] = 2.0
        >>> out = degrade_depth(d, np.random.default_rng(0))
        >>> bool((out[:, 14:18] > 1.1).any() and (out[:, 14:18] < 1.9).any())  # the step became a ramp
        True
    """
    height, width = depth.shape
    known = depth > 0
    far = depth[known].max() if bool(known.any()) else torch.tensor(1.0)
    filled = torch.where(known, depth, far).float()[None, None]  # [1, 1, H, W]
    inverse = 1.0 / filled  # blur in inverse depth: far surfaces do not swamp near ones
    if mode == "blur":
        k = int(rng.choice(config.factors))
        small = F.interpolate(inverse, size=(max(height // k, 1), max(width // k, 1)), mode="area")
        inverse = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
    elif mode == "fatten":
        r = int(rng.integers(config.fatten_px[0], config.fatten_px[1] + 1))
        inverse = F.max_pool2d(inverse, 2 * r + 1, stride=1, padding=r)  # nearest surface wins around edges
    else:
        raise ValueError(f"mode must be 'blur' or 'fatten', got {mode!r}")
    sigma = float(rng.uniform(*config.sigma_px))
    inverse = _gaussian_blur(inverse, sigma)
    scale = 1.0 + float(rng.uniform(-config.scale_error, config.scale_error))
    grid = torch.from_numpy(rng.uniform(-1, 1, size=(1, 1, 3, 4))).float()
    noise = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=True)
    out = scale * (1.0 + config.noise * noise) / inverse
    return torch.where(known, out[0, 0], torch.zeros_like(out[0, 0])).to(depth.dtype)


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:  # [1, 1, H, W]
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))


# --------------------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------------------


def occlusion_edge_band(true_occluded: Tensor, object_mask: Tensor, px: int = EDGE_BAND_PX) -> Tensor:  # [H, W] bool
    """Object pixels within ``px`` of a true occlusion edge (where the object goes from visible to hidden)."""
    hidden = true_occluded & object_mask
    visible = ~true_occluded & object_mask
    edge = dilate(hidden, 1) & visible | dilate(visible, 1) & hidden
    return dilate(edge, px) & object_mask


@dataclass
class OcclusionCounts:
    """Pixel counts summed over views (micro-averaged scores)."""

    intersection: int = 0
    """Object pixels predicted hidden and truly hidden."""
    union: int = 0
    """Object pixels predicted hidden or truly hidden."""
    band_correct: int = 0
    """Correct decisions in the edge band."""
    band_total: int = 0
    """Pixels in the edge band."""
    correct: int = 0
    """Correct decisions over the whole object."""
    total: int = 0
    """Object pixels."""
    flips: int = 0
    """Band pixels whose decision changed between consecutive frames while the truth did not."""
    flip_total: int = 0
    """Band pixels compared between consecutive frames (truth unchanged)."""

    def add(self, other: OcclusionCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def iou(self) -> float:
        return self.intersection / self.union if self.union else float("nan")

    @property
    def band_accuracy(self) -> float:
        return self.band_correct / self.band_total if self.band_total else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    @property
    def flicker(self) -> float:
        return self.flips / self.flip_total if self.flip_total else float("nan")


def score_view(predicted_occluded: Tensor, true_occluded: Tensor, object_mask: Tensor) -> OcclusionCounts:
    """Counts for one view; all inputs [H, W] bool, scored only where ``object_mask``."""
    band = occlusion_edge_band(true_occluded, object_mask)
    right = (predicted_occluded == true_occluded) & object_mask
    return OcclusionCounts(
        intersection=int((predicted_occluded & true_occluded & object_mask).sum()),
        union=int(((predicted_occluded | true_occluded) & object_mask).sum()),
        band_correct=int((right & band).sum()),
        band_total=int(band.sum()),
        correct=int(right.sum()),
        total=int(object_mask.sum()),
    )


def flicker_counts(
    predicted: list[Tensor],  # each [H, W] bool, predicted hidden, one per consecutive frame
    truth: list[Tensor],  # each [H, W] bool, truly hidden
    masks: list[Tensor],  # each [H, W] bool, object pixels
) -> OcclusionCounts:
    """Spurious flips along a camera path: band pixels whose decision changes while the truth does not."""
    counts = OcclusionCounts()
    for t in range(len(predicted) - 1):
        band = occlusion_edge_band(truth[t], masks[t]) & occlusion_edge_band(truth[t + 1], masks[t + 1])
        steady = band & (truth[t] == truth[t + 1])
        counts.flips += int((steady & (predicted[t] != predicted[t + 1])).sum())
        counts.flip_total += int(steady.sum())
    return counts


# --------------------------------------------------------------------------------------------------------------
# The bathroom
# --------------------------------------------------------------------------------------------------------------


@dataclass
class BathroomScene:
    """The bathroom mesh in our world frame, ready to ray-cast (albedo x Lambert shading, exact z-depth)."""

    vertices: np.ndarray  # [V, 3] float64, our world (view 0 = the reference camera, OpenCV axes)
    faces: np.ndarray  # [F, 3] int64
    face_material: np.ndarray  # [F] int64 index into ``materials``
    corner_uv: np.ndarray  # [F, 3, 2] float32 texture coordinates of each triangle's corners (0 if untextured)
    materials: list[tuple[np.ndarray | None, np.ndarray]]  # (texture [h, w, 3] float32 sRGB or None, colour [3])
    reference_fov_x_deg: float = BATHROOM_FOV_X_DEG
    _scene: object = field(default=None, repr=False)

    def __post_init__(self):
        from embreex import rtcore_scene  # noqa: PLC0415
        from embreex.mesh_construction import TriangleMesh  # noqa: PLC0415

        self._origin = self.vertices.min(axis=0)
        self._scene = rtcore_scene.EmbreeScene()
        TriangleMesh(
            scene=self._scene,
            vertices=(self.vertices - self._origin).astype(np.float32),
            indices=self.faces.astype(np.int32),
        )
        corners = self.vertices[self.faces]
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        self._normals = normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-20)

    def camera(self, size: tuple[int, int], world_to_cam: Tensor | None = None) -> Camera:
        """A camera with the reference field of view; ``world_to_cam`` None = the reference camera (view 0)."""
        width, height = size
        w2c = torch.eye(4) if world_to_cam is None else world_to_cam.float()
        return Camera(intrinsics(height, width, self.reference_fov_x_deg), w2c, height, width)

    def render(self, camera: Camera) -> tuple[Tensor, Tensor]:  # -> rgb [H, W, 3], depth [H, W] (0 = miss)
        """Shaded albedo and exact z-depth through every pixel centre (the open window misses: depth 0)."""
        height, width = camera.height, camera.width
        K = camera.K.double().numpy()
        c2w = camera.cam_to_world.double().numpy()
        v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
        cam_dirs = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
        directions = (cam_dirs @ c2w[:3, :3].T).astype(np.float32)  # z = 1 in the camera: t is the z-depth
        origins = np.ascontiguousarray(
            np.broadcast_to((c2w[:3, 3] - self._origin).astype(np.float32), directions.shape)
        )
        out = self._scene.run(origins, directions, output=1)
        face = out["primID"].astype(np.int64)
        hit = face >= 0
        depth = np.where(hit, out["tfar"], 0.0).astype(np.float32)
        rgb = np.zeros((len(face), 3), np.float32)
        f = face[hit]
        weights = np.stack([1 - out["u"][hit] - out["v"][hit], out["u"][hit], out["v"][hit]], -1)
        uv = np.einsum("nk,nkc->nc", weights, self.corner_uv[f]) % 1.0
        albedo = np.zeros((len(f), 3), np.float32)
        for index, (texture, color) in enumerate(self.materials):
            sel = self.face_material[f] == index
            if not sel.any():
                continue
            if texture is None:
                albedo[sel] = color
            else:
                rows = ((1 - uv[sel, 1]) * (texture.shape[0] - 1)).astype(np.int64)
                cols = (uv[sel, 0] * (texture.shape[1] - 1)).astype(np.int64)
                albedo[sel] = texture[rows, cols] * color
        light = np.asarray(SHADE_LIGHT) / np.linalg.norm(SHADE_LIGHT)
        lambert = np.abs(self._normals[f] @ light)
        rgb[hit] = albedo * (SHADE_AMBIENT + (1 - SHADE_AMBIENT) * lambert)[:, None]
        return torch.from_numpy(rgb.reshape(height, width, 3)).clamp(0, 1), torch.from_numpy(
            depth.reshape(height, width)
        )


def load_bathroom(data_dir: str | Path | None = None) -> BathroomScene | None:
    """The bathroom of ``<data_dir>/bathroom`` in our world frame, or None when the files are absent.

    The GLB is metres, right-handed, +Y up. ``camera.json``'s ``c2w_opencv`` maps the reference camera's OpenCV
    axes into that frame; its inverse maps every vertex into the reference camera's frame, which is our world
    (view 0 at the origin looking along +z, up is -y).
    """
    folder = Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR) / "bathroom"
    glb, camera_file = folder / "bathroom.glb", folder / "camera.json"
    if not (glb.is_file() and camera_file.is_file()):
        return None
    import trimesh  # noqa: PLC0415

    c2w = np.asarray(json.loads(camera_file.read_text())["c2w_opencv"], dtype=np.float64)
    w2c = np.linalg.inv(c2w)
    scene = trimesh.load(str(glb))
    vertices, faces, face_material, corner_uv, materials = [], [], [], [], []
    offset = 0
    for name, geometry in scene.geometry.items():
        if name in SKIPPED_MATERIALS:
            continue
        material = geometry.visual.material
        texture = getattr(material, "baseColorTexture", None)
        factor = np.asarray(material.baseColorFactor[:3], dtype=np.float32) / 255.0
        if texture is None:
            materials.append((None, factor ** (1 / 2.2)))  # linear reflectance -> ~sRGB
        else:
            materials.append((np.asarray(texture.convert("RGB"), dtype=np.float32) / 255.0, factor))
        v = np.asarray(geometry.vertices, dtype=np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
        f = np.asarray(geometry.faces, dtype=np.int64)
        uv = getattr(geometry.visual, "uv", None)
        corner_uv.append(np.zeros((len(f), 3, 2), np.float32) if uv is None else np.asarray(uv, np.float32)[f])
        vertices.append(v)
        faces.append(f + offset)
        face_material.append(np.full(len(f), len(materials) - 1))
        offset += len(v)
    return BathroomScene(
        np.concatenate(vertices),
        np.concatenate(faces),
        np.concatenate(face_material),
        np.concatenate(corner_uv),
        materials,
    )


# --------------------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BathroomCase:
    """A virtual object placed in the bathroom through a pixel of the reference view and a depth along its ray."""

    name: str
    """Short label for tables."""
    kind: str
    """Primitive kind (box, sphere, cylinder)."""
    row: int
    """Pixel row of the object's centre in the 512 x 384 reference view."""
    column: int
    """Pixel column of the object's centre."""
    depth: float
    """z-depth of the object's centre in metres (the fixture it relates to is at the depth noted in ``name``)."""
    size: tuple[float, float, float]
    """Object size in metres (scale of the unit primitive)."""
    yaw_deg: float = 0.0
    """Turn about the vertical."""
    color: tuple[float, float, float] = (0.85, 0.25, 0.15)
    """Object colour."""


BATHROOM_CASES = (
    BathroomCase("behind the bathtub", "sphere", 266, 112, 2.2, (0.42, 0.42, 0.42)),
    BathroomCase("behind the bathtub's end", "box", 300, 178, 2.0, (0.3, 0.5, 0.3), 25.0, (0.2, 0.5, 0.85)),
    BathroomCase("in front of the bathtub", "box", 318, 120, 0.95, (0.18, 0.18, 0.18), 40.0, (0.25, 0.7, 0.3)),
    BathroomCase("in front of the vanity", "sphere", 300, 430, 1.45, (0.3, 0.3, 0.3), 0.0, (0.9, 0.8, 0.2)),
    BathroomCase("through the vanity front", "box", 300, 330, 2.2, (0.45, 0.3, 0.45), 30.0, (0.6, 0.3, 0.8)),
    BathroomCase("behind the vanity's corner", "cylinder", 250, 205, 2.75, (0.25, 0.5, 0.25), 0.0, (0.2, 0.6, 0.6)),
)
"""Objects behind, in front of and through the bathtub and the vanity (depths read off the reference view's
exact depth: bathtub rim ~1.2-1.6 m, the wall behind it ~2.6-3.0 m, vanity front ~1.7-2.4 m)."""

BENCH_SIZE = (512, 384)
"""(width, height) of the benchmark views: the project's default working size."""
PATH_FRAMES = 8
"""Frames of the camera path used for temporal stability."""
PATH_SHIFT_M = 0.01
"""The path slides the camera this far sideways (metres, total) ..."""
PATH_YAW_DEG = 0.3
"""... while turning by this much: edges move by a fraction of a pixel per frame (a slow fly-through), so a
decision that flips at a pixel whose truth stays the same is flicker, not motion. Each frame gets a new draw of
the depth errors, as each generated view does."""


def case_spec(case: BathroomCase, camera: Camera) -> ObjectSpec:
    """The case's object in the world: centred on the ray through its pixel, at its depth."""
    K = camera.K.double()
    z = case.depth
    cam = torch.tensor(
        [(case.column + 0.5 - K[0, 2]) / K[0, 0] * z, (case.row + 0.5 - K[1, 2]) / K[1, 1] * z, z], dtype=torch.float64
    )
    c2w = camera.cam_to_world.double()
    center = c2w[:3, :3] @ cam + c2w[:3, 3]
    return ObjectSpec(case.kind, tuple(float(c) for c in center), (case.yaw_deg, 0.0, 0.0), case.size, case.color)


def path_cameras(scene: BathroomScene, frames: int = PATH_FRAMES, size: tuple[int, int] = BENCH_SIZE) -> list[Camera]:
    """A short sideways slide with a slight turn, centred on the reference camera."""
    from core.cameras import pose, rotation_yaw_pitch  # noqa: PLC0415

    cameras = []
    for i in range(frames):
        t = i / max(frames - 1, 1) - 0.5
        position = torch.tensor([PATH_SHIFT_M * t, 0.0, 0.0])
        cameras.append(scene.camera(size, pose(rotation_yaw_pitch(PATH_YAW_DEG * t, 0.0), position)))
    return cameras


@dataclass
class MethodResult:
    """Scores and timing of one occlusion method on one kind of scene depth."""

    counts: OcclusionCounts = field(default_factory=OcclusionCounts)
    """Pixel counts over every case and frame (flicker over consecutive frames of each case)."""
    seconds: list[float] = field(default_factory=list)
    """Wall time of the occlusion decision per view (object rendering excluded)."""
    cpu_seconds: list[float] = field(default_factory=list)
    """CPU time of this process for the same calls (steadier than wall time on a shared machine)."""


def run_bathroom_benchmark(
    scene: BathroomScene,
    learned,  # models.occlusion.LearnedOcclusion
    modes: tuple[str, ...] = ("blur", "fatten"),
    frames: int = PATH_FRAMES,
    seed: int = 0,
    log=print,
) -> tuple[dict[tuple[str, str], MethodResult], dict]:
    """Score the hard depth test and the learned model on every case along the camera path.

    Returns:
        ``{(method, mode): MethodResult}`` for method ``hard`` / ``learned`` and each degradation mode, and the
        first frame's images of the first case (for the picture): ``rgb``, ``depth``, per-mode degraded depth,
        the object render, and each method's visibility.
    """
    import time  # noqa: PLC0415

    from pipeline.objects import HardDepthOcclusion, build_object, render_object  # noqa: PLC0415

    hard = HardDepthOcclusion()
    cameras = path_cameras(scene, frames)
    objects = [build_object(case_spec(case, cameras[frames // 2])) for case in BATHROOM_CASES]
    results = {(m, mode): MethodResult() for m in ("hard", "learned") for mode in modes}
    sequences = {key: [[] for _ in BATHROOM_CASES] for key in results}
    truths: list[list[Tensor]] = [[] for _ in BATHROOM_CASES]
    masks: list[list[Tensor]] = [[] for _ in BATHROOM_CASES]
    picture: dict = {}
    for f, camera in enumerate(cameras):
        rgb, depth = scene.render(camera)
        degraded = {
            mode: degrade_depth(depth, np.random.default_rng([seed, f, i]), mode) for i, mode in enumerate(modes)
        }
        for c, obj in enumerate(objects):
            render = render_object(obj, camera)
            mask = render.coverage > 0
            truth = mask & (depth > 0) & (depth < render.depth)
            truths[c].append(truth)
            masks[c].append(mask)
            for mode in modes:
                for method, occluder in (("hard", hard), ("learned", learned)):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    visibility = occluder.visibility(rgb, degraded[mode], render)
                    result = results[(method, mode)]
                    result.seconds.append(time.perf_counter() - start)
                    result.cpu_seconds.append(time.process_time() - start_cpu)
                    predicted = mask & (visibility < 0.5)
                    result.counts.add(score_view(predicted, truth, mask))
                    sequences[(method, mode)][c].append(predicted)
                    if f == frames // 2 and c == 0:
                        picture.setdefault("visibility", {})[(method, mode)] = visibility
            if f == frames // 2 and c == 0:
                picture.update(rgb=rgb, depth=depth, degraded=degraded, render=render, truth=truth)
        log(f"  frame {f + 1}/{frames} done")
    for key, result in results.items():
        for c in range(len(BATHROOM_CASES)):
            result.counts.add(flicker_counts(sequences[key][c], truths[c], masks[c]))
    return results, picture
