"""The completer trainer: it learns, resumes exactly, distils from a teacher, runs under accelerate launch, reads
grown scenes with the right poses, fine-tunes the 5-channel ZoeDepth; the consistency loss is right."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.cameras import Camera, intrinsics, pose, rotation_yaw_pitch
from core.images import save_png
from evaluation.random_worlds import random_world, render_view
from models.light_completer import load_light_net
from training.data import SampleSet, distillation_set, grown_scene_set
from training.losses import geometry_consistency
from training.train_completer import TrainConfig, build_model, make_batch, train, validate

TINY = dict(
    size=(64, 48),
    procedural_pairs=8,
    val_pairs=4,
    widths=(8, 12, 16),
    batch_size=4,
    data_workers=1,
    threads=1,
    progress=False,
    warmup_steps=2,
)
"""A run that takes seconds: 64 x 48 pairs, a three-level network, one thread (bit-reproducible)."""

QUIET = lambda *_: None  # noqa: E731


def _weights_equal(a: Path, b: Path) -> bool:
    net_a, net_b = load_light_net(a), load_light_net(b)
    return all(torch.equal(x, y) for x, y in zip(net_a.state_dict().values(), net_b.state_dict().values()))


def _training_loss(config: TrainConfig, weights: Path | None) -> float:
    """Mean log-L1 of a model over the run's own training samples (untrained when ``weights`` is None)."""
    data = SampleSet.load(next(config.out.glob("data-*.pt")))
    torch.manual_seed(config.seed)
    model = build_model(config)
    if weights is not None:
        model.net.load_state_dict(load_light_net(weights).state_dict())
    return validate(model, data, config, "cpu")["val_log_l1"]


def test_tiny_run_lowers_the_loss_and_a_resumed_run_continues_exactly(tmp_path):
    steps = 30
    config = TrainConfig(out=tmp_path / "whole", steps=steps, log_every=1, eval_every=8, lr=1e-2, **TINY)
    whole = train(config, QUIET)
    assert whole.steps == steps and len([r for r in whole.metrics if r.get("loss") not in (None, "")]) == steps
    before, after = _training_loss(config, None), _training_loss(config, whole.weights)
    assert after < 0.8 * before, (before, after)  # it learns (8 pairs: it can fit them)
    assert (tmp_path / "whole" / "metrics.csv").is_file() and (tmp_path / "whole" / "curves.png").is_file()

    split = TrainConfig(**{**config.__dict__, "out": tmp_path / "split"})
    split.out.mkdir()
    for cache in config.out.glob("*-*.pt"):  # same data: skip drawing the pairs again
        shutil.copy(cache, split.out / cache.name)
    first = train(TrainConfig(**{**split.__dict__, "stop_at": 11}), QUIET)
    assert first.steps == 11 and first.weights is None and (split.out / "checkpoint.pt").is_file()
    second = train(split, QUIET)
    assert second.steps == steps
    assert _weights_equal(whole.weights, second.weights)  # same batches, flips, optimiser state: same result


def _write_photos(folder: Path, count: int) -> None:
    for seed in range(count):
        scene = random_world(2000 + seed, "room")
        camera = Camera(intrinsics(72, 96, 60.0), torch.eye(4), 72, 96)
        rgb, _, _ = render_view(scene, camera)
        save_png(folder / f"photo{seed}.png", rgb)


def test_distillation_with_a_tiny_teacher_runs_and_targets_the_teacher(tmp_path):
    from models.registry import build_estimator
    from models.tiny import save_tiny_depth

    teacher_dir = save_tiny_depth(tmp_path / "teacher", "metric")
    _write_photos(tmp_path / "photos", 2)
    teacher = build_estimator(str(teacher_dir), device="cpu")
    data = distillation_set(tmp_path / "photos", teacher, (64, 48), seed=1000, masks_per_image=3)
    assert len(data) == 6
    known = data.known_mask
    assert bool(known.any()) and bool((~known).any())
    assert torch.equal(data.known_depth[known], data.target[known])  # the sparse input is the teacher's own depth
    assert not bool(data.has_pair.any())

    config = TrainConfig(
        out=tmp_path / "run", distill_images=tmp_path / "photos", teacher=str(teacher_dir), steps=3, **TINY
    )
    config.procedural_pairs = 0
    result = train(config, QUIET)
    assert result.steps == 3 and result.weights.is_file()


def test_accelerate_launch_runs_the_same_script(tmp_path):
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--cpu",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "training.train_completer",
        "--out",
        str(tmp_path / "run"),
        "--size",
        "64",
        "48",
        "--procedural-pairs",
        "4",
        "--val-pairs",
        "2",
        "--widths",
        "8",
        "12",
        "16",
        "--batch-size",
        "2",
        "--steps",
        "2",
        "--data-workers",
        "1",
        "--threads",
        "1",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "light_completer.safetensors").is_file()
    assert "after 2 steps" in done.stdout


def test_zoedepth_completer_fine_tunes_for_two_steps(tmp_path):
    from models.completion import load_completer
    from models.tiny import save_tiny_completer

    source = save_tiny_completer(tmp_path / "tiny-zoe")
    config = TrainConfig(out=tmp_path / "run", model="zoedepth", zoedepth=source, steps=2, lr=1e-3, **TINY)
    result = train(config, QUIET)
    assert result.weights == tmp_path / "run" / "zoedepth_completer"
    tuned = load_completer(str(result.weights), device="cpu", allow_download=False)
    original = load_completer(str(source), device="cpu", allow_download=False)
    changed = [
        not torch.equal(a, b) for a, b in zip(tuned.model.state_dict().values(), original.model.state_dict().values())
    ]
    assert any(changed)
    image = torch.rand(48, 64, 3)
    known = torch.zeros(48, 64, dtype=torch.bool)
    known[:, :32] = True
    depth = tuned.complete(image, torch.where(known, 2.0, 0.0), known, Camera(intrinsics(48, 64), torch.eye(4), 48, 64))
    assert depth.shape == (48, 64) and bool(torch.isfinite(depth).all())


def _two_views(size=(64, 48)):
    width, height = size
    scene = random_world(3000, "room")
    K = intrinsics(height, width, 60.0)
    cam_a = Camera(K, pose(rotation_yaw_pitch(0.0, -5.0), torch.zeros(3)), height, width)
    cam_b = Camera(K, pose(rotation_yaw_pitch(20.0, -5.0), torch.tensor([0.1, 0.0, 0.05])), height, width)
    _, depth_a, _ = render_view(scene, cam_a, color=False)
    rgb_b, depth_b, _ = render_view(scene, cam_b)
    return scene, cam_a, cam_b, depth_a, rgb_b, depth_b


def test_geometry_consistency_is_zero_for_true_depth_also_when_flipped():
    _, cam_a, cam_b, depth_a, rgb_b, depth_b = _two_views()
    b_to_a = (cam_a.world_to_cam.double() @ cam_b.cam_to_world.double()).float()
    args = (cam_b.K[None], depth_a[None], cam_a.K[None], b_to_a[None], torch.tensor([True]))
    assert float(geometry_consistency(depth_b[None], *args)) < 5e-3  # only occlusion pixels disagree
    assert float(geometry_consistency(1.2 * depth_b[None], *args)) > 0.05  # a 20 % wrong depth is seen

    samples = SampleSet(
        image=(rgb_b * 255).round().to(torch.uint8).permute(2, 0, 1)[None],
        known_depth=torch.zeros_like(depth_b)[None],
        known_mask=torch.zeros_like(depth_b, dtype=torch.bool)[None],
        target=depth_b[None],
        K=cam_b.K[None],
        depth_a=depth_a[None],
        K_a=cam_a.K[None],
        b_to_a=b_to_a[None],
        has_pair=torch.tensor([True]),
        dense_log=torch.zeros_like(depth_b)[None],
    )
    flipped = make_batch(samples, torch.tensor([True]), "cpu")
    assert torch.equal(flipped.target[0], depth_b.flip(-1))
    batch = flipped
    loss = geometry_consistency(batch.target, batch.K, batch.depth_a, batch.K_a, batch.b_to_a, batch.has_pair)
    assert float(loss) < 5e-3  # the mirrored camera and pose still agree with view A


def _write_grown_scene(folder: Path) -> None:
    """A folder written by the pipeline's own exporter (as `python -m pipeline --out` does), from a procedural
    world's true views, deep enough that the PNG unit is not millimetres."""
    from core.types import Frame
    from pipeline.export import frame_files, transforms_json_bytes

    scene = random_world(3001, "street")
    frames = []
    for index, yaw in enumerate((0.0, 25.0, 50.0)):
        cam = Camera(intrinsics(48, 64, 55.0), pose(rotation_yaw_pitch(yaw, 0.0), torch.zeros(3)), 48, 64)
        rgb, depth, _ = render_view(scene, cam)
        # twice the world's size (cameras share one centre, so scaling depth is a consistent scene): up to 120 m
        frames.append(Frame(index, cam, rgb, 2.0 * depth, torch.zeros(48, 64, dtype=torch.bool)))
    for name, data in frame_files(frames).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "transforms.json").write_bytes(transforms_json_bytes(frames))


def test_grown_scene_pairs_have_known_depth_that_matches_the_target(tmp_path):
    _write_grown_scene(tmp_path / "scene")
    assert json.loads((tmp_path / "scene" / "transforms.json").read_text())["depth_unit_scale_factor"] > 0.001
    data = grown_scene_set([tmp_path / "scene"], (64, 48), max_gap=1)
    assert len(data) >= 2 and bool(data.has_pair.all())
    known = data.known_mask & (data.target > 0)
    rel = (data.known_depth[known] - data.target[known]).abs() / data.target[known]
    assert float(rel.median()) < 0.01  # poses read in the right convention: A's depth lands on B's surfaces


def test_config_refuses_benchmark_seeds_and_empty_data(tmp_path):
    with pytest.raises(ValueError, match="benchmark"):
        TrainConfig(out=tmp_path, seed=5)
    with pytest.raises(ValueError, match="no training data"):
        TrainConfig(out=tmp_path, procedural_pairs=0)
    with pytest.raises(ValueError, match="--zoedepth"):
        TrainConfig(out=tmp_path, model="zoedepth")
    assert math.isfinite(TrainConfig(out=tmp_path).lr)
