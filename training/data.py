"""Training samples for the depth completers: one tensor layout for every source.

A :class:`SampleSet` holds N samples of one size, stacked: view B's colour, its known (sparse) depth and mask,
the target depth, B's intrinsics, and — for the geometry-consistency loss — view A's depth, A's intrinsics and the
rigid transform from B's camera frame to A's. Sources:

* :func:`procedural_set` — :func:`evaluation.pairs.training_pairs` (procedural worlds, training seeds only, true
  depth): supervised learning.
* :func:`distillation_set` — any folder of images; a *teacher* depth estimator from :mod:`models.registry` gives
  the target, and its depth outside a synthetic outpainting mask (a side band as after a yaw or pitch step, or
  random shapes) is the sparse input: Invisible Stitch's stage 1. No second view (no consistency loss).
* :func:`grown_scene_set` — folders written by ``python -m pipeline ... --out DIR`` (``images/``, ``depth/`` 16-bit
  PNGs in the unit transforms.json names, ``transforms.json``): for each pair of overlapping views, A's depth
  rendered into B is the known input and B's depth the target (Invisible Stitch's stage 2, self-training on what
  the pipeline grew).

**Hold-out rule.** The bathroom, ICL-NUIM and TUM data are evaluation-only: nothing here reads ``../shared/data``,
and :func:`procedural_set` refuses benchmark seeds (:func:`evaluation.pairs.training_pairs` does).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.cameras import Camera, intrinsics
from core.files import atomic_path
from core.images import load_image
from core.masks import SPARSE_DEPTH_ERODE_PX, erode
from evaluation.datasets import RGBDView, resize_view
from evaluation.pairs import ViewPair, is_held_out, random_shapes, render_known, side_cut, training_pairs
from models.light_completer import harmonic_log_depth

PAIRS_PER_CHUNK = 32
"""Procedural pairs are drawn in chunks of this many (8 worlds of 4 pairs), one chunk per worker task."""

CHUNK_SEED_STRIDE = 1000
"""Chunk k starts at world seed ``seed + k * 1000``: chunks never share a world (a chunk uses ~8-12 seeds), and the
set is the same whatever the number of workers."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

DISTILL_SIDES = (("left", 0.4), ("right", 0.4), ("top", 0.35), ("bottom", 0.35))
"""Synthetic outpainting masks for distillation: the named side band (fraction of the width / height) unknown, as
after a yaw or pitch step of the grow loop; plus random shapes."""

MIN_PAIR_KNOWN_FRACTION = 0.10
"""A grown-scene pair is used only when A covers at least 10 % of B (less is not a neighbouring view)."""

MIN_PAIR_UNKNOWN_FRACTION = 0.03
"""...and leaves at least 3 % of B to extrapolate (else it teaches nothing about completion)."""

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
"""transforms.json stores OpenGL camera axes (y up, z backward); the project's cameras are OpenCV's."""

DEFAULT_DEPTH_UNIT_M = 0.001
"""Metres per 16-bit depth-PNG step when transforms.json does not say (``depth_unit_scale_factor``): millimetres."""


@dataclass
class SampleSet:
    """N training samples of one size (stacked tensors, CPU).

    Attributes:
        image: view B's colour.
        known_depth: sparse input depth, 0 = unknown.
        known_mask: True where ``known_depth`` is given.
        target: the depth to learn, 0 = no target.
        K: B's intrinsics.
        depth_a: view A's depth for the consistency loss, 0 = unknown (all 0 when there is no second view).
        K_a: A's intrinsics.
        b_to_a: rigid transform from B's camera frame to A's.
        has_pair: True where A is a real second view.
        dense_log: harmonic fill of the known log-depth (the light network's input; cached here, it is the slowest
            feature to compute and depends only on the sample).
    """

    image: Tensor  # [N, 3, H, W] uint8
    known_depth: Tensor  # [N, H, W] float32
    known_mask: Tensor  # [N, H, W] bool
    target: Tensor  # [N, H, W] float32
    K: Tensor  # [N, 3, 3] float32
    depth_a: Tensor  # [N, H, W] float32
    K_a: Tensor  # [N, 3, 3] float32
    b_to_a: Tensor  # [N, 4, 4] float32
    has_pair: Tensor  # [N] bool
    dense_log: Tensor  # [N, H, W] float32

    def __len__(self) -> int:
        return int(self.image.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.image.shape[-1]), int(self.image.shape[-2])

    def select(self, index: Tensor) -> SampleSet:  # index [B] long
        return SampleSet(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def save(self, path: Path) -> None:
        """Write the set atomically (a torch file of plain tensors)."""
        with atomic_path(path, suffix=".pt") as temp:
            torch.save({f.name: getattr(self, f.name) for f in fields(self)}, temp)

    @staticmethod
    def load(path: Path) -> SampleSet:
        data = torch.load(path, weights_only=True)
        return SampleSet(**{f.name: data[f.name] for f in fields(SampleSet)})


def concat(sets: Sequence[SampleSet]) -> SampleSet:
    """One set from several of the same size."""
    sets = [s for s in sets if len(s)]
    if not sets:
        raise ValueError("no training samples: every data source came out empty")
    sizes = {s.size for s in sets}
    if len(sizes) > 1:
        raise ValueError(f"sample sets differ in size: {sorted(sizes)}")
    return SampleSet(**{f.name: torch.cat([getattr(s, f.name) for s in sets]) for f in fields(SampleSet)})


def _to_uint8(image: Tensor) -> Tensor:  # [H, W, 3] float in [0, 1] -> [3, H, W] uint8
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(2, 0, 1)


def _relative_pose(camera_b: Camera, camera_a: Camera) -> Tensor:  # -> [4, 4] B's camera frame -> A's
    return (camera_a.world_to_cam.double() @ camera_b.cam_to_world.double()).float()


def _stack(rows: list[dict[str, Tensor]]) -> SampleSet:
    if not rows:
        return SampleSet(
            image=torch.zeros(0, 3, 1, 1, dtype=torch.uint8),
            known_depth=torch.zeros(0, 1, 1),
            known_mask=torch.zeros(0, 1, 1, dtype=torch.bool),
            target=torch.zeros(0, 1, 1),
            K=torch.zeros(0, 3, 3),
            depth_a=torch.zeros(0, 1, 1),
            K_a=torch.zeros(0, 3, 3),
            b_to_a=torch.zeros(0, 4, 4),
            has_pair=torch.zeros(0, dtype=torch.bool),
            dense_log=torch.zeros(0, 1, 1),
        )
    return SampleSet(**{name: torch.stack([row[name] for row in rows]) for name in rows[0]})


def _pair_row(pair: ViewPair) -> dict[str, Tensor]:
    depth_a = pair.depth_a
    if tuple(depth_a.shape) != tuple(pair.target_depth.shape):  # A at another size: no consistency term
        return _row(pair.image, pair.known_depth, pair.known_mask, pair.target_depth, pair.camera, None, None)
    return _row(pair.image, pair.known_depth, pair.known_mask, pair.target_depth, pair.camera, pair.camera_a, depth_a)


def _row(
    image: Tensor,  # [H, W, 3]
    known_depth: Tensor,  # [H, W]
    known_mask: Tensor,  # [H, W] bool
    target: Tensor,  # [H, W]
    camera: Camera,
    camera_a: Camera | None,
    depth_a: Tensor | None,  # [H, W]
) -> dict[str, Tensor]:
    has_pair = camera_a is not None and depth_a is not None
    known = known_mask & (known_depth > 0)
    return {
        "image": _to_uint8(image),
        "known_depth": torch.where(known_mask, known_depth, torch.zeros(())).float(),
        "known_mask": known_mask.bool(),
        "target": target.float(),
        "K": camera.K.float(),
        "depth_a": depth_a.float() if has_pair else torch.zeros_like(target, dtype=torch.float32),
        "K_a": (camera_a if has_pair else camera).K.float(),
        "b_to_a": _relative_pose(camera, camera_a) if has_pair else torch.eye(4),
        "has_pair": torch.tensor(has_pair),
        "dense_log": harmonic_log_depth(known_depth.float(), known) if bool(known.any()) else torch.zeros_like(target),
    }


# --- procedural ----------------------------------------------------------------------------------------------------


def _procedural_chunk(args: tuple[int, int, tuple[int, int]]) -> SampleSet:
    seed, count, size = args
    torch.set_num_threads(1)
    rows = []
    for pair in training_pairs(seed, count, size):
        if is_held_out(pair.source):  # training_pairs already refuses benchmark seeds; never trust one check
            raise RuntimeError(f"held-out pair {pair.source} reached the training set")
        rows.append(_pair_row(pair))
    return _stack(rows)


def procedural_set(seed: int, count: int, size: tuple[int, int], workers: int = 1, progress=None) -> SampleSet:
    """``count`` procedural pairs (training seeds only), drawn in chunks of :data:`PAIRS_PER_CHUNK`.

    Args:
        seed: first world seed (>= :data:`evaluation.pairs.TRAINING_SEED_MIN`).
        count: number of pairs.
        size: (width, height).
        workers: processes drawing chunks in parallel (the set does not depend on it).
        progress: optional callable ``progress(done_pairs)``.

    Returns:
        The pairs, in chunk order.
    """
    tasks = []
    for k in range(math.ceil(count / PAIRS_PER_CHUNK)):
        tasks.append((seed + k * CHUNK_SEED_STRIDE, min(PAIRS_PER_CHUNK, count - k * PAIRS_PER_CHUNK), tuple(size)))
    results: list[SampleSet] = []
    done = 0
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for chunk in pool.map(_procedural_chunk, tasks):
                results.append(chunk)
                done += len(chunk)
                if progress:
                    progress(done)
    else:
        for task in tasks:
            results.append(_procedural_chunk(task))
            done += len(results[-1])
            if progress:
                progress(done)
    return concat(results)


# --- teacher distillation ------------------------------------------------------------------------------------------


def image_files(folder: Path) -> list[Path]:
    """Images in a folder (recursively), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"image folder {str(folder)!r} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(folder)!r}")
    return files


def _cover_resize(image: Tensor, size: tuple[int, int]) -> Tensor:  # [H, W, 3] -> [h, w, 3]
    """Scale to cover ``size = (width, height)`` and crop the centre."""
    width, height = size
    src_h, src_w = image.shape[:2]
    scale = max(width / src_w, height / src_h)
    new_w, new_h = max(width, round(src_w * scale)), max(height, round(src_h * scale))
    x = F.interpolate(image.permute(2, 0, 1)[None], size=(new_h, new_w), mode="area")[0]
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return x[:, top : top + height, left : left + width].permute(1, 2, 0).contiguous()


def teacher_depth(teacher, image: Tensor, camera: Camera) -> Tensor:  # [H, W, 3] -> [H, W], 0 = invalid
    """The teacher's depth for an image: metric and relative outputs as they are, disparity-like ones inverted.

    A ``relative_inverse`` teacher (relative Depth Anything) is right only up to an affine map of inverse depth;
    its inverse is used as depth with the shift left unknown. The completer predicts depth relative to the known
    depth, so a global scale never matters; prefer a metric teacher all the same.
    """
    estimate = teacher.estimate(image, camera)
    values = estimate.values.detach().float().cpu()
    if estimate.kind == "relative_inverse":
        positive = values > 0
        floor = float(values[positive].max()) * 1e-3 if bool(positive.any()) else 1.0
        values = torch.where(positive, 1.0 / values.clamp_min(floor), torch.zeros_like(values))
    return torch.where(torch.isfinite(values) & (values > 0), values, torch.zeros_like(values))


def distillation_set(
    folder: Path,
    teacher,
    size: tuple[int, int],
    seed: int,
    masks_per_image: int = 4,
    hfov_deg: float = 60.0,
    progress=None,
) -> SampleSet:
    """Teacher distillation on an image folder.

    Args:
        folder: images (any of :data:`IMAGE_SUFFIXES`, searched recursively).
        teacher: a ``DepthEstimator`` (``estimate(image, camera) -> DepthEstimate``), e.g. from
            :func:`models.registry.build_estimator`.
        size: (width, height) the samples have.
        seed: picks the masks.
        masks_per_image: samples per image (mask kinds cycle through the four side bands and random shapes).
        hfov_deg: the field of view assumed for the images (a photo folder carries no intrinsics).
        progress: optional callable ``progress(done_images)``.

    Returns:
        The samples (no second view: ``has_pair`` is False).
    """
    width, height = size
    camera = Camera(intrinsics(height, width, hfov_deg), torch.eye(4), height, width)
    rng = np.random.default_rng([seed, 11])
    rows = []
    for index, path in enumerate(image_files(folder)):
        image = _cover_resize(load_image(path), size)
        target = teacher_depth(teacher, image, camera)
        valid = target > 0
        if not bool(valid.any()):
            continue
        for k in range(masks_per_image):
            choice = (index + k) % (len(DISTILL_SIDES) + 1)
            if choice < len(DISTILL_SIDES):
                side, fraction = DISTILL_SIDES[choice]
                cut = side_cut(height, width, fraction * float(rng.uniform(0.6, 1.2)), side)
            else:
                cut = random_shapes(rng, height, width)
            known = valid & erode(~cut, SPARSE_DEPTH_ERODE_PX)
            if not bool(known.any()):
                continue
            rows.append(_row(image, torch.where(known, target, torch.zeros(())), known, target, camera, None, None))
        if progress:
            progress(index + 1)
    return _stack(rows)


# --- self-training on grown scenes ---------------------------------------------------------------------------------


def load_grown_scene(folder: Path) -> list[RGBDView]:
    """The views of a scene written by ``python -m pipeline ... --out DIR`` (transforms.json + images + depth)."""
    from PIL import Image

    folder = Path(folder)
    meta_path = folder / "transforms.json"
    if not meta_path.is_file():
        raise ValueError(f"{str(folder)!r} is not a grown scene: transforms.json is missing")
    try:
        meta = json.loads(meta_path.read_text())
        frames = meta["frames"]
        unit_m = float(meta.get("depth_unit_scale_factor", DEFAULT_DEPTH_UNIT_M))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{meta_path}: not a valid transforms.json ({err})") from err
    views = []
    for frame in frames:
        rgb = load_image(folder / frame["file_path"], min_side=1)
        with Image.open(folder / frame["depth_file_path"]) as handle:
            depth = torch.from_numpy(np.asarray(handle, dtype=np.float32) * unit_m)
        height, width = depth.shape
        if tuple(rgb.shape[:2]) != (height, width):
            raise ValueError(f"{frame['file_path']}: image {tuple(rgb.shape[:2])} and depth {(height, width)} differ")
        K = torch.tensor(
            [[frame["fl_x"], 0, frame["cx"]], [0, frame["fl_y"], frame["cy"]], [0, 0, 1]], dtype=torch.float32
        )
        c2w = np.asarray(frame["transform_matrix"], dtype=np.float64) @ OPENGL_TO_OPENCV
        w2c = torch.from_numpy(np.linalg.inv(c2w)).float()
        views.append(RGBDView(rgb, depth, Camera(K, w2c, height, width), Path(frame["file_path"]).stem))
    return views


def grown_scene_set(folders: Iterable[Path], size: tuple[int, int], max_gap: int = 2) -> SampleSet:
    """Self-training pairs from grown scenes: views ``i`` and ``j`` with ``0 < |i - j| <= max_gap`` (ring order,
    wrapping) whose overlap passes :data:`MIN_PAIR_KNOWN_FRACTION` / :data:`MIN_PAIR_UNKNOWN_FRACTION`."""
    rows = []
    for folder in folders:
        views = [resize_view(view, size) for view in load_grown_scene(folder)]
        count = len(views)
        for i in range(count):
            for gap in range(-max_gap, max_gap + 1):
                j = (i + gap) % count
                if gap == 0 or j == i:
                    continue
                view_a, view_b = views[j], views[i]
                known_depth, known, _ = render_known(view_a.depth, view_a.camera, view_b.camera)
                unknown = ~known & (view_b.depth > 0)
                if known.float().mean() < MIN_PAIR_KNOWN_FRACTION or unknown.float().mean() < MIN_PAIR_UNKNOWN_FRACTION:
                    continue
                rows.append(
                    _row(view_b.rgb, known_depth, known, view_b.depth, view_b.camera, view_a.camera, view_a.depth)
                )
    return _stack(rows)
