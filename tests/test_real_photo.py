"""A real photograph (examples/photo-*, CC BY 4.0) through the public API: ``stage`` on the offline profile.

Until now only procedural images had been tried; this runs a JPEG from a camera (portrait, EXIF-free, 8-bit)
through :func:`pipeline.job.run_job` at a small size and checks what a user gets: the files exist, the splat PLY
reads back with sane values, and frame 0 is the photo (the first view is the input, not a generated picture).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.images import fit_size, load_image
from pipeline.config import build_run_config
from pipeline.job import JobRequest, load_components, run_job
from pipeline.splat_io import read_splat_ply

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted(p.parent.name for p in (ROOT / "examples").glob("photo-*/image.jpg"))
SIZE = (96, 128)  # (W, H): the wine-corner photo is portrait (2:3 kept as 3:4 by the working size)
SPLAT_ITERS = 5  # a few steps: the fit's wiring, not its quality
MAX_FRAME0_ERROR = 2.0 / 255  # PNG round trip of the resized photo: only quantisation may differ


def test_every_photo_example_has_credits_and_a_small_jpeg():
    credits = (ROOT / "examples" / "CREDITS.md").read_text()
    assert len(PHOTOS) >= 2
    for name in PHOTOS:
        folder = ROOT / "examples" / name
        assert f"`{name}/`" in credits and "CC BY 4.0" in credits
        assert (folder / "image.jpg").stat().st_size <= 300_000
        assert (folder / "prompt.txt").read_text().strip()
        with Image.open(folder / "image.jpg") as photo:
            assert photo.format == "JPEG" and max(photo.size) <= 768


@pytest.mark.parametrize("name", ["photo-wine-corner"])
def test_real_photo_stage_offline(tmp_path, name):
    folder = ROOT / "examples" / name
    photo = load_image(folder / "image.jpg")
    config = build_run_config(
        "draft",
        mode="stage",
        size=SIZE,
        prompt=(folder / "prompt.txt").read_text().strip(),
        profile="offline",
        splat_iters=SPLAT_ITERS,
        video=False,
        seed=1,
    )
    out = run_job(JobRequest(photo, config), load_components(config), tmp_path / "out")

    # files a user downloads
    for path in (out.splat_ply, out.dotsplat, out.points_ply, out.transforms_json, out.frames_zip):
        assert path is not None and path.is_file() and path.stat().st_size > 0, path
    frames = sorted((out.out_dir / "images").glob("frame_*.png"))
    assert len(frames) == 3 and len(sorted((out.out_dir / "depth").glob("frame_*.png"))) == 3
    transforms = json.loads(out.transforms_json.read_text())
    assert len(transforms["frames"]) == 3

    # the splats read back: finite, unit quaternions, a sane count
    splats = read_splat_ply(out.splat_ply)
    assert 1000 < len(splats) <= sum(out.points_per_view)
    assert all(bool(t.isfinite().all()) for t in splats.tensors())
    norms = torch.nn.functional.normalize(splats.quats, dim=-1).norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)

    # frame 0 is the photo at the working size
    frame0 = np.asarray(Image.open(frames[0]).convert("RGB"), np.float32) / 255  # [H, W, 3]
    width, height = frame0.shape[1], frame0.shape[0]
    expected = fit_size(photo, (width, height)).numpy()
    assert abs(width / height - photo.shape[1] / photo.shape[0]) < 0.1  # the photo's aspect is kept
    assert np.abs(frame0 - expected).mean() < MAX_FRAME0_ERROR
    # later views show the photo's neighbourhood, not a blank: the known part carries the photo's colours
    frame1 = np.asarray(Image.open(frames[1]).convert("RGB"), np.float32) / 255
    assert abs(frame1.mean() - expected.mean()) < 0.15 and frame1.std() > 0.03
