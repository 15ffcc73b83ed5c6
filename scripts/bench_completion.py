"""Depth-completion benchmark: how well does each method extend known depth into the unseen part of a view?

For each view pair (A, B) the true depth of A is lifted to points and rendered into B: that is the known depth
of B (as in the grow loop, with the known region eroded by 2 px). Each method then completes B's depth from B's
true image (standing in for a perfect outpainting) and the known depth, and is scored against B's true depth:

* ``ext``  — pixels of B that A does not see (the extrapolated region);
* ``seam`` — extrapolated pixels within 8 px of the known region (where a bad completion shows as a step);
* ``SC``   — scale consistency between the views, SC-Depth style: A's depth (the method's; the given truth for
  completers) lifted, moved into B's frame and compared with B's completed depth at the same pixel,
  ``|d_a→b − d_b| / (d_a→b + d_b)``, averaged over pixels A sees in B (truth-visible) whose depth was *not* given
  to the method (the eroded border, pinholes). 0 = perfectly consistent.

MAE is in scene units (metres for real data), AbsRel = mean |pred − true| / true. Means are over all scored
pixels of all pairs.

Methods (rows):

* ``raw estimate``        — the depth estimator's output as is (metric estimators only);
* ``global scale/shift``  — ``models.depth_align.fit_scale_shift`` on the known pixels;
* ``aligned + harmonic``  — ``models.depth_align.align_depth`` (scale/shift + harmonic log residual);
* ``learned completer``   — a 5-channel ZoeDepth (``--completer DIR|invisible-stitch.pt``); without one, a tiny
  RANDOM model is used only to exercise the code path (its numbers mean nothing and are labelled so).

Estimator (``--depth-model``): ``synthetic`` (default, offline) is NOT a network: the true depth times a random
per-view scale (±25 %) times a smooth random warp (±15 %, a 3×4 grid upsampled) — a stand-in with the error
structure of a metric monocular estimate. ``prior`` is the geometric-prior depth; a folder or Hub id loads a
transformers depth model.

Data:

* synthetic worlds (``evaluation.worlds``: room, street, landscape), pairs (view 0 → each other view of the
  ``stage`` path);
* ``--scannet DIR`` — ScanNet scenes as Invisible Stitch's ``benchmark/scannet_eval.py`` reads them:
  ``DIR/<scene>/color/<i>.jpg``, ``depth/<i>.png`` (uint16 millimetres), ``pose/<i>.txt`` (4×4 camera-to-world,
  OpenCV axes), ``intrinsic/intrinsic_depth.txt`` (4×4); pairs (i, i + 10) for i = 0, 50, 100, ... (their
  ``scene_seq_length=2`` schedule); colour is resized to the depth size;
* ``--hypersim DIR`` — Hypersim as Invisible Stitch's ``benchmark/hypersim_pair_builder.py`` leaves it:
  pair lists ``DIR/<scene>_pairs.csv`` (columns scene, camera, frame_id, remaining_frame_id, overlap) and the
  standard Hypersim tree ``DIR/<scene>/_detail/metadata_scene.csv`` (meters_per_asset_unit),
  ``_detail/<camera>/camera_keyframe_{positions,orientations}.hdf5``,
  ``images/scene_<camera>_final_hdf5/frame.NNNN.color.hdf5`` and
  ``images/scene_<camera>_geometry_hdf5/frame.NNNN.depth_meters.hdf5`` (distance along the ray; converted to
  z-depth with Invisible Stitch's focal of 886.81 px at 1024 × 768, i.e. a 60° horizontal FoV). Reading HDF5
  needs ``h5py`` (not in requirements.txt; ``pip install h5py``). Colour is HDR and is clipped to [0, 1] and
  gamma-encoded (1/2.2). Tilt-shift scenes (``use_camera_physical``) are assumed absent, as in their pair builder.

    python scripts/bench_completion.py                       # synthetic worlds, synthetic estimator
    python scripts/bench_completion.py --size 256x192 --depth-model prior
    python scripts/bench_completion.py --scannet /data/ScanNet --max-pairs 20
"""

from __future__ import annotations

import argparse
import csv
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.cameras import Camera, make_cameras
from core.components import DepthEstimate
from core.geometry import project, unproject

ROOT = Path(__file__).resolve().parents[1]

KNOWN_ERODE_PX = 2
"""The known region is eroded as in the grow loop (GrowConfig.known_erode_px): its border pixels blend surfaces."""

SEAM_PX = 8
"""Width of the seam band scored separately: extrapolated pixels this close to the known region."""

VISIBLE_REL_TOL = 0.02
"""A point of A counts as seen in B when its depth in B is within 2 % of B's true depth at that pixel."""

SCANNET_STRIDE = 50
SCANNET_GAP = 10  # Invisible Stitch's ScanNet schedule: sequences start every 50 frames, frames 10 apart
HYPERSIM_FOCAL_1024 = 886.81  # px at 1024 wide = 60° horizontal FoV (Invisible Stitch's constant)

SYNTHETIC_SCALE_SPREAD = 0.25
SYNTHETIC_WARP = 0.15
SYNTHETIC_WARP_GRID = (3, 4)

METHODS = ("raw estimate", "global scale/shift", "aligned + harmonic", "learned completer")


@dataclass
class ViewPair:
    """Two views of one scene with true depth: A is known, B is completed."""

    name: str
    rgb_a: Tensor  # [H, W, 3]
    depth_a: Tensor  # [H, W] z-depth, 0 = invalid
    camera_a: Camera
    rgb_b: Tensor  # [H, W, 3]
    depth_b: Tensor  # [H, W]
    camera_b: Camera


@dataclass
class Tally:
    """Running sums of one method's errors."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, values: Tensor) -> None:  # [N]
        self.sums[key] = self.sums.get(key, 0.0) + float(values.double().sum())
        self.counts[key] = self.counts.get(key, 0) + int(values.numel())

    def mean(self, key: str) -> float:
        return self.sums.get(key, 0.0) / self.counts[key] if self.counts.get(key) else float("nan")


# --- data ---------------------------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def _resize(rgb: Tensor, depth: Tensor, camera: Camera, width: int, height: int) -> tuple[Tensor, Tensor, Camera]:
    if (camera.height, camera.width) == (height, width):
        return rgb, depth, camera
    rgb = F.interpolate(rgb.permute(2, 0, 1)[None], size=(height, width), mode="area")[0].permute(1, 2, 0)
    depth = F.interpolate(depth[None, None], size=(height, width), mode="nearest")[0, 0]
    return rgb.contiguous(), depth, camera.scaled(height, width)


def synthetic_pairs(worlds: list[str], width: int, height: int) -> Iterator[ViewPair]:
    from evaluation.worlds import make_world

    for name in worlds:
        world = make_world(name)
        cameras = make_cameras("stage", (width, height))
        rgb_a, depth_a = world.render(cameras[0])
        for index, camera in enumerate(cameras[1:], start=1):
            rgb_b, depth_b = world.render(camera)
            yield ViewPair(f"{name} 0→{index}", rgb_a, depth_a, cameras[0], rgb_b, depth_b, camera)


def _read_image(path: Path) -> np.ndarray:  # -> [H, W, 3] uint8
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _read_depth_png(path: Path) -> np.ndarray:  # -> [H, W] uint16
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image).astype(np.float32)


def _frame_key(path: Path) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.stem))


def load_scannet_view(scene_dir: Path, frame: str, intrinsic: np.ndarray) -> tuple[Tensor, Tensor, Camera] | None:
    """One ScanNet frame at the depth resolution, or None when its pose is invalid (ScanNet marks lost tracking
    with -inf/nan poses)."""
    pose = np.loadtxt(scene_dir / "pose" / f"{frame}.txt").reshape(4, 4)
    if not np.isfinite(pose).all():
        return None
    depth = torch.from_numpy(_read_depth_png(scene_dir / "depth" / f"{frame}.png") / 1000.0).float()  # mm -> m
    height, width = depth.shape
    rgb = torch.from_numpy(_read_image(scene_dir / "color" / f"{frame}.jpg").astype(np.float32) / 255.0)
    if rgb.shape[:2] != (height, width):
        rgb = F.interpolate(rgb.permute(2, 0, 1)[None], size=(height, width), mode="area")[0].permute(1, 2, 0)
    cam_to_world = torch.from_numpy(pose).double()
    world_to_cam = torch.linalg.inv(cam_to_world)
    K = torch.from_numpy(intrinsic[:3, :3].astype(np.float32))
    return rgb.contiguous(), depth, Camera(K, world_to_cam.float(), height, width)


def scannet_pairs(root: Path, width: int, height: int) -> Iterator[ViewPair]:
    """Pairs (i, i + 10), i = 0, 50, 100, ... from every scene folder under ``root`` (see module docstring)."""
    scenes = sorted(p for p in Path(root).iterdir() if (p / "pose").is_dir())
    if not scenes:
        raise FileNotFoundError(f"no ScanNet scenes (folders with pose/, color/, depth/, intrinsic/) in {root}")
    for scene_dir in scenes:
        intrinsic = np.loadtxt(scene_dir / "intrinsic" / "intrinsic_depth.txt").reshape(4, 4)
        frames = [p.stem for p in sorted((scene_dir / "pose").glob("*.txt"), key=_frame_key)]
        for start in range(0, len(frames) - SCANNET_GAP, SCANNET_STRIDE):
            a = load_scannet_view(scene_dir, frames[start], intrinsic)
            b = load_scannet_view(scene_dir, frames[start + SCANNET_GAP], intrinsic)
            if a is None or b is None:
                continue
            a, b = _resize(*a, width, height), _resize(*b, width, height)
            name = f"{scene_dir.name} {frames[start]}→{frames[start + SCANNET_GAP]}"
            yield ViewPair(name, a[0], a[1], a[2], b[0], b[1], b[2])


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
    cam_to_world[:3, :3] = orientation @ np.diag([1.0, -1.0, -1.0])  # flip y and z: OpenGL-style -> OpenCV axes
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


def load_hypersim_view(scene_dir: Path, camera_name: str, frame: int, meters_per_unit: float):
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
    return torch.from_numpy(np.ascontiguousarray(rgb)).float(), torch.from_numpy(depth).float(), camera


def hypersim_pairs(root: Path, width: int, height: int) -> Iterator[ViewPair]:
    """Pairs listed in ``root/<scene>_pairs.csv`` files (see module docstring)."""
    lists = sorted(Path(root).glob("*_pairs.csv"))
    if not lists:
        raise FileNotFoundError(f"no <scene>_pairs.csv in {root} (made by Invisible Stitch's hypersim_pair_builder)")
    for pair_list in lists:
        with open(pair_list, newline="") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            scene_dir = Path(root) / row["scene"]
            meters = _meters_per_asset_unit(scene_dir)
            a = load_hypersim_view(scene_dir, row["camera"], int(row["frame_id"]), meters)
            b = load_hypersim_view(scene_dir, row["camera"], int(row["remaining_frame_id"]), meters)
            a, b = _resize(*a, width, height), _resize(*b, width, height)
            name = f"{row['scene']} {row['camera']} {row['frame_id']}→{row['remaining_frame_id']}"
            yield ViewPair(name, a[0], a[1], a[2], b[0], b[1], b[2])


# --- estimators and completers -----------------------------------------------------------------------------------


def synthetic_estimate(truth: Tensor, seed: int) -> DepthEstimate:  # [H, W] -> metric estimate
    """NOT a network: truth × per-view scale × smooth warp (see module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    scale = 1 + SYNTHETIC_SCALE_SPREAD * (2 * float(torch.rand((), generator=generator)) - 1)
    grid = (2 * torch.rand(1, 1, *SYNTHETIC_WARP_GRID, generator=generator) - 1) * SYNTHETIC_WARP
    warp = F.interpolate(grid, size=truth.shape, mode="bicubic", align_corners=True)[0, 0]
    fallback = truth[truth > 0].median() if bool((truth > 0).any()) else torch.tensor(1.0)
    base = torch.where(truth > 0, truth, fallback)
    return DepthEstimate((base * scale * torch.exp(warp)).float(), "metric")


def make_estimate_fn(depth_model: str):
    """view -> DepthEstimate for the raw / alignment rows."""
    if depth_model == "synthetic":
        return lambda rgb, depth, camera, seed: synthetic_estimate(depth, seed)
    from models.hub import offline_mode
    from models.registry import build_estimator

    estimator = build_estimator(depth_model, allow_download=not offline_mode())
    return lambda rgb, depth, camera, seed: estimator.estimate(rgb, camera)


def make_completer(reference: str | None):
    """(completer, label). Without a reference: a tiny random 5-channel ZoeDepth, through the real loader."""
    if reference:
        from models.registry import build_completer

        return build_completer(reference, None, device="cpu"), "learned completer"
    from models.completion import load_completer
    from models.tiny import save_tiny_completer

    folder = save_tiny_completer(Path(tempfile.mkdtemp(prefix="tiny-completer-")))
    return load_completer(str(folder), device="cpu"), "learned (TINY RANDOM: path check)"


# --- metrics -------------------------------------------------------------------------------------------------------


def known_from(pair: ViewPair, renderer) -> tuple[Tensor, Tensor, Tensor]:
    """A's true depth rendered into B: (known depth [H, W], given mask [H, W], seen-from-A mask [H, W])."""
    from core.masks import erode

    valid = pair.depth_a > 0
    points = unproject(pair.depth_a, pair.camera_a.K, pair.camera_a.cam_to_world)[valid]  # [N, 3]
    result = renderer.render(points, pair.rgb_a[valid], pair.camera_b)
    seen = result.known_mask & (result.depth > 0)
    given = erode(seen, KNOWN_ERODE_PX) if KNOWN_ERODE_PX else seen
    return torch.where(given, result.depth, torch.zeros(())), given, seen


def scale_consistency(
    depth_a: Tensor,  # [H, W] the method's depth of A
    pair: ViewPair,
    depth_b: Tensor,  # [H, W] the method's depth of B
    region_b: Tensor,  # [H, W] bool, pixels of B to score
) -> Tensor:  # [M] per-point |d_a→b − d_b| / (d_a→b + d_b)
    height, width = pair.depth_b.shape
    valid = (pair.depth_a > 0) & (depth_a > 0)
    true_pts = unproject(pair.depth_a, pair.camera_a.K, pair.camera_a.cam_to_world)[valid]
    pred_pts = unproject(depth_a, pair.camera_a.K, pair.camera_a.cam_to_world)[valid]
    uv, z_true = project(true_pts, pair.camera_b.K, pair.camera_b.world_to_cam)
    _, z_pred = project(pred_pts, pair.camera_b.K, pair.camera_b.world_to_cam)
    col, row = uv[:, 0].floor().long(), uv[:, 1].floor().long()
    inside = (z_true > 0) & (col >= 0) & (col < width) & (row >= 0) & (row < height) & (z_pred > 0)
    col, row, z_true, z_pred = col[inside], row[inside], z_true[inside], z_pred[inside]
    truth_b = pair.depth_b[row, col]
    visible = (truth_b > 0) & ((z_true - truth_b).abs() <= VISIBLE_REL_TOL * truth_b) & region_b[row, col]
    d_ab, d_b = z_pred[visible], depth_b[row[visible], col[visible]]
    return (d_ab - d_b).abs() / (d_ab + d_b).clamp_min(1e-9)


def score(tally: Tally, pred: Tensor, truth: Tensor, ext: Tensor, seam: Tensor) -> None:
    for key, region in (("ext", ext), ("seam", seam)):
        mask = region & (truth > 0)
        error = (pred[mask] - truth[mask]).abs()
        tally.add(f"mae_{key}", error)
        tally.add(f"absrel_{key}", error / truth[mask])


# --- the benchmark -------------------------------------------------------------------------------------------------


def run(pairs: Iterator[ViewPair], estimate_fn, completer, max_pairs: int | None = None) -> tuple[dict, int]:
    from core.masks import dilate
    from models.depth_align import align_depth, apply_scale_shift, fit_scale_shift
    from renderers import get_point_renderer

    renderer = get_point_renderer("torch")
    tallies = {method: Tally() for method in METHODS}
    count = 0
    for index, pair in enumerate(pairs):
        if max_pairs is not None and count >= max_pairs:
            break
        known_depth, given, seen = known_from(pair, renderer)
        truth = pair.depth_b
        ext = (truth > 0) & ~seen
        seam = ext & dilate(seen, SEAM_PX)
        not_given = ~given
        if int(given.sum()) < 16 or int(ext.sum()) == 0:
            continue
        estimate_b = estimate_fn(pair.rgb_b, truth, pair.camera_b, 2 * index + 1)
        space = "inverse" if estimate_b.kind == "relative_inverse" else "depth"
        outputs = {}
        if estimate_b.kind == "metric":
            estimate_a = estimate_fn(pair.rgb_a, pair.depth_a, pair.camera_a, 2 * index)
            outputs["raw estimate"] = (estimate_a.values, estimate_b.values)
        fit = fit_scale_shift(estimate_b.values, known_depth, given, space)
        scaled = apply_scale_shift(estimate_b.values, fit, space).clamp_min(1e-3)
        outputs["global scale/shift"] = (pair.depth_a, torch.where(given, known_depth, scaled))
        outputs["aligned + harmonic"] = (pair.depth_a, align_depth(estimate_b, known_depth, given))
        if completer is not None:
            outputs["learned completer"] = (
                pair.depth_a,
                completer.complete(pair.rgb_b, known_depth, given, pair.camera_b),
            )
        for method, (depth_a, depth_b) in outputs.items():
            score(tallies[method], depth_b, truth, ext, seam)
            tallies[method].add("sc", scale_consistency(depth_a, pair, depth_b, not_given))
        count += 1
    return tallies, count


def format_table(title: str, tallies: dict[str, Tally], labels: dict[str, str]) -> str:
    header = f"{'method':<44} {'MAE ext':>9} {'AbsRel ext':>10} {'MAE seam':>9} {'AbsRel seam':>11} {'SC':>8}"
    lines = [title, header, "-" * len(header)]
    for method, tally in tallies.items():
        if not tally.counts:
            continue
        values = [tally.mean(k) for k in ("mae_ext", "absrel_ext", "mae_seam", "absrel_seam", "sc")]
        lines.append(
            f"{labels.get(method, method):<44} {values[0]:9.3f} {values[1]:10.3f} {values[2]:9.3f} "
            f"{values[3]:11.3f} {values[4]:8.4f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", nargs="*", default=["room", "street", "landscape"], help="synthetic worlds")
    parser.add_argument("--size", default="128x96", help="working size WIDTHxHEIGHT (default 128x96)")
    parser.add_argument("--depth-model", default="synthetic", help="synthetic | prior | folder | Hub id")
    parser.add_argument("--completer", default=None, help="5-channel ZoeDepth folder / Hub id / invisible-stitch.pt")
    parser.add_argument("--no-learned", action="store_true", help="skip the learned-completer row")
    parser.add_argument("--scannet", type=Path, default=None, help="ScanNet root (Invisible Stitch layout)")
    parser.add_argument("--hypersim", type=Path, default=None, help="Hypersim root with <scene>_pairs.csv files")
    parser.add_argument("--max-pairs", type=int, default=None, help="at most this many pairs per dataset")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    width, height = parse_size(args.size)

    estimate_fn = make_estimate_fn(args.depth_model)
    completer, learned_label = (None, "") if args.no_learned else make_completer(args.completer)
    estimator_label = "synthetic estimator (truth×scale×warp)" if args.depth_model == "synthetic" else args.depth_model
    labels = {"raw estimate": f"raw: {estimator_label}", "learned completer": learned_label}

    datasets = []
    if args.worlds:
        title = f"synthetic worlds ({', '.join(args.worlds)}), stage pairs"
        datasets.append((title, synthetic_pairs(args.worlds, width, height)))
    if args.scannet is not None:
        datasets.append((f"ScanNet ({args.scannet})", scannet_pairs(args.scannet, width, height)))
    if args.hypersim is not None:
        datasets.append((f"Hypersim ({args.hypersim})", hypersim_pairs(args.hypersim, width, height)))
    for title, pairs in datasets:
        start = time.perf_counter()
        tallies, count = run(pairs, estimate_fn, completer, args.max_pairs)
        seconds = time.perf_counter() - start
        print(format_table(f"\n{title}: {count} pairs at {width}x{height}, {seconds:.1f} s", tallies, labels))
    print(
        "\next = pixels B does not see from A; seam = ext within 8 px of the known region; "
        "SC = |d_a→b − d_b| / (d_a→b + d_b) on co-visible pixels not given to the method"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
