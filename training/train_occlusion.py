"""Train the learned occlusion model (:mod:`models.occlusion`) on procedural worlds with random virtual objects.

    python -m training.train_occlusion                      # the shipped weights (see models/weights/OCCLUSION.md)
    python -m training.train_occlusion --views 8 --minutes 0.2 --out /tmp/occ.safetensors   # a smoke run

Data, all made here from a seed (nothing downloaded, no bathroom/ICL-NUIM/TUM data):

1. a world: one of the procedural worlds of :mod:`evaluation.worlds` (room, street, landscape) with 0-4 extra
   random boxes and spheres in front of the camera (random colours and textures), so occluders vary;
2. a random camera in it (position, yaw, pitch, field of view);
3. per view several random virtual objects (box, sphere, cylinder; random size, rotation, colour) placed along
   the ray of a random pixel at 0.3-1.25x that pixel's depth, so they end up in front of, behind and inside the
   scene's surfaces; drawn with :func:`pipeline.objects.render_object`;
4. exact labels from the world's true depth (the scene hides the object where it is nearer), and the scene depth
   the model sees degraded like our generated depth (:func:`evaluation.occlusion.degrade_depth`, family
   ``blur``: blurred and shifted edges, a small scale error, smooth noise), so it must decide edges from the image.

Each sample is a 64 x 64 crop around the object (mostly centred on a true occlusion edge). The loss is binary
cross-entropy over the object's pixels, weighted up in a 4-px band around true occlusion edges; training batches
get random flips and photometric jitter (contrast, brightness, colour balance, blur, noise), and AdamW's weight
decay, so the network keys on edges rather than on the procedural worlds' look. Metrics per evaluation step go to
``metrics.csv`` and ``curves.png`` in the run folder; the best checkpoint (lowest validation loss) is written
atomically to ``--out``.

The training loop is this file's own (seeding, best-checkpoint saving, CSV metrics): it was written before
``training.train_completer`` landed; the curves PNG is drawn by the shared :func:`training.curves.curves_png`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.cameras import Camera, intrinsics, pose, rotation_yaw_pitch
from core.files import atomic_write
from evaluation import worlds
from evaluation.occlusion import DegradeConfig, OcclusionCounts, degrade_depth, occlusion_edge_band, score_view
from models.occlusion import (
    DEFAULT_WEIGHTS,
    SIZE_MULTIPLE,
    OcclusionNet,
    OcclusionNetConfig,
    occlusion_features,
    parameter_count,
    save_occlusion_weights,
)
from pipeline.objects import ObjectSpec, build_object, render_object
from training.curves import curves_png

VALIDATION_SEED_OFFSET = 1_000_003
"""Validation worlds use seeds this far from the training seed: no view is shared."""
MIN_OBJECT_PIXELS = 40
"""A sample needs at least this many object pixels (smaller objects teach nothing about edges)."""
OBJECT_TRIES = 8
JITTER_CONTRAST = (0.6, 1.4)
"""Range of the random contrast factor of training RGB."""
JITTER_BRIGHTNESS = 0.15
"""Largest random brightness offset."""
JITTER_GAIN = 0.15
"""Largest random per-channel gain change (colour balance)."""
JITTER_BLUR_SHARE = 0.3
"""Share of batches whose RGB is blurred by a 3 x 3 binomial filter (softer, anti-aliased photos)."""
JITTER_NOISE = 0.03
"""Largest standard deviation of the added pixel noise."""
CURVE_TRAIN_KEYS = ("train_loss", "val_loss")
"""Left panel of curves.png (log scale)."""
CURVE_VAL_KEYS = ("val_band_acc", "hard_band_acc", "val_iou", "hard_iou")
"""Right panel: the network's edge-band accuracy and IoU against the hard test's on the same validation crops."""
WARMUP_STEPS = 20
"""Linear learning-rate warm-up; its pace also sets how many steps fit the time budget."""
FINISH_MARGIN_S = 20.0
"""Seconds kept free at the end of the budget for the last evaluation and the final save."""
EDGE_CROP_SHARE = 0.8
"""Share of training crops centred on a true occlusion edge (when the object has one); the rest are centred on
a random object pixel, so fully visible and fully hidden objects are learned too."""
"""Random placements tried per wanted object before the view gives up on it."""
WORLD_WEIGHTS = {"room": 0.5, "street": 0.25, "landscape": 0.25}
"""Indoor scenes first: WorldStitch's examples and the held-out bathroom are rooms; outdoor adds far depth."""
CAMERA_REGIONS = {
    "room": ((-1.5, 1.5), (-0.4, 0.4), (-1.0, 3.5)),
    "street": ((-3.0, 3.0), (-0.3, 0.5), (-5.0, 30.0)),
    "landscape": ((-4.0, 4.0), (-0.3, 0.5), (-5.0, 8.0)),
}
"""Where cameras may stand in each world (x, y, z ranges; y is down): inside the room, on the road, on the grass."""


@dataclass(frozen=True)
class TrainOcclusionConfig:
    """One training run."""

    seed: int = 0
    """Seeds worlds, cameras, objects, degradations, network initialisation and batches."""
    views: int = 150
    """Procedural training views rendered (the costly part of the data: ~0.2 s of CPU each)."""
    objects_per_view: int = 12
    """Random virtual objects per view (each one a training sample)."""
    val_views: int = 12
    """Validation views (from seeds disjoint from training)."""
    size: tuple[int, int] = (192, 144)
    """(width, height) of the views; multiples of 16."""
    crop: int = 64
    """Side of the square crop kept per object (multiple of 16): most of a view lies off the object and teaches
    nothing, so each sample is a crop around the object's occlusion edge (see :data:`EDGE_CROP_SHARE`)."""
    batch_size: int = 24
    """Crops per optimisation step."""
    minutes: float = 12.0
    """Wall-clock budget of the whole run, data generation included; the step count follows from the pace of the
    first steps and the time left, unless ``steps`` is given."""
    steps: int | None = None
    """Exact number of steps (reproducible schedule); None = as many as ``minutes`` allows."""
    lr: float = 3e-3
    """Peak AdamW learning rate (cosine decay to 5 % of it)."""
    weight_decay: float = 1e-3
    """AdamW weight decay: keeps the small network from memorising the procedural worlds."""
    edge_weight: float = 4.0
    """Extra loss weight of pixels within 4 px of a true occlusion edge (1 + edge_weight)."""
    eval_every: int = 50
    """Steps between validation passes (metrics row + checkpoint)."""
    widths: tuple[int, int, int] = OcclusionNetConfig().widths
    """Network widths (see :class:`models.occlusion.OcclusionNetConfig`)."""
    out: Path = DEFAULT_WEIGHTS
    """Where the best weights go (safetensors, written atomically)."""
    run_dir: Path = Path("outputs/train_occlusion")
    """Folder for metrics.csv and curves.png."""
    threads: int = 1
    """torch CPU threads (the project's machines are shared)."""


class Sample(NamedTuple):
    """One training example: a view, one object, its labels."""

    features: Tensor  # [8, H, W] float16, see models.occlusion.occlusion_features
    label: Tensor  # [H, W] bool, True = the scene hides the object
    weight: Tensor  # [H, W] float16 loss weight, 0 off the object
    hard: Tensor  # [H, W] bool, the hard depth test on the degraded depth (the baseline's answer)


# --------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------


def random_world(
    rng: np.random.Generator,
    name: str,
    camera_center: np.ndarray,  # [3]
    forward: np.ndarray,  # [3] the camera's viewing direction
) -> worlds.SyntheticWorld:
    """A built-in world plus 0-4 random boxes/spheres 1-5 m in front of the camera."""
    base = worlds.make_world(name)
    extra = []
    for _ in range(int(rng.integers(0, 5))):
        direction = forward + rng.normal(0, 0.35, 3)
        direction /= np.linalg.norm(direction)
        center = camera_center + direction * rng.uniform(1.0, 5.0)
        color = tuple(float(c) for c in rng.uniform(0.1, 0.95, 3))
        if rng.random() < 0.5:
            albedo = worlds.plain(color, grain=float(rng.uniform(0.02, 0.3)), seed=int(rng.integers(1 << 20)))
        else:
            other = tuple(float(c) for c in rng.uniform(0.1, 0.95, 3))
            albedo = worlds.checker(float(rng.uniform(0.03, 0.2)), color, other, seed=int(rng.integers(1 << 20)))
        material = worlds.Material(albedo)
        if rng.random() < 0.5:
            half = rng.uniform(0.08, 0.6, 3)
            lo = tuple(float(c) for c in center - half)
            hi = tuple(float(c) for c in center + half)
            extra.append(worlds.Box(lo, hi, material))
        else:
            extra.append(worlds.Sphere(tuple(float(c) for c in center), float(rng.uniform(0.08, 0.5)), material))
    return dataclasses.replace(base, primitives=base.primitives + tuple(extra))


def random_camera(rng: np.random.Generator, name: str, size: tuple[int, int]) -> Camera:
    width, height = size
    (x0, x1), (y0, y1), (z0, z1) = CAMERA_REGIONS[name]
    center = torch.tensor([rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(z0, z1)])
    rotation = rotation_yaw_pitch(float(rng.uniform(0, 360)), float(rng.uniform(-25, 15)))
    K = intrinsics(height, width, float(rng.uniform(45, 80)))
    return Camera(K, pose(rotation, center), height, width)


def random_object(rng: np.random.Generator, camera: Camera, depth: Tensor) -> ObjectSpec:
    """A random primitive along the ray of a random pixel, at 0.3-1.25x the scene depth there."""
    height, width = depth.shape
    row = int(rng.integers(height // 10, height - height // 10))
    col = int(rng.integers(width // 10, width - width // 10))
    scene_z = float(depth[row, col])
    factor = rng.uniform(0.3, 0.6) if rng.random() < 0.15 else rng.uniform(0.55, 1.25)
    z = max(scene_z * factor, 0.3)
    K = camera.K.double()
    cam = torch.tensor(
        [(col + 0.5 - float(K[0, 2])) / float(K[0, 0]) * z, (row + 0.5 - float(K[1, 2])) / float(K[1, 1]) * z, z]
    )
    c2w = camera.cam_to_world.double()
    center = c2w[:3, :3] @ cam.double() + c2w[:3, 3]
    size = z * rng.uniform(0.08, 0.45)
    return ObjectSpec(
        kind=str(rng.choice(["box", "sphere", "cylinder"])),
        position=tuple(float(c) for c in center),
        rotation_deg=(float(rng.uniform(0, 360)), float(rng.uniform(-30, 30)), float(rng.uniform(-30, 30))),
        scale=tuple(float(size * s) for s in rng.uniform(0.5, 1.5, 3)),
        color=tuple(float(c) for c in rng.uniform(0.05, 0.95, 3)),
    )


def view_samples(seed: int, config: TrainOcclusionConfig, degrade: DegradeConfig = DegradeConfig()) -> list[Sample]:
    """All samples of one random view (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    name = str(rng.choice(list(WORLD_WEIGHTS), p=np.array(list(WORLD_WEIGHTS.values()))))
    camera = random_camera(rng, name, config.size)
    c2w = camera.cam_to_world.double().numpy()
    world = random_world(rng, name, c2w[:3, 3], c2w[:3, 2])
    rgb, depth = world.render(camera)
    samples = []
    for _ in range(config.objects_per_view):
        for _ in range(OBJECT_TRIES):
            render = render_object(build_object(random_object(rng, camera, depth)), camera)
            mask = render.coverage > 0
            if int(mask.sum()) >= MIN_OBJECT_PIXELS:
                break
        else:
            continue
        scene = degrade_depth(depth, rng, "blur", degrade)
        label = mask & (depth > 0) & (depth < render.depth)
        band = occlusion_edge_band(label, mask)
        weight = mask.float() * (1.0 + config.edge_weight * band.float())
        hard = mask & (scene > 0) & (scene < render.depth)
        features = occlusion_features(rgb, render.depth, render.coverage, scene)  # normalised over the whole view
        window = _crop_window(rng, band if bool(band.any()) and rng.random() < EDGE_CROP_SHARE else mask, config)
        samples.append(
            Sample(features[:, window[0], window[1]].half(), label[window], weight[window].half(), hard[window])
        )
    return samples


def _crop_window(rng: np.random.Generator, where: Tensor, config: TrainOcclusionConfig) -> tuple[slice, slice]:
    """A ``crop x crop`` window inside the view, centred (as far as the border allows) on a random True pixel."""
    height, width = where.shape
    side_v, side_u = min(config.crop, height), min(config.crop, width)
    rows, cols = torch.nonzero(where, as_tuple=True)
    pick = int(rng.integers(len(rows)))
    v0 = min(max(int(rows[pick]) - side_v // 2, 0), height - side_v)
    u0 = min(max(int(cols[pick]) - side_u // 2, 0), width - side_u)
    return slice(v0, v0 + side_v), slice(u0, u0 + side_u)


def make_dataset(first_seed: int, views: int, config: TrainOcclusionConfig, log=print) -> list[Sample]:
    samples: list[Sample] = []
    start = time.perf_counter()
    for i in range(views):
        samples += view_samples(first_seed + i, config)
        if (i + 1) % 50 == 0:
            log(f"  {i + 1}/{views} views, {len(samples)} samples, {time.perf_counter() - start:.0f} s")
    return samples


# --------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------


def weighted_bce(logits: Tensor, label: Tensor, weight: Tensor) -> Tensor:  # [B, 1, H, W], [B, H, W], [B, H, W]
    loss = F.binary_cross_entropy_with_logits(logits[:, 0], label.float(), reduction="none")
    return (loss * weight).sum() / weight.sum().clamp(min=1.0)


def _batch(samples: list[Sample], index: list[int], flip: bool = False):
    features = torch.stack([samples[i].features for i in index]).float()
    label = torch.stack([samples[i].label for i in index])
    weight = torch.stack([samples[i].weight for i in index]).float()
    if flip:
        features, label, weight = features.flip(-1), label.flip(-1), weight.flip(-1)
    return features, label, weight


def photometric_jitter(features: Tensor, rng: np.random.Generator) -> Tensor:  # [B, 8, H, W] -> [B, 8, H, W]
    """Random contrast, brightness, colour balance, blur and noise on the RGB channels (channels 0-2 hold
    ``rgb - 0.5``): the procedural worlds' flat shading and textures should not be what the network keys on."""
    batch = features.shape[0]
    rgb = features[:, :3]
    contrast = torch.from_numpy(rng.uniform(*JITTER_CONTRAST, (batch, 1, 1, 1))).float()
    brightness = torch.from_numpy(rng.uniform(-JITTER_BRIGHTNESS, JITTER_BRIGHTNESS, (batch, 1, 1, 1))).float()
    gain = torch.from_numpy(rng.uniform(1 - JITTER_GAIN, 1 + JITTER_GAIN, (batch, 3, 1, 1))).float()
    rgb = ((rgb + 0.5) * gain - 0.5) * contrast + brightness
    if rng.random() < JITTER_BLUR_SHARE:
        kernel = torch.tensor([0.25, 0.5, 0.25])
        kernel = (kernel[:, None] * kernel[None]).expand(3, 1, 3, 3)
        rgb = F.conv2d(F.pad(rgb, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    noise = torch.from_numpy(rng.uniform(0, JITTER_NOISE, (batch, 1, 1, 1))).float()
    rgb = rgb + noise * torch.from_numpy(rng.standard_normal(rgb.shape)).float()
    return torch.cat([rgb.clamp(-0.5, 0.5), features[:, 3:]], dim=1)


def evaluate(net: OcclusionNet, samples: list[Sample], batch_size: int) -> dict[str, float]:
    """Validation loss and scores of the network and of the hard test on degraded depth."""
    net.eval()
    learned, hard = OcclusionCounts(), OcclusionCounts()
    total_loss, total_weight = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            index = list(range(start, min(start + batch_size, len(samples))))
            features, label, weight = _batch(samples, index)
            logits = net(features)
            total_loss += float(weighted_bce(logits, label, weight)) * float(weight.sum())
            total_weight += float(weight.sum())
            for j, i in enumerate(index):
                mask = samples[i].weight > 0
                learned.add(score_view(logits[j, 0] > 0, label[j], mask))
                hard.add(score_view(samples[i].hard, label[j], mask))
    net.train()
    return {
        "val_loss": total_loss / max(total_weight, 1.0),
        "val_iou": learned.iou,
        "val_band_acc": learned.band_accuracy,
        "val_acc": learned.accuracy,
        "hard_iou": hard.iou,
        "hard_band_acc": hard.band_accuracy,
        "hard_acc": hard.accuracy,
    }


class TrainResult(NamedTuple):
    net: OcclusionNet
    history: list[dict[str, float]]  # one row per evaluation
    steps: int
    seconds: float


def train(
    config: TrainOcclusionConfig,
    train_samples: list[Sample],
    val_samples: list[Sample],
    log=print,
    deadline: float | None = None,
) -> TrainResult:
    """Optimise a fresh network; writes the best checkpoint to ``config.out`` and metrics to ``config.run_dir``.

    Args:
        config: the run's settings.
        train_samples, val_samples: from :func:`make_dataset`.
        log: receives progress lines.
        deadline: ``time.perf_counter()`` value by which the run must end (data generation already spent part of
            the budget); None = ``config.minutes`` from now. Ignored when ``config.steps`` is set.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 17)
    net = OcclusionNet(OcclusionNetConfig(widths=config.widths))
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: list[dict[str, float]] = []
    best = math.inf
    planned = config.steps
    running, seen = 0.0, 0
    start = time.perf_counter()
    deadline = deadline if deadline is not None else start + 60 * config.minutes
    step = 0
    config.run_dir.mkdir(parents=True, exist_ok=True)
    row = {
        "step": 0,
        "seconds": 0.0,
        "train_loss": float("nan"),
        "lr": config.lr,
        **evaluate(net, val_samples, config.batch_size),
    }
    eval_seconds = time.perf_counter() - start
    history.append(row)
    log(_format(row))
    loop_start = time.perf_counter()
    timed = config.steps is None
    lr = config.lr
    while True:
        now = time.perf_counter()
        if timed and step >= WARMUP_STEPS and (planned is None or step % config.eval_every == 0):
            # the pace so far (on a shared machine it drifts) sets how many steps still fit before the deadline
            per_step = (now - loop_start) / step + eval_seconds / config.eval_every
            planned = step + max(int((deadline - now - FINISH_MARGIN_S) / per_step), 1)
            if step == WARMUP_STEPS:
                log(f"  {per_step:.3f} s/step with evaluations: planning {planned} steps")
        if planned is not None and step >= planned or timed and now > deadline - FINISH_MARGIN_S:
            if not history or history[-1]["step"] != step:
                history.append(_evaluation_row(net, val_samples, config, step, start, running, seen, lr))
                log(_format(history[-1]))
                _write_metrics(config.run_dir, history)
                best = _keep_best(net, history[-1], best, config)
            break
        if step < WARMUP_STEPS:
            lr = config.lr * (step + 1) / WARMUP_STEPS
        else:
            progress = min((step - WARMUP_STEPS) / max(planned - WARMUP_STEPS, 1), 1.0)
            lr = config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = rng.choice(len(train_samples), size=min(config.batch_size, len(train_samples)), replace=False)
        features, label, weight = _batch(train_samples, index.tolist(), flip=bool(rng.random() < 0.5))
        features = photometric_jitter(features, rng)
        loss = weighted_bce(net(features), label, weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running += float(loss.detach())
        seen += 1
        step += 1
        if step % config.eval_every == 0:
            history.append(_evaluation_row(net, val_samples, config, step, start, running, seen, lr))
            running, seen = 0.0, 0
            log(_format(history[-1]))
            _write_metrics(config.run_dir, history)
            best = _keep_best(net, history[-1], best, config)
    return TrainResult(net, history, step, time.perf_counter() - start)


def _evaluation_row(net, val_samples, config, step, start, running, seen, lr) -> dict[str, float]:
    return {
        "step": step,
        "seconds": time.perf_counter() - start,
        "train_loss": running / seen if seen else float("nan"),
        "lr": lr,
        **evaluate(net, val_samples, config.batch_size),
    }


def _keep_best(net: OcclusionNet, row: dict[str, float], best: float, config: TrainOcclusionConfig) -> float:
    """Save the network when its validation loss is the lowest so far; returns the best loss."""
    if row["val_loss"] >= best:
        return best
    extra = {"step": str(int(row["step"])), "val_loss": f"{row['val_loss']:.5f}", "seed": str(config.seed)}
    save_occlusion_weights(net, config.out, extra)
    return row["val_loss"]


def _format(row: dict[str, float]) -> str:
    return (
        f"step {int(row['step']):5d}  {row['seconds']:6.0f} s  train {row['train_loss']:.4f}  val {row['val_loss']:.4f}"
        f"  IoU {row['val_iou']:.3f} (hard {row['hard_iou']:.3f})"
        f"  edge acc {row['val_band_acc']:.3f} (hard {row['hard_band_acc']:.3f})"
    )


def _write_metrics(run_dir: Path, history: list[dict[str, float]]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(history[0]))
    writer.writeheader()
    for row in history:
        writer.writerow({k: f"{v:.6g}" for k, v in row.items()})
    atomic_write(run_dir / "metrics.csv", text.getvalue().encode())
    atomic_write(run_dir / "curves.png", curves_png(history, CURVE_TRAIN_KEYS, CURVE_VAL_KEYS, "occlusion"))


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> TrainOcclusionConfig:
    defaults = TrainOcclusionConfig()
    parser = argparse.ArgumentParser(prog="python -m training.train_occlusion", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--views", type=int, default=defaults.views, help="training views")
    parser.add_argument("--objects-per-view", type=int, default=defaults.objects_per_view)
    parser.add_argument("--val-views", type=int, default=defaults.val_views)
    parser.add_argument("--size", type=int, nargs=2, default=list(defaults.size), metavar=("W", "H"))
    parser.add_argument("--crop", type=int, default=defaults.crop, help="crop side per sample")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--minutes", type=float, default=defaults.minutes, help="wall-clock budget, data included")
    parser.add_argument("--steps", type=int, default=None, help="exact step count (overrides --minutes)")
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every)
    parser.add_argument("--out", type=Path, default=defaults.out, help="weights file to write")
    parser.add_argument("--run-dir", type=Path, default=defaults.run_dir, help="metrics.csv and curves.png")
    parser.add_argument("--threads", type=int, default=defaults.threads)
    args = parser.parse_args(argv)
    width, height = args.size
    for value, name in ((width, "--size"), (height, "--size"), (args.crop, "--crop")):
        if value % SIZE_MULTIPLE or value < 2 * SIZE_MULTIPLE:
            parser.error(f"{name} must be multiples of {SIZE_MULTIPLE} and at least {2 * SIZE_MULTIPLE}")
    for name in ("views", "objects_per_view", "val_views", "batch_size", "eval_every", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    return TrainOcclusionConfig(
        seed=args.seed,
        views=args.views,
        objects_per_view=args.objects_per_view,
        val_views=args.val_views,
        size=(width, height),
        crop=args.crop,
        batch_size=args.batch_size,
        minutes=args.minutes,
        steps=args.steps,
        lr=args.lr,
        eval_every=args.eval_every,
        out=args.out,
        run_dir=args.run_dir,
        threads=args.threads,
    )


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    torch.set_num_threads(config.threads)
    start = time.perf_counter()
    print(f"data: {config.views} training + {config.val_views} validation views at {config.size[0]}x{config.size[1]}")
    train_samples = make_dataset(config.seed * 100_000, config.views, config)
    val_samples = make_dataset(config.seed * 100_000 + VALIDATION_SEED_OFFSET, config.val_views, config)
    data_seconds = time.perf_counter() - start
    print(f"  {len(train_samples)} training and {len(val_samples)} validation samples in {data_seconds:.0f} s")
    net_size = parameter_count(OcclusionNet(OcclusionNetConfig(widths=config.widths)))
    budget = f"{config.steps} steps" if config.steps else f"the rest of {config.minutes:g} min"
    print(f"training a {net_size}-parameter network for {budget}")
    result = train(config, train_samples, val_samples, deadline=start + 60 * config.minutes)
    best = min(result.history, key=lambda row: row["val_loss"])
    print(
        f"done: {result.steps} steps in {result.seconds:.0f} s (+{data_seconds:.0f} s data, pid {os.getpid()});"
        f" best step {int(best['step'])}: {_format(best)}"
    )
    print(f"weights: {config.out}  metrics: {config.run_dir / 'metrics.csv'}")


if __name__ == "__main__":
    main()
