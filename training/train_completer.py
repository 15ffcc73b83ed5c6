"""Train a depth completer: ``python -m training.train_completer [--flags]`` or, unchanged,
``accelerate launch [--num_processes N] -m training.train_completer [--flags]``.

    # the shipped light completer (models/weights/README.md has the exact command and its figures)
    python -m training.train_completer --out runs/light
    # teacher distillation (Invisible Stitch stage 1) on a photo folder, the teacher from the model registry
    python -m training.train_completer --distill-images photos/ --teacher da2-metric-indoor --procedural-pairs 0
    # self-training (stage 2) on scenes the pipeline grew (python -m pipeline ... --out DIR), with consistency
    python -m training.train_completer --grown-scenes out/scene1 out/scene2 --consistency-weight 0.2
    # fine-tune Invisible Stitch's 5-channel ZoeDepth (GPU; mixed precision from accelerate)
    accelerate launch -m training.train_completer --model zoedepth --zoedepth path/to/converted --batch-size 4

What it does, in order:

1. Seeds everything from ``--seed``; builds (or loads from the run folder's cache) the training samples of every
   source given (:mod:`training.data`) and a validation set of procedural pairs from its own training seeds.
2. Trains with AdamW, linear warm-up then cosine decay, gradient clipping; the loss is :func:`training.losses.log_l1`
   (unknown pixels weighted 1, known pixels ``--known-weight``) + ``--gradient-weight`` × gradient matching +
   ``--consistency-weight`` × SC-Depth's geometry consistency. Batches are a pure function of (seed, step) and
   horizontal flips are drawn from (seed, step): a resumed run continues exactly as the uninterrupted one would.
3. Every ``--log-every`` steps appends to ``metrics.csv`` (and TensorBoard when installed); every ``--eval-every``
   steps scores the validation set, rewrites ``curves.png`` and writes ``checkpoint.pt`` atomically.
4. At the end (``--steps`` reached, or the ``--max-minutes`` budget spent) writes the weights: a light completer's
   ``light_completer.safetensors``, or a ZoeDepth's transformers folder ``zoedepth_completer/``.

Under ``accelerate launch`` with several processes each takes its share of every global batch (the batch is the
same as with one process), gradients are averaged by accelerate, and only the main process writes files.
Mixed precision (``--mixed-precision auto``) is bf16 / fp16 on CUDA and off on CPU.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from core.files import atomic_path, atomic_write
from evaluation.pairs import TRAINING_SEED_MIN
from models.light_completer import LightNetConfig
from training.completers import LightModel, ZoeDepthModel
from training.curves import curves_png
from training.data import SampleSet, concat, distillation_set, grown_scene_set, procedural_set
from training.losses import geometry_consistency, gradient_matching, log_l1

VALIDATION_SEED_OFFSET = 500_000
"""Validation pairs come from training-range worlds this far above ``--seed``: never trained on, never benchmark."""

DATA_LAYOUT = 2
"""Version of the cached sample layout (2: with the harmonic fill); older caches are rebuilt, not misread."""

FINAL_LR_FRACTION = 0.05
"""Cosine decay ends at 5 % of the peak learning rate."""

GRAD_CLIP_NORM = 1.0
"""Gradient-norm clip: the first steps on an untrained head can see large log errors (far sky pixels)."""

TRAIN_KEYS = ("loss", "log_l1", "gradient", "consistency")
VAL_KEYS = ("val_absrel_ext", "val_absrel_known", "val_log_l1")
CSV_FIELDS = ("step", "epoch", "lr", *TRAIN_KEYS, *VAL_KEYS, "wall_s", "cpu_s")


@dataclass
class TrainConfig:
    """One training run of a depth completer (every field is a command-line flag)."""

    out: Path = Path("runs/light")
    """Run folder: data cache, ``checkpoint.pt``, ``metrics.csv``, ``curves.png`` and the final weights."""

    model: Literal["light", "zoedepth"] = "light"
    """``light``: the small KBNet-style network (:mod:`models.light_completer`); ``zoedepth``: fine-tune Invisible
    Stitch's 5-channel ZoeDepth given by ``--zoedepth`` (a GPU job at real size)."""

    zoedepth: Path | None = None
    """Folder of a 5-channel ZoeDepth in transformers layout (``--model zoedepth`` only), e.g. the converted
    Invisible Stitch checkpoint or ``python -m models.tiny``'s ``completer``."""

    widths: tuple[int, ...] = LightNetConfig().widths
    """Channel widths of the light network at 1, 1/2, 1/4, ... of the working resolution."""

    harmonic_input: bool = LightNetConfig().harmonic_input
    """Light network: feed the harmonic interpolation of the known log-depth and predict a correction of it."""

    seed: int = TRAINING_SEED_MIN
    """Seeds the initialisation, batches, flips and the first procedural world (>= 1000: seeds 0-99 are the
    benchmark's held-out worlds)."""

    size: tuple[int, int] = (128, 96)
    """(width, height) of the training samples; the light network then works at this width."""

    procedural_pairs: int = 1200
    """Supervised pairs from procedural worlds with true depth (0 = none)."""

    distill_images: Path | None = None
    """An image folder for teacher distillation (Invisible Stitch stage 1); None = no distillation data."""

    teacher: str = "prior"
    """The teacher depth estimator, any ``--depth-model`` name of the registry: ``prior``, ``da2-metric-indoor``,
    ``zoedepth``, a transformers folder..."""

    masks_per_image: int = 4
    """Distillation samples per image (side bands and random shapes cycle)."""

    distill_hfov_deg: float = 60.0
    """Horizontal field of view assumed for distillation images (a photo folder has no intrinsics)."""

    grown_scenes: tuple[Path, ...] = ()
    """Folders written by ``python -m pipeline ... --out DIR`` for self-training (Invisible Stitch stage 2)."""

    data_workers: int = 2
    """Processes drawing procedural pairs (the data does not depend on it)."""

    val_pairs: int = 48
    """Procedural validation pairs (training-range seeds, disjoint from the training worlds)."""

    steps: int = 2000
    """Optimiser steps."""

    max_minutes: float | None = None
    """Wall-clock budget for the whole run (data included); the run stops early and saves when it is spent."""

    stop_at: int | None = None
    """End this session after this step with a checkpoint (no final weights); running the same command again
    resumes there and continues exactly as one uninterrupted run (preemptible machines, split runs)."""

    batch_size: int = 8
    """Samples per optimiser step (over all processes together)."""

    lr: float = 2e-3
    """Peak learning rate (AdamW)."""

    weight_decay: float = 1e-4
    """AdamW weight decay."""

    warmup_steps: int = 100
    """Linear learning-rate warm-up."""

    known_weight: float = 0.2
    """Loss weight of known pixels relative to the unknown ones (the completer gets them as input)."""

    gradient_weight: float = 0.5
    """Weight of the multi-scale gradient-matching loss."""

    consistency_weight: float = 0.1
    """Weight of SC-Depth's geometry-consistency loss (samples with a second view only)."""

    flip: bool = True
    """Random horizontal flips (intrinsics and relative pose flipped with the image)."""

    log_every: int = 25
    """Steps between rows of ``metrics.csv``."""

    eval_every: int = 250
    """Steps between validations, checkpoints and curve plots."""

    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    """``auto``: bf16 (or fp16) on CUDA, none on CPU."""

    threads: int | None = None
    """torch CPU threads (None = torch's default)."""

    resume: bool = True
    """Continue from ``checkpoint.pt`` in ``--out`` when it is there."""

    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self):
        if self.seed < TRAINING_SEED_MIN:
            raise ValueError(f"seed must be >= {TRAINING_SEED_MIN} (seeds 0-99 are the benchmark's worlds)")
        if self.model == "zoedepth" and self.zoedepth is None:
            raise ValueError("--model zoedepth needs --zoedepth FOLDER (a 5-channel ZoeDepth in transformers layout)")
        if self.procedural_pairs <= 0 and self.distill_images is None and not self.grown_scenes:
            raise ValueError("no training data: give --procedural-pairs > 0, --distill-images or --grown-scenes")
        for name in ("steps", "batch_size", "log_every", "eval_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if any(int(s) % 16 or int(s) < 16 for s in self.size):
            raise ValueError(f"size must be multiples of 16 (the network's four stride-2 stages), got {self.size}")


def _jsonable(config: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(config), default=str))


def _data_key(config: TrainConfig) -> str:
    keys = ("seed", "size", "procedural_pairs", "distill_images", "teacher", "masks_per_image", "distill_hfov_deg")
    payload = {k: _jsonable(config)[k] for k in keys} | {"grown": [str(p) for p in config.grown_scenes]}
    payload["layout"] = DATA_LAYOUT
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def build_training_data(config: TrainConfig, log=print) -> SampleSet:
    """Every source the config names, concatenated (cached in the run folder by a hash of the data fields)."""
    cache = config.out / f"data-{_data_key(config)}.pt"
    if cache.is_file():
        log(f"data: cached {cache.name}")
        return SampleSet.load(cache)
    sets = []
    if config.procedural_pairs > 0:
        start = time.perf_counter()
        sets.append(procedural_set(config.seed, config.procedural_pairs, config.size, config.data_workers))
        log(f"data: {len(sets[-1])} procedural pairs in {time.perf_counter() - start:.0f} s")
    if config.distill_images is not None:
        from models.registry import build_estimator

        teacher = build_estimator(config.teacher, device="cpu" if not torch.cuda.is_available() else None)
        sets.append(
            distillation_set(
                config.distill_images,
                teacher,
                config.size,
                config.seed,
                config.masks_per_image,
                config.distill_hfov_deg,
            )
        )
        log(f"data: {len(sets[-1])} distillation samples from {config.distill_images} (teacher {config.teacher})")
    if config.grown_scenes:
        sets.append(grown_scene_set(config.grown_scenes, config.size))
        log(f"data: {len(sets[-1])} self-training pairs from {len(config.grown_scenes)} grown scene(s)")
    data = concat(sets)
    data.save(cache)
    return data


def build_validation_data(config: TrainConfig) -> SampleSet:
    cache = config.out / f"val{DATA_LAYOUT}-{config.seed}-{config.val_pairs}-{config.size[0]}x{config.size[1]}.pt"
    if cache.is_file():
        return SampleSet.load(cache)
    data = procedural_set(config.seed + VALIDATION_SEED_OFFSET, config.val_pairs, config.size, config.data_workers)
    data.save(cache)
    return data


def build_model(config: TrainConfig):
    if config.model == "zoedepth":
        return ZoeDepthModel.load(config.zoedepth)
    return LightModel(
        LightNetConfig(
            widths=tuple(config.widths), work_width=int(config.size[0]), harmonic_input=config.harmonic_input
        )
    )


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up to ``lr``, then cosine decay to :data:`FINAL_LR_FRACTION` of it at ``steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return config.lr * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


def batch_indices(config: TrainConfig, step: int, count: int) -> Tensor:  # -> [batch_size] long
    """The global batch of a step: a pure function of (seed, step), epochs are seeded permutations."""
    per_epoch = max(1, count // config.batch_size)
    epoch, within = divmod(step, per_epoch)
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    order = torch.randperm(count, generator=generator)
    if count < config.batch_size:
        order = order.repeat(math.ceil(config.batch_size / count))
    return order[within * config.batch_size : (within + 1) * config.batch_size]


@dataclass
class Batch:
    """A batch on the training device (float images, flips applied)."""

    image: Tensor  # [B, 3, H, W] float in [0, 1]
    known_depth: Tensor  # [B, H, W]
    known_mask: Tensor  # [B, H, W] bool
    target: Tensor  # [B, H, W]
    K: Tensor  # [B, 3, 3]
    depth_a: Tensor  # [B, H, W]
    K_a: Tensor  # [B, 3, 3]
    b_to_a: Tensor  # [B, 4, 4]
    has_pair: Tensor  # [B] bool
    dense_log: Tensor  # [B, H, W]


def make_batch(samples: SampleSet, flips: Tensor, device) -> Batch:  # flips [B] bool
    """Float images on ``device``; flipped samples are mirrored left-right with their intrinsics and pose."""
    image = samples.image.float() / 255.0
    known_depth, known_mask, target = samples.known_depth, samples.known_mask, samples.target
    K, b_to_a, dense_log = samples.K.clone(), samples.b_to_a.clone(), samples.dense_log.clone()
    if bool(flips.any()):
        width = image.shape[-1]
        f = flips
        image[f] = image[f].flip(-1)
        known_depth, known_mask, target = known_depth.clone(), known_mask.clone(), target.clone()
        known_depth[f], known_mask[f], target[f] = known_depth[f].flip(-1), known_mask[f].flip(-1), target[f].flip(-1)
        dense_log[f] = dense_log[f].flip(-1)  # the Laplace fill commutes with a mirror
        K[f, 0, 2] = width - K[f, 0, 2]
        # a mirrored B camera sees point (x, y, z) at (-x, y, z): B's frame -> A's is composed with that mirror
        mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
        b_to_a[f] = b_to_a[f] @ mirror
    return Batch(
        image.to(device),
        known_depth.to(device),
        known_mask.to(device),
        target.to(device),
        K.to(device),
        samples.depth_a.to(device),
        samples.K_a.to(device),
        b_to_a.to(device),
        samples.has_pair.to(device),
        dense_log.to(device),
    )


def compute_losses(model, batch: Batch, config: TrainConfig) -> dict[str, Tensor]:
    """The weighted loss and its parts for one batch."""
    pred_log = model(batch.image, batch.known_depth, batch.known_mask, batch.K, batch.dense_log).float()
    weight = torch.where(batch.known_mask, torch.full_like(pred_log, config.known_weight), torch.ones_like(pred_log))
    parts = {"log_l1": log_l1(pred_log, batch.target, weight)}
    parts["gradient"] = gradient_matching(pred_log, batch.target) if config.gradient_weight else pred_log.new_zeros(())
    if config.consistency_weight and bool(batch.has_pair.any()):
        parts["consistency"] = geometry_consistency(
            pred_log.exp(), batch.K, batch.depth_a, batch.K_a, batch.b_to_a, batch.has_pair
        )
    else:
        parts["consistency"] = pred_log.new_zeros(())
    parts["loss"] = (
        parts["log_l1"] + config.gradient_weight * parts["gradient"] + config.consistency_weight * parts["consistency"]
    )
    return parts


@torch.no_grad()
def validate(model, data: SampleSet, config: TrainConfig, device) -> dict[str, float]:
    """AbsRel of the raw prediction on extrapolated and on known pixels, and the log-L1, over the validation set."""
    was_training = model.training
    model.eval()
    sums = {"ext_err": 0.0, "ext_n": 0.0, "known_err": 0.0, "known_n": 0.0, "l1": 0.0, "l1_n": 0.0}
    for start in range(0, len(data), config.batch_size):
        index = torch.arange(start, min(len(data), start + config.batch_size))
        batch = make_batch(data.select(index), torch.zeros(len(index), dtype=torch.bool), device)
        pred_log = model(batch.image, batch.known_depth, batch.known_mask, batch.K, batch.dense_log).float()
        valid = batch.target > 0
        rel = ((pred_log.exp() - batch.target).abs() / batch.target.clamp_min(1e-6)) * valid
        ext, known = valid & ~batch.known_mask, valid & batch.known_mask
        sums["ext_err"] += float(rel[ext].sum())
        sums["ext_n"] += float(ext.sum())
        sums["known_err"] += float(rel[known].sum())
        sums["known_n"] += float(known.sum())
        sums["l1"] += float((pred_log - batch.target.clamp_min(1e-3).log()).abs()[valid].sum())
        sums["l1_n"] += float(valid.sum())
    model.train(was_training)
    return {
        "val_absrel_ext": sums["ext_err"] / max(1.0, sums["ext_n"]),
        "val_absrel_known": sums["known_err"] / max(1.0, sums["known_n"]),
        "val_log_l1": sums["l1"] / max(1.0, sums["l1_n"]),
    }


def _read_rows(path: Path, up_to_step: int) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [row for row in csv.DictReader(handle) if int(row["step"]) <= up_to_step]


def _write_rows(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in CSV_FIELDS})
    atomic_write(path, buffer.getvalue().encode())


def _mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional: metrics.csv and curves.png always exist
        return None
    return SummaryWriter(str(folder / "tensorboard"))


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its finished children (the pair-drawing workers): on a
    shared machine the wall clock measures the neighbours' load, this measures the run."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class RunResult:
    """What a finished (or budget-stopped) run produced."""

    steps: int
    """Optimiser steps taken in total (including those before a resume)."""

    weights: Path | None
    """The final weights (None on non-main processes)."""

    metrics: list[dict] = field(default_factory=list)
    """The rows of ``metrics.csv``."""

    wall_s: float = 0.0
    """Wall-clock seconds over all sessions of the run (data included)."""


def train(config: TrainConfig, log=print) -> RunResult:
    """Run the training described by ``config`` (see the module docstring)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    run_start, cpu_start = time.perf_counter(), cpu_seconds()
    if config.threads:
        torch.set_num_threads(int(config.threads))
    accelerator = Accelerator(
        mixed_precision=_mixed_precision(config.mixed_precision), cpu=not torch.cuda.is_available()
    )
    main = accelerator.is_main_process
    if config.batch_size % accelerator.num_processes:
        raise ValueError(f"batch_size {config.batch_size} must divide among {accelerator.num_processes} processes")
    config.out.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    say = log if main else (lambda *_: None)

    # 1. data (the main process builds the caches, the others read them)
    with accelerator.main_process_first():
        data = build_training_data(config, say)
        val = build_validation_data(config)
    say(f"data: {len(data)} training samples, {len(val)} validation pairs, {config.size[0]}x{config.size[1]}")

    # 2. model, optimiser, resume
    torch.manual_seed(config.seed)
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    checkpoint_path = config.out / "checkpoint.pt"
    step, previous_wall, previous_cpu = 0, 0.0, 0.0
    if config.resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        old = state["config"]
        if (old["model"], tuple(old["widths"]), old.get("harmonic_input", False)) != (
            config.model,
            tuple(config.widths),
            config.harmonic_input,
        ):
            raise ValueError(f"{checkpoint_path} is from a different model; use another --out or --no-resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, previous_wall, previous_cpu = int(state["step"]), float(state["wall_s"]), float(state.get("cpu_s", 0.0))
        say(f"resumed from {checkpoint_path} at step {step}")
    model, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device
    rows = _read_rows(config.out / "metrics.csv", step) if main else []
    writer = _tensorboard(config.out) if main else None

    # 3. the loop
    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=step, disable=not (main and config.progress), desc="train", unit="step")
    window: dict[str, list[float]] = {k: [] for k in TRAIN_KEYS}
    per_process = config.batch_size // accelerator.num_processes
    rank = accelerator.process_index
    budget_s = None if config.max_minutes is None else 60.0 * config.max_minutes
    stopped_early = False

    def wall() -> float:
        return previous_wall + time.perf_counter() - run_start

    def cpu() -> float:
        return previous_cpu + cpu_seconds() - cpu_start

    def checkpoint(val_metrics: dict[str, float] | None) -> None:
        if not main:
            return
        if val_metrics is not None:
            epoch = step * config.batch_size / len(data)
            rows.append({"step": step, "epoch": epoch, **val_metrics, "wall_s": wall(), "cpu_s": cpu()})
        state = {
            "model": accelerator.unwrap_model(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "wall_s": wall(),
            "cpu_s": cpu(),
            "config": _jsonable(config),
        }
        with atomic_path(checkpoint_path, suffix=".pt") as temp:
            torch.save(state, temp)
        _write_rows(config.out / "metrics.csv", rows)
        atomic_write(config.out / "curves.png", curves_png(rows, TRAIN_KEYS, VAL_KEYS, title=config.model))

    if step == 0 and main:  # the starting point of the validation curve (validation draws no random numbers)
        rows.append({"step": 0, "epoch": 0.0, **validate(model, val, config, device), "wall_s": wall(), "cpu_s": cpu()})
    model.train()
    paused = False
    while step < config.steps:
        if budget_s is not None and wall() > budget_s:
            stopped_early = True
            break
        if config.stop_at is not None and step >= config.stop_at:
            paused = True
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        index = batch_indices(config, step, len(data))[rank * per_process : (rank + 1) * per_process]
        generator = torch.Generator().manual_seed(config.seed * 7_919 + step)
        flips = (torch.rand(config.batch_size, generator=generator) < 0.5)[
            rank * per_process : (rank + 1) * per_process
        ]
        batch = make_batch(data.select(index), flips if config.flip else torch.zeros_like(flips), device)
        with accelerator.autocast():
            parts = compute_losses(model, batch, config)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(parts["loss"])
        accelerator.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
        optimizer.step()
        step += 1
        bar.update(1)
        for key in TRAIN_KEYS:
            window[key].append(float(accelerator.reduce(parts[key].detach(), reduction="mean")))
        if step % config.log_every == 0 or step == config.steps:
            row = {key: sum(v) / len(v) for key, v in window.items() if v}
            row.update(step=step, epoch=step * config.batch_size / len(data), lr=learning_rate(config, step - 1))
            row["wall_s"], row["cpu_s"] = wall(), cpu()
            window = {k: [] for k in TRAIN_KEYS}
            if main:
                rows.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                if writer is not None:
                    for key in TRAIN_KEYS:
                        writer.add_scalar(f"train/{key}", row[key], step)
        if step % config.eval_every == 0 or step == config.steps:
            metrics = validate(accelerator.unwrap_model(model), val, config, device) if main else None
            if main and writer is not None:
                for key, value in metrics.items():
                    writer.add_scalar(f"val/{key}", value, step)
            checkpoint(metrics)
            if main:
                say(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f", {wall():.0f} s")
    bar.close()
    if stopped_early or paused:
        reason = f"time budget of {config.max_minutes} min spent" if stopped_early else "--stop-at reached"
        say(f"{reason} at step {step}: saving {checkpoint_path}")
        checkpoint(validate(accelerator.unwrap_model(model), val, config, device) if main else None)
    if paused:
        accelerator.end_training()
        return RunResult(step, None, rows, wall())

    # 4. final weights
    accelerator.wait_for_everyone()
    weights = None
    if main:
        last_val = next((r for r in reversed(rows) if r.get("val_absrel_ext") not in (None, "")), {})
        extra = {
            "steps": str(step),
            "seed": str(config.seed),
            "wall_s": f"{wall():.0f}",
            "cpu_s": f"{cpu():.0f}",
            "command": " ".join(["python -m training.train_completer", *sys.argv[1:]]),
            "val_absrel_ext": str(last_val.get("val_absrel_ext", "")),
            "training_config": json.dumps(_jsonable(config)),
        }
        weights = accelerator.unwrap_model(model).save(config.out, extra)
        say(f"wrote {weights} after {step} steps, {wall():.0f} s wall, {cpu():.0f} s CPU")
    if writer is not None:
        writer.close()
    accelerator.end_training()
    return RunResult(step, weights, rows, wall())


def main(argv: list[str] | None = None) -> int:
    import tyro

    config = tyro.cli(TrainConfig, args=argv, prog="python -m training.train_completer", description=__doc__)
    train(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
