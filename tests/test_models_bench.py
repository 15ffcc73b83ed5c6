"""The geometry benchmark: ScanNet / Hypersim loaders (evaluation.datasets, evaluation.pairs) on tiny fake folders in
the layouts Invisible Stitch's benchmark reads, the metrics (evaluation.metrics) on cases with known answers, and
scripts/bench_completion.py end to end."""

# ruff: noqa: F811  (pytest fixtures imported from tests.netguard are redefined as parameters)
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.cameras import Camera, intrinsics, make_cameras, pose, rotation_yaw_pitch
from core.geometry import ray_directions, transform_points
from evaluation import benchmark, datasets, metrics, pairs
from tests.netguard import no_network  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_completion", ROOT / "scripts" / "bench_completion.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_completion"] = module
    spec.loader.exec_module(module)
    return module


def _write_scannet(root: Path, frames: int = 12) -> Path:
    scene = root / "scene0000_00"
    for sub in ("color", "depth", "pose", "intrinsic"):
        (scene / sub).mkdir(parents=True)
    K = np.array([[40.0, 0, 32, 0], [0, 40.0, 24, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.savetxt(scene / "intrinsic" / "intrinsic_depth.txt", K)
    rng = np.random.default_rng(0)
    for i in range(frames):
        c2w = np.eye(4)
        c2w[0, 3] = 0.01 * i
        np.savetxt(scene / "pose" / f"{i}.txt", c2w)
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(scene / "color" / f"{i}.jpg")
        Image.fromarray(np.full((48, 64), 2000, dtype=np.uint16)).save(scene / "depth" / f"{i}.png")  # 2 m
    return root


def test_scannet_loader(tmp_path):
    root = _write_scannet(tmp_path / "scannet")
    found = list(pairs.scannet_pairs(root, (32, 24)))
    assert len(found) == 1  # frames 0 and 10 (sequences start every 50 frames)
    pair = found[0]
    assert pair.source.endswith("0-10")
    assert pair.image.shape == (24, 32, 3) and pair.depth_a.shape == (24, 32)
    assert torch.allclose(pair.depth_a, torch.full((24, 32), 2.0))
    assert pair.camera_a.K[0, 0] == pytest.approx(20.0)  # intrinsics follow the resize
    assert pair.camera.center.tolist() == pytest.approx([0.1, 0.0, 0.0], abs=1e-6)
    # a 1 cm sideways move of a wall at 2 m: nearly all of B is known, at the wall's depth
    assert float(pair.known_mask.float().mean()) > 0.8
    assert torch.allclose(pair.known_depth[pair.known_mask], torch.tensor(2.0), rtol=1e-3)


def test_scannet_skips_invalid_poses(tmp_path):
    root = _write_scannet(tmp_path / "scannet")
    np.savetxt(root / "scene0000_00" / "pose" / "10.txt", np.full((4, 4), -np.inf))
    assert list(pairs.scannet_pairs(root, (32, 24))) == []
    with pytest.raises(FileNotFoundError):
        list(pairs.scannet_pairs(tmp_path, (32, 24)))


def test_hypersim_loader(tmp_path, monkeypatch):
    # HDF5 files are stood in for by .npy payloads under the same names (h5py is not a project dependency)
    monkeypatch.setattr(datasets, "_read_hdf5", lambda path: np.load(path, allow_pickle=False))

    def save(path: Path, array: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            np.save(handle, array)

    root = tmp_path / "hypersim"
    scene = root / "ai_001_001"
    (scene / "_detail").mkdir(parents=True)
    (scene / "_detail" / "metadata_scene.csv").write_text("parameter_name,parameter_value\nmeters_per_asset_unit,0.5\n")
    (root / "ai_001_001_pairs.csv").write_text(
        ",scene,camera,frame_id,remaining_frame_id,overlap\n0,ai_001_001,cam_00,0,1,0.9\n"
    )
    save(scene / "_detail" / "cam_00" / "camera_keyframe_positions.hdf5", np.array([[0, 0, 0], [2.0, 0, 0]]))
    save(scene / "_detail" / "cam_00" / "camera_keyframe_orientations.hdf5", np.stack([np.eye(3)] * 2))
    height, width = 48, 64
    for frame in (0, 1):
        images = scene / "images"
        save(images / "scene_cam_00_final_hdf5" / f"frame.{frame:04d}.color.hdf5", np.full((height, width, 3), 0.25))
        save(
            images / "scene_cam_00_geometry_hdf5" / f"frame.{frame:04d}.depth_meters.hdf5",
            np.full((height, width), 3.0),
        )
    found = list(pairs.hypersim_pairs(root, (width, height)))
    assert len(found) == 1
    pair = found[0]
    # ray distance 3 m -> z-depth 3 m * f / |ray| (f scaled from 886.81 px at 1024 wide)
    focal = 886.81 * width / 1024
    corner = 3.0 * focal / math.sqrt(31.5**2 + 23.5**2 + focal**2)
    assert float(pair.depth_a[0, 0]) == pytest.approx(corner, rel=1e-5)
    assert float(pair.depth_a.max()) < 3.0
    assert pair.image[0, 0, 0].item() == pytest.approx(0.25 ** (1 / 2.2), rel=1e-5)
    # Hypersim looks down -z with y up; in OpenCV axes the camera looks along world -z, position scaled to metres
    assert pair.camera.center.tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-6)
    forward = pair.camera_a.cam_to_world[:3, 2]
    assert forward.tolist() == pytest.approx([0.0, 0.0, -1.0], abs=1e-6)
    assert pair.camera_a.hfov_deg == pytest.approx(60.0, abs=0.01)


def test_metrics_on_a_plane_with_exact_answers():
    height, width = 48, 64
    K = intrinsics(height, width)
    cam_a = make_cameras("single", (width, height))[0]
    cam_b = Camera(K, pose(rotation_yaw_pitch(15.0, 0.0)).float(), height, width)
    depth = torch.full((height, width), 4.0)
    # a fronto-parallel wall seen from A; B is rotated, so its true depth of the wall is 4 / cos(angle)
    rays = ray_directions(height, width, K.double())  # B-frame rays, z = 1
    world_rays = transform_points(torch.linalg.inv(cam_b.world_to_cam.double()), rays) - cam_b.center.double()
    truth_b = (4.0 / world_rays[..., 2]).float()
    known_depth, known, _ = pairs.render_known(depth, cam_a, cam_b)
    assert 0 < int(known.sum()) < height * width
    assert bool(((known_depth[known] / truth_b[known]) - 1).abs().max() < 0.01)
    everywhere = torch.ones(height, width, dtype=torch.bool)
    sc = metrics.scale_consistency(depth, cam_a, depth, truth_b, cam_b, truth_b, everywhere)
    assert sc.numel() > 0 and float(sc.mean()) < 2e-3  # consistent depths -> SC ~0 (pixel sampling only)
    doubled = metrics.scale_consistency(depth, cam_a, depth, 2 * truth_b, cam_b, truth_b, everywhere)
    assert float(doubled.mean()) == pytest.approx(1 / 3, abs=5e-3)  # |d - 2d| / (d + 2d)
    pair = pairs.ViewPair(torch.rand(height, width, 3), known_depth, known, truth_b, cam_b, cam_a, depth, "plane")
    tally = metrics.Tally()
    metrics.score_pair(tally, truth_b, pair)  # the truth itself: no error, no seam step
    assert tally.mean("absrel_ext") == 0 and tally.mean("mae_seam") == 0
    assert tally.mean("seam_step") < 1e-2  # the known depth is the re-rendered truth (interpolated: ~1e-3)
    stepped = metrics.Tally()
    metrics.score_pair(stepped, torch.where(known, truth_b, 1.1 * truth_b), pair)  # a 10 % step at the seam
    assert stepped.mean("absrel_ext") == pytest.approx(0.1, rel=1e-4)
    assert stepped.mean("seam_step") == pytest.approx(0.1, abs=0.01)


def test_warped_truth_is_smooth_and_bounded():
    truth = torch.linspace(1.0, 5.0, 48 * 64).reshape(48, 64)
    estimate = benchmark.warped_truth(truth, seed=1)
    assert estimate.kind == "metric" and not torch.equal(estimate.values, truth)
    ratio = estimate.values / truth
    assert float(ratio.max() / ratio.min()) <= math.exp(2 * benchmark.WARP_AMPLITUDE) + 1e-4
    assert float(ratio.diff(dim=1).abs().max()) < 0.01  # smooth: under 1 % from one pixel to the next


def test_benchmark_runs_end_to_end(bench, no_network, capsys, tmp_path):
    plot = tmp_path / "bench.png"
    args = ["--size", "64x48", "--procedural", "3", "--no-real", "--no-rings", "--threads", "1", "--plot", str(plot)]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    for row in ("| raw estimate | prior |", "| aligned + harmonic | truth×warp |", "| light |", "Invisible Stitch"):
        assert row in out
    with Image.open(plot) as image:
        assert image.size[0] > 500
