"""What a job writes for engines and panoramas, end to end through :func:`pipeline.job.run_job` (offline profile,
tiny sizes): a GLB trimesh loads, a 2:1 panorama with its 16-bit depth, the viewer copy of the splats, every file
listed in :class:`pipeline.job.JobOutputs`; the work bounds; growing a written scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from plyfile import PlyData

from core.images import load_depth_file, load_image
from pipeline.config import build_run_config
from pipeline.job import VIEWER_COMMENT, JobError, JobRequest, grow_job, load_components, run_job

ROOT = Path(__file__).resolve().parents[1]
ROOM = ROOT / "examples" / "room"
SIZE = (96, 72)  # (W, H): 14 views in seconds
MIN_PANORAMA_COVERAGE = 0.15  # a level ring at ~53° vertical... no floor/sky: the band around the horizon


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    """A tiny offline 360 run of the room example with its own depth."""
    config = build_run_config("draft", mode="360", size=SIZE, profile="offline", splat_iters=3, video=False)
    components = load_components(config)
    request = JobRequest(load_image(ROOM / "image.png"), config, load_depth_file(ROOM / "depth.png"))
    out = tmp_path_factory.mktemp("exports") / "ring"
    return run_job(request, components, out), config, components


def test_every_listed_file_exists_and_the_viewer_copy_is_not_a_download(ring):
    outputs, _, _ = ring
    names = [path.name for path in outputs.downloads]
    assert names == [
        "splats.ply",
        "scene.splat",
        "scene.glb",
        "panorama.png",
        "panorama_depth.png",
        "points.ply",
        "frames.zip",
    ]
    assert all(path.is_file() and path.parent == outputs.out_dir for path in outputs.downloads)
    assert outputs.viewer_ply == outputs.out_dir / "viewer" / "splats.ply" and outputs.viewer_ply.is_file()
    assert outputs.viewer_ply not in outputs.downloads
    assert not any(p.name.startswith(".") for p in outputs.out_dir.parent.iterdir()), "staging folder left behind"


def test_glb_loads_in_trimesh_with_colours_and_up_axis(ring):
    outputs, _, _ = ring
    scene = trimesh.load(outputs.mesh_glb, file_type="glb")
    (mesh,) = scene.geometry.values()
    views = len(outputs.points_per_view)
    assert len(mesh.faces) > views * (SIZE[0] * SIZE[1]) // 8  # every view meshed, most cells kept
    colors = mesh.visual.vertex_colors[:, :3].astype(float)
    assert colors.std(0).max() > 10  # the room's colours, not one flat grey
    # glTF is +Y up: the room's floor (below the photo's camera) lies at negative y, the ceiling lamp above
    y = mesh.vertices[:, 1]
    assert np.percentile(y, 5) < -0.5 and np.percentile(y, 95) > 0.5
    assert np.isfinite(mesh.vertices).all()


def test_panorama_is_2_to_1_with_16_bit_depth_and_covers_the_ring(ring):
    outputs, _, _ = ring
    rgb = np.asarray(Image.open(outputs.panorama))
    depth = np.asarray(Image.open(outputs.panorama_depth))
    height, width = rgb.shape[:2]
    assert width == 2 * height and rgb.shape[2] == 3
    assert depth.shape == (height, width) and depth.dtype == np.uint16
    known = depth > 0
    assert known.mean() > MIN_PANORAMA_COVERAGE
    # all around: every 30° of longitude has known pixels on the horizon row band
    band = known[height // 2 - height // 16 : height // 2 + height // 16]
    sectors = np.array_split(band, 12, axis=1)
    assert all(sector.mean() > 0.5 for sector in sectors), [round(float(s.mean()), 2) for s in sectors]
    # depth in millimetres: the room is a few metres across
    assert 300 < np.median(depth[known]) < 20_000


def test_viewer_copy_is_a_moved_splat_ply_and_downloads_keep_the_scene_frame(ring):
    outputs, _, _ = ring
    viewer = PlyData.read(str(outputs.viewer_ply))
    scene = PlyData.read(str(outputs.splat_ply))
    assert any(VIEWER_COMMENT in comment for comment in viewer.comments)
    assert any("up is -y" in comment for comment in scene.comments)
    assert viewer["vertex"].count == scene["vertex"].count
    moved = np.stack([viewer["vertex"][axis] for axis in "xyz"], 1)
    original = np.stack([scene["vertex"][axis] for axis in "xyz"], 1)
    assert not np.allclose(moved, original)
    # the photo's camera sits where Gradio's viewer camera is: the view-0 centre (origin) maps off the origin
    assert np.isfinite(moved).all() and np.abs(moved).max() < 100  # inside the viewer's far plane


def test_single_and_stage_have_no_panorama(tmp_path):
    config = build_run_config("draft", mode="stage", size=SIZE, profile="offline", splat_iters=0, video=False)
    outputs = run_job(JobRequest(load_image(ROOM / "image.png"), config), load_components(config), tmp_path / "s")
    assert outputs.panorama is None and outputs.panorama_depth is None
    assert not (tmp_path / "s" / "panorama.png").exists()
    assert outputs.mesh_glb.is_file() and outputs.viewer_ply.is_file()


def test_too_many_views_is_refused_naming_the_limit(tmp_path):
    path = tmp_path / "path.json"
    path.write_text(json.dumps({"views": [{"yaw": i % 360} for i in range(20_000)]}))
    config = build_run_config("draft", mode=str(path), size=SIZE, profile="offline")
    with pytest.raises(JobError, match="at most 200 views; this one has 20000"):
        run_job(JobRequest(load_image(ROOM / "image.png"), config), load_components(config), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_grow_job_writes_the_grown_scene(ring, tmp_path):
    outputs, config, components = ring
    grown = grow_job(outputs.result, config, components, 0.0, 35.0, tmp_path / "grown")
    assert len(grown.result.frames) == len(outputs.result.frames) + 1
    assert grown.result.frames[-1].points_added > 0  # looking up toward the ceiling: new pixels
    assert [p.name for p in grown.downloads] == [p.name for p in outputs.downloads]
    transforms = json.loads((tmp_path / "grown" / "transforms.json").read_text())
    assert len(transforms["frames"]) == len(grown.result.frames)
    with pytest.raises(JobError, match="pitch"):
        grow_job(outputs.result, config, components, 0.0, 120.0, tmp_path / "bad")
    with pytest.raises(JobError, match="nothing of the scene is in sight toward yaw 0°, pitch 90°"):
        grow_job(outputs.result, config, components, 0.0, 90.0, tmp_path / "bad")  # straight up: a level ring
    assert not (tmp_path / "bad").exists()


def test_objects_are_drawn_into_the_frames_and_added_to_the_splats(tmp_path):
    """``JobRequest.objects`` (the CLI's --objects): a red box in front of the camera shows in view 0's frame,
    its surface splats are in the splat downloads and the viewer copy, and the kept scene has no box."""
    from pipeline.objects import DEFAULT_SPLAT_POINTS, ObjectSpec

    box = ObjectSpec("box", position=(0.0, 0.0, 1.5), scale=(0.4, 0.4, 0.4), color=(1.0, 0.0, 0.0))
    config = build_run_config("draft", mode="single", size=SIZE, profile="offline", splat_iters=0, video=False)
    image = load_image(ROOM / "image.png")
    depth = load_depth_file(ROOM / "depth.png")
    plain = run_job(JobRequest(image, config, depth), load_components(config), tmp_path / "plain")
    boxed = run_job(JobRequest(image, config, depth, [box]), load_components(config), tmp_path / "boxed")
    frame = np.asarray(Image.open(tmp_path / "boxed" / "images" / "frame_000.png")).astype(int)
    centre = frame[SIZE[1] // 2 - 3 : SIZE[1] // 2 + 3, SIZE[0] // 2 - 3 : SIZE[0] // 2 + 3].reshape(-1, 3)
    assert (centre[:, 0] > 150).all() and (centre[:, 1:] < 90).all()  # shaded red
    before = np.asarray(Image.open(tmp_path / "plain" / "images" / "frame_000.png")).astype(int)
    assert np.abs(frame - before).sum(-1).astype(bool).mean() < 0.2  # the rest of the view is untouched
    count = PlyData.read(str(boxed.splat_ply))["vertex"].count
    assert count == PlyData.read(str(plain.splat_ply))["vertex"].count + DEFAULT_SPLAT_POINTS
    assert PlyData.read(str(boxed.viewer_ply))["vertex"].count == count
    assert len(boxed.result.cloud) == len(plain.result.cloud)  # growing continues from the scene without the box
