"""Gradio's splat viewer opens on the input photo when given :func:`pipeline.viewer.splats_for_viewer`'s copy.

The browser tests serve a minimal Gradio page with one ``gr.Model3D`` holding a PLY and screenshot the first
rendered frame in Debian's chromium (SwiftShader WebGL, Playwright with ``executable_path``; never
``playwright install``). The frame must not be black and must look like the photo's centre — the part of the photo
the viewer's fixed 1132-px focal length shows — while the untransformed scene must not. The first test checks the
same geometry without a browser, against the project's own splat rasteriser.
"""

from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.cameras import Camera, make_cameras
from core.images import fit_size, load_depth_file, load_image, resize_depth
from pipeline.fusion import lift_pixels
from pipeline.splat_io import splats_to_ply_bytes
from pipeline.splats import SplatInitConfig, Splats, init_from_cloud
from pipeline.viewer import GSPLAT_FOCAL_PX, gradio_viewer_camera, splats_for_viewer

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("WORLDSTITCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox", "--no-first-run"]
WORK_SIZE = (256, 192)  # (W, H) of the lifted photo
# unfitted splats with half-pixel footprints leave ~20 % see-through between neighbours (fitting closes it);
# wider ones make the photo opaque, as a fitted scene is
SPLAT_WIDEN = 1.6
VIEWER_HEIGHT = 420  # px: the Model3D block's height
SCREENSHOT_DIR = Path("/tmp")
OVERLAY_ROWS = 40  # Model3D's label and buttons sit over the canvas's top edge
COMPARE_SIZE = (48, 32)  # (W, H): structure is compared on a coarse grid (splat edges, SwiftShader blending)
MIN_CORRELATION = 0.6
OFF_SCENE_MAX_CORRELATION = 0.3
# gsplat.js lets the dark canvas show between unfitted splats (more on the far backdrop than ours does), which
# darkens the frame: colour is compared as chromaticity (hue balance), brightness via the correlation
MAX_CHROMATICITY_GAP = 0.03

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason=f"{CHROMIUM} missing: install Debian's chromium (apt-get install -y chromium)"
)


def room_scene() -> tuple[np.ndarray, Splats, Camera]:
    """The room example with its own depth, lifted into splats (one per pixel)."""
    image = fit_size(load_image(ROOT / "examples" / "room" / "image.png"), WORK_SIZE)
    depth_file = load_depth_file(ROOT / "examples" / "room" / "depth.png")
    depth, valid = resize_depth(depth_file.depth.float(), depth_file.valid_mask, WORK_SIZE)
    return _lift(image, depth, valid)


def photo_scene() -> tuple[np.ndarray, Splats, Camera]:
    """A real photo (examples/photo-mountain-trail) with the offline profile's geometric-prior depth."""
    from models.offline import GeometricPriorDepth

    image = fit_size(load_image(ROOT / "examples" / "photo-mountain-trail" / "image.jpg"), WORK_SIZE)
    camera = make_cameras("single", WORK_SIZE)[0]
    depth = GeometricPriorDepth().estimate(image, camera).values.float()
    return _lift(image, depth, depth > 0)


def _lift(image, depth, valid) -> tuple[np.ndarray, Splats, Camera]:
    camera = make_cameras("single", WORK_SIZE)[0]
    cloud = lift_pixels(image, depth, valid, camera, 0, 0.5)
    return (
        (image.numpy() * 255).astype(np.uint8),
        init_from_cloud(cloud, SplatInitConfig(scale_multiplier=SPLAT_WIDEN)),
        camera,
    )


def expected_view(photo: np.ndarray, camera: Camera, canvas_wh: tuple[int, int]) -> np.ndarray:
    """What the viewer should show: the photo's centre seen with the viewer's focal length, on the canvas grid."""
    width, height = canvas_wh
    focal = float(camera.K[0, 0])
    us = (np.arange(width) + 0.5 - width / 2) * focal / GSPLAT_FOCAL_PX + float(camera.K[0, 2])
    vs = (np.arange(height) + 0.5 - height / 2) * focal / GSPLAT_FOCAL_PX + float(camera.K[1, 2])
    cols = np.clip(us.astype(int), 0, photo.shape[1] - 1)
    rows = np.clip(vs.astype(int), 0, photo.shape[0] - 1)
    return photo[rows][:, cols]


def chromaticity(image: np.ndarray) -> np.ndarray:  # [H, W, 3] -> [3]
    """Mean colour as fractions of its sum: the hue balance, blind to overall brightness."""
    mean = image.reshape(-1, 3).astype(float).mean(0)
    return mean / mean.sum()


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two RGB images on a coarse grid (structure and colour together)."""
    small = [np.asarray(Image.fromarray(x).resize(COMPARE_SIZE, Image.BILINEAR), float).ravel() for x in (a, b)]
    return float(np.corrcoef(*small)[0, 1])


def test_viewer_copy_renders_like_the_input_camera():
    """Without a browser: the moved copy seen from the viewer's camera equals the scene seen from the input camera
    with the viewer's intrinsics (our rasteriser), and the splats' world frame is untouched."""
    _, splats, camera = room_scene()
    before = splats.means.clone()
    moved = splats_for_viewer(splats, camera)
    assert torch.equal(splats.means, before)
    canvas_w, canvas_h = 200, 120
    viewer = gradio_viewer_camera(canvas_w, canvas_h)
    K = torch.tensor([[GSPLAT_FOCAL_PX, 0, canvas_w / 2], [0, GSPLAT_FOCAL_PX, canvas_h / 2], [0, 0, 1]])
    through_photo = splats.render(Camera(K, camera.world_to_cam, canvas_h, canvas_w), "torch").rgb
    in_viewer = moved.render(viewer, "torch").rgb
    assert float((through_photo - in_viewer).abs().max()) < 1e-3
    assert float(through_photo.mean()) > 0.1  # not an empty render
    unmoved = splats.render(viewer, "torch").rgb
    assert float((through_photo - unmoved).abs().mean()) > 0.05  # the move matters


def serve_and_screenshot(plys: dict[str, Path], label: str) -> dict[str, np.ndarray]:
    """First frame each viewer draws on one page (one ``gr.Model3D`` per PLY, keyed by elem_id): canvas pixels."""
    import gradio as gr
    from playwright.sync_api import sync_playwright

    with gr.Blocks() as demo:
        for name, ply in plys.items():
            gr.Model3D(value=str(ply), label=name, height=VIEWER_HEIGHT, elem_id=name)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    shots = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 900, "height": 1100})
                page.goto(f"http://127.0.0.1:{port}/")
                for name in plys:
                    canvas = page.locator(f"#{name} canvas").first
                    canvas.wait_for(state="visible", timeout=60_000)
                    size = page.evaluate(
                        f"() => {{ const c = document.querySelector('#{name} canvas'); return [c.width, c.height]; }}"
                    )
                    shots[name] = _first_frame(canvas)
                    assert tuple(size) == (shots[name].shape[1], shots[name].shape[0]), "canvas drawn at a DPR != 1"
                page.screenshot(path=str(SCREENSHOT_DIR / f"worldstitch_viewer_{label}_page.png"))
            finally:
                browser.close()
    finally:
        demo.close()
    for name, shot in shots.items():
        Image.fromarray(shot).save(SCREENSHOT_DIR / f"worldstitch_viewer_{label}_{name}.png")
    return shots


SCREENSHOT_TIMEOUT_MS = 120_000
"""One canvas screenshot waits for the element to be stable over two frames; SwiftShader (software WebGL) drawing
the room's splats on a busy 2-core machine took longer than Playwright's default 30 s once in a full CI run."""


def _first_frame(canvas, timeout_s: float = 60) -> np.ndarray:
    """The canvas once something is drawn (the splats load asynchronously), or the last blank frame."""
    deadline = time.time() + timeout_s

    def shoot() -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(canvas.screenshot(timeout=SCREENSHOT_TIMEOUT_MS))).convert("RGB"))

    while True:
        shot = shoot()
        if shot[OVERLAY_ROWS:].std() > 10 or time.time() > deadline:
            time.sleep(1.0)  # let the depth sort of the first frames settle
            return shoot()
        time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_opens_on_photo(tmp_path: Path, label: str, scene) -> None:
    photo, splats, camera = scene
    moved, unmoved = tmp_path / "viewer.ply", tmp_path / "scene.ply"
    moved.write_bytes(splats_to_ply_bytes(splats_for_viewer(splats, camera)))
    unmoved.write_bytes(splats_to_ply_bytes(splats))
    shots = serve_and_screenshot({"moved": moved, "unmoved": unmoved}, label)
    shot = shots["moved"]
    expected = expected_view(photo, camera, (shot.shape[1], shot.shape[0]))
    Image.fromarray(expected).save(SCREENSHOT_DIR / f"worldstitch_viewer_{label}_expected.png")
    drawn, wanted = shot[OVERLAY_ROWS:], expected[OVERLAY_ROWS:]
    assert drawn.mean() > 20 and (drawn.max(-1) < 8).mean() < 0.05, f"{label}: the first frame is (partly) black"
    score = similarity(drawn, wanted)
    assert score > MIN_CORRELATION, f"{label}: first frame does not look like the photo (r={score:.2f})"
    hue_gap = np.abs(chromaticity(drawn) - chromaticity(wanted)).max()
    assert hue_gap < MAX_CHROMATICITY_GAP, f"{label}: the colours differ (chromaticity gap {hue_gap:.3f})"
    before_score = similarity(shots["unmoved"][OVERLAY_ROWS:], wanted)
    assert before_score < OFF_SCENE_MAX_CORRELATION, f"{label}: the untransformed scene already matched"


@pytest.mark.browser
@needs_chromium
def test_viewer_opens_on_the_room_example(tmp_path):
    check_opens_on_photo(tmp_path, "room", room_scene())


@pytest.mark.browser
@needs_chromium
def test_viewer_opens_on_a_real_photo(tmp_path):
    check_opens_on_photo(tmp_path, "photo", photo_scene())
