"""The app in a real browser: pick an example, Generate, and check what the splat viewer shows first.

Needs Debian's ``chromium`` at /usr/bin/chromium (``apt-get install -y chromium``; CI installs it), driven by
Playwright's Python package with SwiftShader for WebGL. Never ``playwright install`` (no CDN access here).

With the real pipeline the viewer gets the copy of the splats moved so that Gradio's gsplat.js camera looks
through the input photo (:mod:`pipeline.viewer`): the first frame after a run must not be black and must
correlate with the photo's centre as the viewer's fixed focal length frames it — for the room example (with its
depth map) and for a real photograph. With the fake pipeline (a slab of photo-coloured splats at the origin) the
check is the orientation: the photo's top colour in the upper half of the drawn scene, its bottom colour below.
Screenshots are saved under /tmp (``worldstitch_app_*.png``) for people to look at.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app
from core.cameras import make_cameras
from pipeline.config import build_run_config, working_size
from tests.apptools import FakeRunner, launched, write_photo
from tests.test_viewer_browser import chromaticity, expected_view, similarity

CHROMIUM = Path(os.environ.get("WORLDSTITCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LEAD_SCREENSHOT = Path("/tmp/worldstitch_browser.png")  # a copy the maintainers can look at after a run
SCREENSHOT_DIR = Path("/tmp")
WORK_SIZE = (128, 96)  # (W, H) of the real runs: the longest side; a portrait photo keeps its aspect
MIN_PHOTO_CORRELATION = 0.5  # first frame vs the photo's centre (5 fitting iterations at 128 px: soft splats)
MAX_CHROMATICITY_GAP = 0.05

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.is_file(), reason=f"{CHROMIUM} missing: install Debian's chromium (apt-get install -y chromium)"
    ),
]


def example_dir(tmp_path: Path) -> Path:
    """The project's examples when present, else stand-ins with a sky-over-ground photo."""
    if all(app.example_photo(app.EXAMPLES_DIR / name) for name in app.EXAMPLE_NAMES):
        return app.EXAMPLES_DIR
    folder = tmp_path / "examples"
    for name in app.EXAMPLE_NAMES:
        (folder / name).mkdir(parents=True)
        write_photo(folder / name / "image.png")
        (folder / name / "prompt.txt").write_text(f"a {name}")
    return folder


def pick_example(page, index: int, examples: Path) -> Path:
    """Click example ``index`` (by its readable name) and wait until its photo is in the form; returns the photo."""
    name = app.EXAMPLES[index]
    photo = app.example_photo(examples / name.folder)
    page.locator("#examples button").get_by_text(name.label).click()
    page.locator(f'#photo [aria-label="{photo.name}"]').first.wait_for(timeout=30_000)
    return photo


def row_profile(image: np.ndarray, mask: np.ndarray | None = None, rows: int = 16) -> np.ndarray:
    """Mean colour of ``rows`` horizontal bands (top to bottom), over masked pixels only."""  # image [H, W, 3]
    if mask is None:
        mask = np.ones(image.shape[:2], bool)
    rows_with_scene = np.nonzero(mask.any(1))[0]
    top, bottom = rows_with_scene.min(), rows_with_scene.max() + 1
    edges = np.linspace(top, bottom, rows + 1).astype(int)
    profile = []
    for start, stop in zip(edges[:-1], edges[1:]):
        band, band_mask = image[start:stop].astype(float), mask[start:stop]
        profile.append(band[band_mask].mean(0) if band_mask.any() else np.full(3, np.nan))
    return np.array(profile)  # [rows, 3]


def scene_pixels(canvas: np.ndarray) -> np.ndarray:
    """Mask of pixels that differ from the viewer's background (its most common colour)."""  # [H, W, 3]
    pixels = canvas.reshape(-1, 3).astype(int)
    bins = (pixels // 16) @ np.array([256, 16, 1])
    background_bin = np.bincount(bins).argmax()
    background = pixels[bins == background_bin].mean(0)
    return np.abs(canvas.astype(float) - background).sum(-1) > 30


OVERLAY_ROWS = 40  # the block label and download button sit over the canvas's top edge
WHEEL_STEP = 600  # one scroll "notch" burst; the viewer's zoom grows with distance, clamped at 30 units
BORDER_PX = 4  # the block's border shows in the element screenshot
MIN_COVERAGE = 0.05  # fraction of the canvas the scene must cover to count as "shown"
SETTLED_MEAN_DIFF = 0.5  # mean absolute pixel change between two screenshots of a fully loaded, still scene
VIEWER_TIMEOUT_S = 180  # SwiftShader WebGL on a loaded 2-core machine took > 90 s to show the canvas once


def wait_for_scene(page, timeout_s: float, settle_s: float = 30) -> np.ndarray:
    """Screenshots of the viewer canvas (below its overlays) until the scene covers enough of it and has finished
    loading (gsplat.js streams the PLY in: two screenshots a second apart agree), or the time is up; returns the
    last — the first complete frame, before any user interaction."""
    canvas = page.locator("#viewer canvas").first
    canvas.wait_for(state="visible", timeout=timeout_s * 1000)
    deadline = time.time() + timeout_s
    while True:
        shot = canvas_shot(page)
        if scene_pixels(shot).mean() > MIN_COVERAGE or time.time() > deadline:
            break
        time.sleep(1.0)
    deadline = time.time() + settle_s
    while time.time() < deadline:
        time.sleep(1.0)
        previous, shot = shot, canvas_shot(page)
        if np.abs(shot.astype(float) - previous).mean() < SETTLED_MEAN_DIFF:
            break
    return shot


def canvas_shot(page) -> np.ndarray:
    """The viewer canvas below its overlays (label, download button) and inside its border."""  # -> [H, W, 3]
    png = page.locator("#viewer canvas").first.screenshot(timeout=120_000)  # software WebGL can be slow to settle
    shot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return shot[OVERLAY_ROWS:-BORDER_PX, BORDER_PX:-BORDER_PX]


def zoom_out(page, steps: int, settle_s: float = 40) -> np.ndarray:
    """Scroll out over the viewer as a user would, then wait until the (damped) camera has settled."""
    canvas = page.locator("#viewer canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(steps):
        page.mouse.wheel(0, WHEEL_STEP)
        time.sleep(0.3)
    deadline = time.time() + settle_s
    previous = canvas_shot(page)
    while True:
        time.sleep(2)
        shot = canvas_shot(page)
        if np.abs(shot.astype(float) - previous).mean() < 0.5 or time.time() > deadline:
            return shot
        previous = shot


VIEWER_ATTEMPTS = 2
"""Whole page flows tried before a missing viewer fails the test: in full-suite runs on the 2-core machine the
viewer's canvas sometimes never appeared (software WebGL; 2 of 5 full runs on 2026-12-01, a different browser test
each time, every one of them passing alone), while the job had finished and its downloads were listed."""


def drive(
    url: str, examples: Path, label: str, job_timeout_s: float, example: int = 0, zoom_out_steps: int = 0
) -> tuple[np.ndarray, Path, Path]:
    """Open the page, pick an example, Generate; the viewer canvas once the scene is drawn, the page screenshot
    and the example's photo."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for attempt in range(1, VIEWER_ATTEMPTS + 1):
                page = browser.new_page(viewport={"width": 1280, "height": 1200})
                try:
                    return _generate_and_view(page, examples, url, label, job_timeout_s, example, zoom_out_steps)
                except ViewerMissing as missing:
                    if attempt == VIEWER_ATTEMPTS:
                        raise AssertionError(str(missing)) from None
                    print(f"attempt {attempt}: {missing}; trying the whole flow again in a new page")
                finally:
                    page.close()
        finally:
            browser.close()
    raise AssertionError("unreachable")


class ViewerMissing(Exception):
    """The job finished but the viewer drew nothing in time."""


def _generate_and_view(page, examples, url, label, job_timeout_s, example, zoom_out_steps):
    page.goto(url)
    page.locator("#generate").wait_for(timeout=60_000)
    banner = page.locator("#profile-banner").inner_text()
    assert "profile" in banner.lower()
    photo = pick_example(page, example, examples)
    page.locator("#estimate").get_by_text("Estimated time").wait_for(timeout=30_000)
    page.locator("#generate").click()
    time.sleep(2)
    page.screenshot(path=str(SCREENSHOT_DIR / f"worldstitch_app_{label}_running.png"))
    done = page.locator("#status").get_by_text(re.compile(r"^Done in"))
    error = page.locator(".toast-message-text.error")
    done.or_(error).first.wait_for(timeout=job_timeout_s * 1000)
    assert not error.count(), f"the job failed in the browser: {error.first.inner_text()}"
    status = page.locator("#status").inner_text()
    assert " 1 views" not in status, status
    try:
        canvas = wait_for_scene(page, timeout_s=VIEWER_TIMEOUT_S)
    except Exception:
        page.locator("#viewer").scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOT_DIR / f"worldstitch_app_{label}_no_viewer.png"))
        raise ViewerMissing(f"the viewer showed nothing after: {status}") from None
    if zoom_out_steps:
        canvas = zoom_out(page, zoom_out_steps)
    shot = SCREENSHOT_DIR / f"worldstitch_app_{label}_page.png"
    page.screenshot(path=str(shot), full_page=False)
    Image.fromarray(canvas).save(SCREENSHOT_DIR / f"worldstitch_app_{label}_viewer.png")
    for name in ("splats.ply", "scene.glb"):
        assert page.locator(f'#downloads [aria-label="{name}"]').count() == 1, name
    return canvas, shot, photo


def check_upright_scene(canvas: np.ndarray, photo: np.ndarray) -> None:
    """Not blank, and the drawn scene's top-to-bottom colour profile matches the photo's upright, not flipped."""
    mask = scene_pixels(canvas)
    coverage = mask.mean()
    assert coverage > MIN_COVERAGE, f"the viewer looks blank ({coverage:.1%} of the canvas differs from background)"
    assert canvas[mask].astype(float).std(0).max() > 5, "the viewer shows one flat colour"
    drawn = row_profile(canvas, mask)
    expected = row_profile(photo)
    valid = ~np.isnan(drawn).any(1)
    assert valid.sum() >= 8, "too few rows of the canvas show the scene"

    def agreement(reference: np.ndarray) -> float:
        a, b = drawn[valid].ravel(), reference[valid].ravel()
        return float(np.corrcoef(a, b)[0, 1])

    upright, flipped = agreement(expected), agreement(expected[::-1])
    assert upright > flipped, f"the scene looks upside down (upright r={upright:.2f}, flipped r={flipped:.2f})"
    assert upright > 0.3, f"the drawn scene does not resemble the photo (r={upright:.2f})"


def check_opens_on_photo(canvas: np.ndarray, photo_path: Path, label: str) -> None:
    """The first frame is not black and looks like the photo's centre, as the viewer's focal length frames it."""
    photo = Image.open(photo_path).convert("RGB")
    width, height = working_size(photo.width, photo.height, build_run_config(size=WORK_SIZE).scene)
    small = np.asarray(photo.resize((width, height), Image.BILINEAR))
    camera = make_cameras("single", (width, height))[0]
    # the viewer's principal point is the whole canvas's centre; canvas_shot cut the overlays and border off
    full = (canvas.shape[1] + 2 * BORDER_PX, canvas.shape[0] + OVERLAY_ROWS + BORDER_PX)
    expected = expected_view(small, camera, full)[OVERLAY_ROWS:-BORDER_PX, BORDER_PX:-BORDER_PX]
    Image.fromarray(expected).save(SCREENSHOT_DIR / f"worldstitch_app_{label}_expected.png")
    assert canvas.mean() > 20 and (canvas.max(-1) < 8).mean() < 0.05, f"{label}: the first frame is (partly) black"
    score = similarity(canvas, expected)
    assert score > MIN_PHOTO_CORRELATION, f"{label}: the first frame does not look like the photo (r={score:.2f})"
    gap = np.abs(chromaticity(canvas) - chromaticity(expected)).max()
    assert gap < MAX_CHROMATICITY_GAP, f"{label}: the colours differ (chromaticity gap {gap:.3f})"


def _serve(tmp_path: Path, runner, label: str, job_timeout_s: float, splat_iters: int, example: int = 0):
    examples = example_dir(tmp_path)
    settings = app.AppSettings(
        output_root=tmp_path / "jobs",
        examples_dir=examples,
        form=app.FormDefaults(mode="stage", quality="custom", size=WORK_SIZE, splat_iters=splat_iters, video=False),
    )
    demo = app.build_demo(runner, settings, use_zero_gpu=False)
    with launched(demo) as url:
        canvas, shot, photo = drive(url, examples, label, job_timeout_s, example)
    shutil.copyfile(shot, LEAD_SCREENSHOT)
    return canvas, photo


def test_browser_example_generate_viewer_fake_pipeline(tmp_path):
    """App wiring and viewer orientation with the fake pipeline (splats coloured from the photo, +Y down)."""
    canvas, photo = _serve(tmp_path, FakeRunner(), "fake", job_timeout_s=60, splat_iters=0)
    check_upright_scene(canvas, np.asarray(Image.open(photo).convert("RGB")))


def _offline_runner():
    registry = pytest.importorskip("models.registry", reason="models.registry (the real pipeline) not available")
    return app.PipelineRunner(registry.build_components("offline"))


def test_browser_room_example_opens_on_the_photo(tmp_path):
    """The real offline pipeline on the room example (with its depth map): the viewer opens on the photo."""
    canvas, photo = _serve(tmp_path, _offline_runner(), "room", job_timeout_s=150, splat_iters=5, example=0)
    check_opens_on_photo(canvas, photo, "room")


def test_browser_real_photo_opens_on_the_photo(tmp_path):
    """A real photograph (no depth map: the offline profile's geometric depth): the viewer opens on the photo."""
    index = app.EXAMPLE_NAMES.index("photo-wine-corner")
    canvas, photo = _serve(tmp_path, _offline_runner(), "photo", job_timeout_s=150, splat_iters=5, example=index)
    check_opens_on_photo(canvas, photo, "photo")


def test_browser_error_toast_has_no_internals(tmp_path):
    """A failing job shows a readable error toast (no paths, no traceback) and the page stays usable."""
    from playwright.sync_api import sync_playwright

    examples = example_dir(tmp_path)
    settings = app.AppSettings(
        output_root=tmp_path / "jobs",
        examples_dir=examples,
        form=app.FormDefaults(mode="stage", quality="custom", size=(128, 96), splat_iters=0, video=False),
    )
    demo = app.build_demo(FakeRunner(fail="crash"), settings, use_zero_gpu=False)
    with launched(demo) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1200})
            page.goto(url)
            page.locator("#generate").wait_for(timeout=60_000)
            pick_example(page, 0, examples)
            page.locator("#generate").click()
            toast = page.locator(".toast-message-text.error").first
            toast.wait_for(timeout=30_000)
            text = toast.inner_text()
        finally:
            browser.close()
    assert "Something went wrong" in text and "reference" in text
    assert "/" not in text and "Traceback" not in text and "secret" not in text
