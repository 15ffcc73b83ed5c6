"""The command line end to end on a shipped example, and its answers to bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plyfile import PlyData

from pipeline.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "room" / "image.png"
SMALL = ["--size", "96x72", "--splat-iters", "3"]


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "scene"
    code = main(["--image", str(EXAMPLE), "--mode", "stage", "--out", str(out), "--prompt", "a room", *SMALL])
    return code, out


def test_stage_run_writes_every_output(stage_run):
    code, out = stage_run
    assert code == 0
    points = PlyData.read(str(out / "points.ply"))
    vertex = points["vertex"]
    assert vertex.count > 96 * 72  # view 0 alone lifts every pixel
    assert {p.name for p in vertex.properties} == {"x", "y", "z", "red", "green", "blue"}
    assert any("up is -y" in c for c in points.comments)
    transforms = json.loads((out / "transforms.json").read_text())
    assert len(transforms["frames"]) == 3
    for frame in transforms["frames"]:
        image = Image.open(out / frame["file_path"])
        assert image.size == (96, 72)
        depth = np.asarray(Image.open(out / frame["depth_file_path"]))
        assert depth.dtype == np.uint16 and (depth > 0).all()
        matrix = np.array(frame["transform_matrix"])
        assert np.allclose(matrix[:3, :3] @ matrix[:3, :3].T, np.eye(3), atol=1e-6)
    splats = PlyData.read(str(out / "splats.ply"))
    names = {p.name for p in splats["vertex"].properties}
    assert {"x", "y", "z", "opacity", "scale_0", "rot_0", "f_dc_0"} <= names
    assert (out / "scene.splat").stat().st_size > 0
    assert (out / "frames.zip").stat().st_size > 0
    assert (out / "flythrough.mp4").stat().st_size > 0
    assert not any(p.name.startswith(".") for p in out.parent.iterdir()), "staging folder left behind"


def test_same_seed_same_bytes(stage_run, tmp_path):
    _, first = stage_run
    second = tmp_path / "again"
    assert main(["--image", str(EXAMPLE), "--mode", "stage", "--out", str(second), "--prompt", "a room", *SMALL]) == 0
    for name in ("points.ply", "transforms.json", "images/frame_002.png", "depth/frame_002.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def _bad(tmp_path, capsys, *args) -> str:
    out = tmp_path / "out"
    code = main([*args, "--out", str(out), *SMALL])
    assert code != 0
    assert not out.exists() or not any(out.iterdir()), "a failed run must write nothing"
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ")
    return err[-1]


def test_missing_image(tmp_path, capsys):
    assert "not found" in _bad(tmp_path, capsys, "--image", str(tmp_path / "nope.png"))


def test_not_an_image(tmp_path, capsys):
    fake = tmp_path / "photo.png"
    fake.write_text("this is not a picture")
    message = _bad(tmp_path, capsys, "--image", str(fake))
    assert "photo.png" in message or "image" in message.lower()
    assert str(tmp_path) not in message.replace(str(fake), "photo.png")


def test_too_small_image(tmp_path, capsys):
    small = tmp_path / "tiny.png"
    Image.new("RGB", (20, 20), (120, 30, 30)).save(small)
    assert "at least" in _bad(tmp_path, capsys, "--image", str(small))


def test_bad_path_json_names_the_field(tmp_path, capsys):
    path = tmp_path / "path.json"
    path.write_text(json.dumps({"views": [{"yaw": 0}, {"yaw": "left"}]}))
    assert "views[1].yaw" in _bad(tmp_path, capsys, "--image", str(EXAMPLE), "--mode", str(path))


def test_too_many_views_names_the_limit(tmp_path, capsys):
    """A path file with 20,000 views would run for hours: refused at once, naming the limit."""
    path = tmp_path / "path.json"
    path.write_text(json.dumps({"views": [{"yaw": i % 360} for i in range(20_000)]}))
    message = _bad(tmp_path, capsys, "--image", str(EXAMPLE), "--mode", str(path))
    assert "at most 200 views; this one has 20000" in message


def test_too_much_work_names_the_limit(tmp_path, capsys):
    path = tmp_path / "path.json"
    path.write_text(json.dumps({"views": [{"yaw": 3 * i} for i in range(120)]}))
    code = main(["--image", str(EXAMPLE), "--mode", str(path), "--size", "1024x768", "--out", str(tmp_path / "o")])
    assert code == 2 and not (tmp_path / "o").exists()
    assert "limit is 64 megapixels" in capsys.readouterr().err


def test_a_killed_runs_staging_folder_is_removed_at_the_next_run(tmp_path, capsys):
    out = tmp_path / "scene"
    leftover = tmp_path / ".scene.partial-abc123"  # what `kill -9` during the splat stage leaves
    (leftover / "images").mkdir(parents=True)
    (leftover / "images" / "frame_000.png").write_bytes(b"\x89PNG partial")
    neighbour = tmp_path / ".other.partial-xyz"  # another output's: not this run's to remove
    neighbour.mkdir()
    args = ["--image", str(EXAMPLE), "--mode", "single", "--out", str(out), "--no-video", *SMALL]
    assert main(args) == 0
    assert not leftover.exists() and neighbour.is_dir()
    assert ".scene.partial-abc123" in capsys.readouterr().err


def test_objects_file(tmp_path, capsys):
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps({"objects": [{"kind": "sphere", "position": [0, 0, 1.5], "color": [0, 0, 1]}]}))
    out = tmp_path / "with-objects"
    args = ["--image", str(EXAMPLE), "--mode", "single", "--objects", str(objects), "--no-video", *SMALL]
    assert main([*args, "--out", str(out)]) == 0
    centre = np.asarray(Image.open(out / "images" / "frame_000.png"))[36, 48].astype(int)
    assert centre[2] > 120 and centre[0] < 80, centre  # the blue sphere is in the frame
    objects.write_text(json.dumps({"objects": [{"kind": "sphere", "position": [0, 1]}]}))
    assert "objects[0].position" in _bad(tmp_path, capsys, "--image", str(EXAMPLE), "--objects", str(objects))


def test_unknown_mode_names_the_choices(tmp_path, capsys):
    message = _bad(tmp_path, capsys, "--image", str(EXAMPLE), "--mode", "orbit")
    assert "orbit" in message and "360" in message


def test_unreadable_depth(tmp_path, capsys):
    depth = tmp_path / "depth.png"
    depth.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    _bad(tmp_path, capsys, "--image", str(EXAMPLE), "--depth", str(depth))


def test_custom_path_json(tmp_path):
    path = tmp_path / "path.json"
    path.write_text(json.dumps({"hfov_deg": 60, "views": [{"yaw": 0}, {"yaw": 20, "pitch": -10}]}))
    out = tmp_path / "custom"
    assert main(["--image", str(EXAMPLE), "--mode", str(path), "--out", str(out), "--no-video", *SMALL]) == 0
    assert len(json.loads((out / "transforms.json").read_text())["frames"]) == 2


def test_entry_module_loads_no_torch_before_main():
    """``pipeline.__main__`` (the ``worldstitch`` entry point) imports nothing heavy, so main() can set up CPU
    threads before torch loads."""
    import subprocess
    import sys

    code = "import sys, pipeline.__main__; print(sorted(m for m in ('torch', 'gradio', 'tyro') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
