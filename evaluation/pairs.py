"""The view-pair protocol: what a depth completer sees in the grow loop, with the truth beside it.

A :class:`ViewPair` is two views A and B of a scene with true depth. A's true geometry is lifted to points and
rendered into B with the project's point renderer (exactly as the grow loop renders the fused cloud), so B gets
sparse *known depth* where A sees the scene and nothing elsewhere: the region an outpainter fills and a completer
must extrapolate. The target is B's true depth.

Sources (``ViewPair.source`` names each pair):

* :func:`procedural_pairs` — randomised procedural worlds (:mod:`evaluation.random_worlds`: rooms, streets,
  landscapes, object clutter; random sizes, layouts, textures, fields of view), with the camera pairs outpainting
  produces: a yaw of 15-40° uncovering one side (``yaw``), a pitch ring above or below (``pitch``), and random
  shapes cut out of a nearly shared view (``shapes``). ~30-50 ms per 128x96 pair on one core.
* :func:`bathroom_pairs` — the CC0 bathroom mesh: pairs at the reference camera and around the room centre.
* :func:`icl_pairs` — ICL-NUIM living-room frames with their real poses (and a variant where A keeps only half of
  its columns, so B has a wide extrapolated side).
* :func:`tum_pairs` — the real TUM office frame: one view, synthetic outpainting masks on its own depth.

The real sets read ``../shared/data``; when it is absent their iterators are empty.

**Hold-out rule.** The bathroom, ICL-NUIM and TUM pairs are for evaluation only: never train on them
(:func:`is_held_out` tells a source apart). Procedural worlds are held out by seed: the benchmark uses world
seeds :data:`BENCHMARK_SEEDS` (0-99); training must use seeds ``>= TRAINING_SEED_MIN`` (1000), which
:func:`training_pairs` enforces. World ``k`` of ``procedural_pairs(seed, ...)`` has seed ``seed + k``.

Example:
    >>> pair = next(procedural_pairs(seed=1000, count=1, size=(64, 48)))
    >>> tuple(pair.image.shape), bool((pair.known_depth[~pair.known_mask] == 0).all())
    ((48, 64, 3), True)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from core.cameras import Camera, intrinsics, pose, rotation_yaw_pitch
from core.components import PointRenderer
from core.masks import SPARSE_DEPTH_ERODE_PX, erode
from evaluation.datasets import (
    BATHROOM_CENTRE,
    RGBDView,
    bathroom_reference_camera,
    camera_looking,
    load_bathroom,
    load_rgbd_folder,
    resize_view,
    shared_data_root,
    to_project_axes,
)
from evaluation.random_worlds import PROCEDURAL_KINDS, ProceduralWorld, random_world, render_view
from pipeline.config import GrowConfig
from pipeline.fusion import lift_pixels
from renderers import get_point_renderer

DEFAULT_SIZE = (128, 96)
"""(width, height) of generated pairs: the benchmark's working size."""

BENCHMARK_SEEDS = range(0, 100)
"""Procedural world seeds reserved for the benchmark: never train on them."""

TRAINING_SEED_MIN = 1000
"""Training draws procedural worlds with seeds from here on (disjoint from :data:`BENCHMARK_SEEDS`)."""

HELD_OUT_PREFIXES = ("bathroom/", "icl/", "tum/")
"""Sources that are evaluation-only data."""

MASK_KINDS = ("yaw", "pitch", "shapes")

YAW_STEP_DEG = (15.0, 40.0)
"""A new view of a ring is turned 15-40° from a known one (the 360 path steps 25° and ~37°)."""

PITCH_STEP_DEG = (25.0, 45.0)
"""Rings above and below the horizon are this far from the level ring (the sphere path's step is ~24°)."""

HFOV_DEG = (45.0, 70.0)
"""Random horizontal field of view of a procedural pair (the project's default is 53°)."""

MAX_BASELINE = 0.25
"""Up to 25 cm between A's and B's centres (half the pairs): paths that move, and parallax at occlusions."""

MIN_KNOWN_FRACTION = 0.10
MIN_UNKNOWN_FRACTION = 0.03
"""A pair is kept only when B has at least 10 % known pixels and 3 % unknown pixels with ground truth; otherwise
its cameras are drawn again (up to :data:`CAMERA_TRIES` times)."""

CAMERA_TRIES = 6

PAIRS_PER_WORLD = 4
"""Pairs drawn from each procedural world before the next one is built (world building is cheap but not free)."""

FOOTPRINT_PX = GrowConfig().point_footprint_px
"""Lifted points get the grow loop's footprint, so the known depth is what the loop would render."""


@dataclass
class ViewPair:
    """Two views of one scene: what B's completer is given, and the truth.

    Attributes:
        image: view B's colour (the outpainted image in the loop; here the true image).
        known_depth: z-depth of A's true geometry rendered into B with the point renderer, 0 = unknown.
        known_mask: True where ``known_depth`` is valid (the render, eroded like the loop's sparse depth).
        target_depth: B's true z-depth, 0 = no ground truth (sky, sensor holes, missed rays).
        camera: B's camera.
        camera_a: A's camera.
        depth_a: A's true z-depth (0 = unknown), for a scale-consistency loss between the views.
        source: where the pair comes from, e.g. ``procedural/room/7/yaw``, ``bathroom/ref/yaw+20``, ``icl/0-4``.
    """

    image: Tensor  # [H, W, 3] float32 in [0, 1]
    known_depth: Tensor  # [H, W] float32
    known_mask: Tensor  # [H, W] bool
    target_depth: Tensor  # [H, W] float32
    camera: Camera
    camera_a: Camera
    depth_a: Tensor  # [H, W] float32
    source: str

    @property
    def extrapolated(self) -> Tensor:  # [H, W] bool
        """Pixels the completer must extrapolate and that have ground truth."""
        return ~self.known_mask & (self.target_depth > 0)


def is_held_out(source: str) -> bool:
    """True for evaluation-only sources (bathroom, ICL-NUIM, TUM) and benchmark procedural seeds."""
    if source.startswith(HELD_OUT_PREFIXES):
        return True
    parts = source.split("/")
    return parts[0] == "procedural" and len(parts) > 2 and parts[2].isdigit() and int(parts[2]) < TRAINING_SEED_MIN


def render_known(
    depth_a: Tensor,  # [H, W] true z-depth of A, 0 = unknown
    camera_a: Camera,
    camera_b: Camera,
    renderer: PointRenderer | None = None,
    erode_px: int = SPARSE_DEPTH_ERODE_PX,
) -> tuple[Tensor, Tensor, Tensor]:  # -> [H, W], [H, W] bool, [H, W] bool
    """A's geometry rendered into B as the grow loop renders its cloud.

    Args:
        depth_a: A's depth.
        camera_a: A's camera.
        camera_b: B's camera.
        renderer: the point renderer (the torch z-buffer by default).
        erode_px: the known region shrinks by this many pixels, as the loop's sparse depth does.

    Returns:
        ``(known_depth, known_mask, seen)``: depth 0 outside ``known_mask``; ``seen`` is the render's coverage
        before erosion (the pixels A sees).
    """
    renderer = renderer if renderer is not None else get_point_renderer("torch")
    valid = depth_a > 0
    colors = torch.zeros(*depth_a.shape, 3)
    cloud = lift_pixels(colors, depth_a, valid, camera_a, 0, FOOTPRINT_PX)
    seen = renderer.render(cloud.points, cloud.colors, camera_b, cloud.radii)
    covered = seen.known_mask & (seen.depth > 0)
    known = erode(covered, erode_px) if erode_px else covered
    return torch.where(known, seen.depth, torch.zeros(())), known, covered


def random_shapes(rng: np.random.Generator, height: int, width: int) -> Tensor:  # -> [H, W] bool
    """1-4 random ellipses, rectangles and thick strokes covering roughly 10-40 % of the image (True = cut)."""
    v, u = np.mgrid[0:height, 0:width] + 0.5
    out = np.zeros((height, width), dtype=bool)
    scale = min(height, width)
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        kind = rng.choice(["ellipse", "rectangle", "stroke"])
        if kind == "ellipse":
            a, b, angle = rng.uniform(0.1, 0.35) * scale, rng.uniform(0.1, 0.35) * scale, rng.uniform(0, math.pi)
            du, dv = u - cx, v - cy
            x = du * math.cos(angle) + dv * math.sin(angle)
            y = -du * math.sin(angle) + dv * math.cos(angle)
            out |= (x / a) ** 2 + (y / b) ** 2 <= 1
        elif kind == "rectangle":
            half_w, half_h = rng.uniform(0.1, 0.3) * width, rng.uniform(0.1, 0.3) * height
            out |= (np.abs(u - cx) <= half_w) & (np.abs(v - cy) <= half_h)
        else:
            angle, length, thick = (
                rng.uniform(0, math.pi),
                rng.uniform(0.3, 0.8) * scale,
                rng.uniform(0.04, 0.1) * scale,
            )
            du, dv = u - cx, v - cy
            along = du * math.cos(angle) + dv * math.sin(angle)
            across = -du * math.sin(angle) + dv * math.cos(angle)
            out |= (np.abs(along) <= length / 2) & (np.abs(across) <= thick)
    return torch.from_numpy(out)


def side_cut(height: int, width: int, fraction: float, side: str) -> Tensor:  # -> [H, W] bool
    """A band along one image side (``left``, ``right``, ``top``, ``bottom``) of the given fraction (True = cut)."""
    out = torch.zeros(height, width, dtype=torch.bool)
    cols, rows = max(1, round(fraction * width)), max(1, round(fraction * height))
    if side == "left":
        out[:, :cols] = True
    elif side == "right":
        out[:, width - cols :] = True
    elif side == "top":
        out[:rows] = True
    elif side == "bottom":
        out[height - rows :] = True
    else:
        raise ValueError(f"side must be left, right, top or bottom, got {side!r}")
    return out


def _enough(known: Tensor, target: Tensor) -> bool:
    total = known.numel()
    unknown = int((~known & (target > 0)).sum())
    return int(known.sum()) >= MIN_KNOWN_FRACTION * total and unknown >= MIN_UNKNOWN_FRACTION * total


# --- procedural ----------------------------------------------------------------------------------------------------


def _procedural_cameras(
    scene: ProceduralWorld, rng: np.random.Generator, mask: str, size: tuple[int, int]
) -> tuple[Camera, Camera]:
    width, height = size
    K = intrinsics(height, width, float(rng.uniform(*HFOV_DEG)))
    angle, radius = rng.uniform(0, 2 * math.pi), scene.camera_radius * math.sqrt(rng.random())
    centre_a = np.array([radius * math.sin(angle), 0.0, radius * math.cos(angle)])
    centre_b = centre_a.copy()
    if rng.random() < 0.5:
        direction = rng.normal(size=3)
        centre_b += direction / np.linalg.norm(direction) * rng.uniform(0, MAX_BASELINE)
    yaw_a = rng.uniform(0, 360)
    side = 1 if rng.random() < 0.5 else -1
    if mask == "yaw":
        pitch_a = rng.uniform(-20, 15)
        yaw_b, pitch_b = yaw_a + side * rng.uniform(*YAW_STEP_DEG), pitch_a + rng.uniform(-5, 5)
    elif mask == "pitch":
        pitch_a = rng.uniform(-10, 10)
        down = rng.random() < 0.6  # the floor ring matters most
        pitch_b = pitch_a + (-1 if down else 1) * rng.uniform(*PITCH_STEP_DEG)
        yaw_b = yaw_a + rng.uniform(-15, 15)
    else:
        pitch_a = rng.uniform(-25, 15)
        yaw_b, pitch_b = yaw_a + rng.uniform(-8, 8), pitch_a + rng.uniform(-5, 5)
    w2c_a = pose(rotation_yaw_pitch(yaw_a, pitch_a), torch.from_numpy(centre_a)).float()
    w2c_b = pose(rotation_yaw_pitch(yaw_b, float(np.clip(pitch_b, -89, 89))), torch.from_numpy(centre_b)).float()
    return Camera(K, w2c_a, height, width), Camera(K, w2c_b, height, width)


def procedural_pair(
    scene: ProceduralWorld,
    rng: np.random.Generator,
    mask: str,
    size: tuple[int, int] = DEFAULT_SIZE,
    renderer: PointRenderer | None = None,
    tag: str = "",
) -> ViewPair | None:
    """One pair in a procedural world (None when no camera draw gave enough known and unknown pixels).

    Args:
        scene: the world.
        rng: the random source for the cameras and shapes.
        mask: ``yaw``, ``pitch`` or ``shapes`` (see module docstring).
        size: ``(width, height)``.
        renderer: point renderer for the known depth.
        tag: appended to the source name.

    Returns:
        The pair, or None.
    """
    if mask not in MASK_KINDS:
        raise ValueError(f"mask must be one of {', '.join(MASK_KINDS)}, got {mask!r}")
    for _ in range(CAMERA_TRIES):
        camera_a, camera_b = _procedural_cameras(scene, rng, mask, size)
        _, depth_a, _ = render_view(scene, camera_a, color=False)
        if int((depth_a > 0).sum()) < MIN_KNOWN_FRACTION * depth_a.numel():
            continue
        known_depth, known, _ = render_known(depth_a, camera_a, camera_b, renderer)
        if mask == "shapes":
            known = known & ~random_shapes(rng, camera_b.height, camera_b.width)
            known_depth = torch.where(known, known_depth, torch.zeros(()))
        if int(known.sum()) < MIN_KNOWN_FRACTION * known.numel():
            continue
        image, target, _ = render_view(scene, camera_b, color=True)
        if not _enough(known, target):
            continue
        source = f"procedural/{scene.kind}/{scene.seed}/{mask}{tag}"
        return ViewPair(image, known_depth, known, target, camera_b, camera_a, depth_a, source)
    return None


def procedural_pairs(
    seed: int,
    count: int,
    size: tuple[int, int] = DEFAULT_SIZE,
    kinds: Sequence[str] = PROCEDURAL_KINDS,
    masks: Sequence[str] = MASK_KINDS,
    pairs_per_world: int = PAIRS_PER_WORLD,
) -> Iterator[ViewPair]:
    """``count`` pairs over randomised procedural worlds with seeds ``seed, seed + 1, ...``.

    World ``k`` has seed ``seed + k`` and kind ``kinds[(seed + k) % len(kinds)]``; it gives ``pairs_per_world``
    pairs whose mask kinds cycle through ``masks``. Deterministic: the same arguments give the same pairs.

    Args:
        seed: the first world's seed. Benchmark worlds are :data:`BENCHMARK_SEEDS`; train with
            :func:`training_pairs` (seeds ``>= TRAINING_SEED_MIN``).
        count: how many pairs.
        size: ``(width, height)``.
        kinds: world kinds to draw from (:data:`~evaluation.random_worlds.PROCEDURAL_KINDS`).
        masks: mask kinds to cycle through (:data:`MASK_KINDS`).
        pairs_per_world: pairs from each world.

    Yields:
        :class:`ViewPair` s.
    """
    if not kinds or any(k not in PROCEDURAL_KINDS for k in kinds):
        raise ValueError(f"kinds must be a non-empty subset of {PROCEDURAL_KINDS}, got {tuple(kinds)}")
    if not masks or any(m not in MASK_KINDS for m in masks):
        raise ValueError(f"masks must be a non-empty subset of {MASK_KINDS}, got {tuple(masks)}")
    if pairs_per_world < 1 or count < 0:
        raise ValueError(f"pairs_per_world must be >= 1 and count >= 0, got {pairs_per_world} and {count}")
    renderer = get_point_renderer("torch")
    produced, world_index = 0, 0
    while produced < count:
        world_seed = seed + world_index
        scene = random_world(world_seed, kinds[world_seed % len(kinds)])
        rng = np.random.default_rng([world_seed, 7])  # cameras: independent of the layout's stream
        for j in range(pairs_per_world):
            if produced >= count:
                break
            pair = procedural_pair(scene, rng, masks[(world_seed + j) % len(masks)], size, renderer, f"-{j}")
            if pair is not None:
                produced += 1
                yield pair
        world_index += 1


def training_pairs(seed: int, count: int, size: tuple[int, int] = DEFAULT_SIZE, **options) -> Iterator[ViewPair]:
    """:func:`procedural_pairs` for training: refuses seeds below :data:`TRAINING_SEED_MIN` (benchmark worlds)."""
    if seed < TRAINING_SEED_MIN:
        raise ValueError(
            f"training seed {seed} is below {TRAINING_SEED_MIN}: seeds {BENCHMARK_SEEDS.start}-"
            f"{BENCHMARK_SEEDS.stop - 1} are the benchmark's held-out worlds"
        )
    return procedural_pairs(seed, count, size, **options)


# --- the bathroom --------------------------------------------------------------------------------------------------


def _turned(camera: Camera, yaw_deg: float, pitch_deg: float) -> Camera:
    """The camera turned about its own axes (yaw right about its y axis, pitch up about its x axis)."""
    local = torch.eye(4, dtype=torch.float64)
    local[:3, :3] = rotation_yaw_pitch(yaw_deg, pitch_deg)
    c2w = camera.cam_to_world.double() @ local
    return Camera(camera.K, torch.linalg.inv(c2w).float(), camera.height, camera.width)


BATHROOM_REFERENCE_TURNS = ((20.0, 0.0), (-20.0, 0.0), (35.0, 0.0), (-35.0, 0.0), (0.0, -30.0), (0.0, 30.0))
"""(yaw, pitch) of view B relative to the reference camera (view A)."""

BATHROOM_CENTRE_YAWS = tuple(range(0, 360, 45))
"""View A's yaws around the room centre; B is A turned by +25° (a 360-ring step) or pitched 30° down."""

BATHROOM_HFOV_DEG = 60.0


def bathroom_pairs(
    size: tuple[int, int] = DEFAULT_SIZE, root: Path | None = None, renderer: PointRenderer | None = None
) -> Iterator[ViewPair]:
    """Pairs in the bathroom mesh: at the reference camera (:data:`BATHROOM_REFERENCE_TURNS`) and around the room
    centre (:data:`BATHROOM_CENTRE_YAWS`, B = +25° yaw or 30° down). Empty when the data is absent.

    **Evaluation only: never train on these.**
    """
    loaded = load_bathroom(root)
    if loaded is None:
        return
    mesh, meta = loaded
    renderer = renderer if renderer is not None else get_point_renderer("torch")
    reference = bathroom_reference_camera(meta, size)
    cameras = [
        (reference, _turned(reference, yaw, pitch), f"bathroom/ref/yaw{yaw:+.0f}pitch{pitch:+.0f}")
        for yaw, pitch in BATHROOM_REFERENCE_TURNS
    ]
    for yaw in BATHROOM_CENTRE_YAWS:
        forward = (math.sin(math.radians(yaw)), 0.0, math.cos(math.radians(yaw)))
        a = camera_looking(BATHROOM_CENTRE, forward, (0.0, -1.0, 0.0), BATHROOM_HFOV_DEG, size)
        cameras.append((a, _turned(a, 25.0, 0.0), f"bathroom/centre/{yaw}/yaw+25"))
        cameras.append((a, _turned(a, 0.0, -30.0), f"bathroom/centre/{yaw}/pitch-30"))
    for camera_a, camera_b, source in cameras:
        _, depth_a = mesh.render(camera_a, color=False)
        image, target = mesh.render(camera_b)
        known_depth, known, _ = render_known(depth_a, camera_a, camera_b, renderer)
        yield ViewPair(image, known_depth, known, target, camera_b, camera_a, depth_a, source)


# --- RGB-D: ICL-NUIM and TUM -----------------------------------------------------------------------------------------

ICL_FOLDER = Path("rgbd") / "icl_nuim_livingroom1"
TUM_FOLDER = Path("rgbd") / "tum_office"

ICL_PAIRS = ((0, 4), (4, 0), (0, 2), (2, 4), (1, 3), (3, 1))
"""Frame pairs (A, B). The camera moves ~2.5 cm per frame, so these test real poses over small motions."""

ICL_SIDE_FRACTION = 0.5
"""The ``/left`` and ``/right`` variants keep only this fraction of A's columns, on the named side of A: B then has
a wide extrapolated band, like a yaw step of the grow loop, with real poses and real (noisy) depth."""


def _views(folder: Path, size: tuple[int, int], y_up: bool = False) -> list[RGBDView]:
    views = [resize_view(view, size) for view in load_rgbd_folder(folder)]
    if y_up:
        views = [RGBDView(v.rgb, v.depth, to_project_axes(v.camera), v.name) for v in views]
    return views


def icl_pairs(
    size: tuple[int, int] = DEFAULT_SIZE, root: Path | None = None, renderer: PointRenderer | None = None
) -> Iterator[ViewPair]:
    """ICL-NUIM living-room pairs with their real poses: ``icl/a-b`` (all of A) and ``icl/a-b/left|right`` (one
    half of A's columns). Empty when the data is absent. **Evaluation only: never train on these.**"""
    root = root if root is not None else shared_data_root()
    if root is None or not (root / ICL_FOLDER / "meta.json").is_file():
        return
    views = _views(root / ICL_FOLDER, size, y_up=True)  # the ICL world has +Y up
    renderer = renderer if renderer is not None else get_point_renderer("torch")
    width, height = size
    for a, b in ICL_PAIRS:
        view_a, view_b = views[a], views[b]
        for variant in ("", "/left", "/right"):
            depth_a = view_a.depth
            if variant:
                keep = side_cut(height, width, ICL_SIDE_FRACTION, variant[1:])
                depth_a = torch.where(keep, depth_a, torch.zeros(()))
            known_depth, known, _ = render_known(depth_a, view_a.camera, view_b.camera, renderer)
            yield ViewPair(
                view_b.rgb,
                known_depth,
                known,
                view_b.depth,
                view_b.camera,
                view_a.camera,
                view_a.depth,
                f"icl/{a}-{b}{variant}",
            )


TUM_MASKS = (
    ("yaw-left", "left", 0.4),
    ("yaw-right", "right", 0.4),
    ("pitch-up", "top", 0.35),
    ("pitch-down", "bottom", 0.35),
)
"""Synthetic outpainting masks on the TUM frame: the named side band (fraction of the width / height) is unknown,
as after a yaw or pitch step; plus :data:`TUM_SHAPE_MASKS` random-shape masks."""

TUM_SHAPE_MASKS = 4


def tum_pairs(size: tuple[int, int] = DEFAULT_SIZE, root: Path | None = None, seed: int = 0) -> Iterator[ViewPair]:
    """The real TUM office frame with synthetic outpainting masks on its own depth (A = B: the known depth is the
    frame's own depth outside the mask). Empty when the data is absent. **Evaluation only: never train on it.**"""
    root = root if root is not None else shared_data_root()
    if root is None or not (root / TUM_FOLDER / "meta.json").is_file():
        return
    width, height = size
    for index, view in enumerate(_views(root / TUM_FOLDER, size)):
        rng = np.random.default_rng([seed, index])
        masks = [(name, side_cut(height, width, fraction, side)) for name, side, fraction in TUM_MASKS]
        masks += [(f"shapes-{k}", random_shapes(rng, height, width)) for k in range(TUM_SHAPE_MASKS)]
        valid = view.depth > 0
        for name, cut in masks:
            known = valid & erode(~cut, SPARSE_DEPTH_ERODE_PX)  # the cut's border shrinks, not the sensor holes
            known_depth = torch.where(known, view.depth, torch.zeros(()))
            yield ViewPair(
                view.rgb, known_depth, known, view.depth, view.camera, view.camera, view.depth, f"tum/{index}/{name}"
            )


# --- any two views with true depth (ScanNet, Hypersim, generic RGB-D folders) -------------------------------------


def pair_from_views(view_a: RGBDView, view_b: RGBDView, source: str, renderer: PointRenderer | None = None) -> ViewPair:
    """The pair (A known, B completed) of two views with true depth and poses in one world frame."""
    known_depth, known, _ = render_known(view_a.depth, view_a.camera, view_b.camera, renderer)
    return ViewPair(view_b.rgb, known_depth, known, view_b.depth, view_b.camera, view_a.camera, view_a.depth, source)


def rgbd_folder_pairs(folder: Path, size: tuple[int, int] = DEFAULT_SIZE, gap: int = 1) -> Iterator[ViewPair]:
    """Pairs (i, i + gap) of a generic RGB-D folder (``meta.json`` layout, see :mod:`evaluation.datasets`)."""
    views = _views(Path(folder), size)
    renderer = get_point_renderer("torch")
    for i in range(len(views) - gap):
        yield pair_from_views(views[i], views[i + gap], f"rgbd/{Path(folder).name}/{i}-{i + gap}", renderer)


def scannet_pairs(root: Path, size: tuple[int, int] = DEFAULT_SIZE) -> Iterator[ViewPair]:
    """Invisible Stitch's ScanNet pairs (i, i + 10), i = 0, 50, 100, ... (see :mod:`evaluation.datasets`)."""
    from evaluation.datasets import load_scannet_view, scannet_frame_pairs

    renderer = get_point_renderer("torch")
    for scene_dir, frame_a, frame_b, intrinsic in scannet_frame_pairs(root):
        a, b = load_scannet_view(scene_dir, frame_a, intrinsic), load_scannet_view(scene_dir, frame_b, intrinsic)
        if a is None or b is None:
            continue
        source = f"scannet/{scene_dir.name}/{frame_a}-{frame_b}"
        yield pair_from_views(resize_view(a, size), resize_view(b, size), source, renderer)


def hypersim_pairs(root: Path, size: tuple[int, int] = DEFAULT_SIZE) -> Iterator[ViewPair]:
    """The pairs listed in ``root/<scene>_pairs.csv`` (Invisible Stitch's Hypersim pair builder)."""
    from evaluation.datasets import hypersim_pair_rows, load_hypersim_view

    renderer = get_point_renderer("torch")
    for row in hypersim_pair_rows(root):
        scene_dir = Path(root) / row["scene"]
        a = load_hypersim_view(scene_dir, row["camera"], int(row["frame_id"]))
        b = load_hypersim_view(scene_dir, row["camera"], int(row["remaining_frame_id"]))
        source = f"hypersim/{row['scene']}/{row['camera']}/{row['frame_id']}-{row['remaining_frame_id']}"
        yield pair_from_views(resize_view(a, size), resize_view(b, size), source, renderer)
