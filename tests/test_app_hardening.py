"""DESIGN.md's hardening checklist, item by item, where it applies to the web app.

Numbers in the test names refer to the checklist. Server tests talk only to 127.0.0.1; the pipeline is the fake
runner from :mod:`tests.apptools` so each job takes milliseconds.
"""

from __future__ import annotations

import ast
import http.client
import http.server
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import threading
import time
import types
import zlib
from importlib.metadata import version
from pathlib import Path

import cv2
import gradio as gr
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import app
import webui.runner
from pipeline.config import working_size
from tests.apptools import FakeRunner, last_update, served_fake_app, write_photo

REPO = Path(__file__).resolve().parents[1]


# --- fixtures -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hardening")


@pytest.fixture(scope="module")
def photo(workdir) -> Path:
    return write_photo(workdir / "photo.png")


@pytest.fixture(scope="module")
def served(workdir):
    with served_fake_app(workdir, queue_max_size=2) as served_app:
        yield served_app


@pytest.fixture
def runner(served):
    runner = served[0]
    runner.fail, runner.view_delay_s, runner.num_views = None, 0.0, 2
    runner.calls.clear()
    return runner


@pytest.fixture
def client(served) -> Client:
    return Client(served[1], verbose=False)


@pytest.fixture
def url(served) -> str:
    return served[1]


@pytest.fixture
def output_root(served) -> Path:
    return served[2].output_root


@pytest.fixture
def handler(tmp_path):
    """The Generate handler without a server: returns (app, runner, call)."""
    runner = FakeRunner(num_views=1)
    ws = app.WorldStitchApp(runner, app.AppSettings(output_root=tmp_path / "jobs"), use_zero_gpu=False)

    def call(image, **changes):
        return last_update(ws.generate(*handler_args(image, **changes), request=None, progress=lambda *a, **k: None))

    return ws, runner, call


DEFAULTS = dict(
    prompt="a room",
    negative_prompt="",
    mode="stage",
    seed=1,
    randomize_seed=False,
    quality="custom",
    aspect="keep",
    depth=None,
    steps=10,
    guidance=7.5,
    width=128,
    height=96,
    fov_deg=60.0,
    splat_iters=0,
    video=False,
    renderer="torch",
)


def handler_args(image, **changes) -> list:
    """The Generate handler's arguments in the form's order (a server path as the photo, as Gradio passes it)."""
    args = dict(DEFAULTS, image=str(image))
    args.update(changes)
    return [args[name] for name in ["image", *DEFAULTS]]


def api_args(image, **changes) -> list:
    args = dict(DEFAULTS, image=handle_file(str(image)) if not isinstance(image, dict) else image)
    args.update(changes)
    order = ["image", *DEFAULTS]
    return [args[name] for name in order]


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client-side ``..`` normalisation)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def call_raw(url: str, data: list) -> str:
    """Call /generate through Gradio's plain HTTP API (no client-side upload); returns the event stream text."""
    with httpx.Client(base_url=url, timeout=30) as http:
        event = http.post("/gradio_api/call/generate", json={"data": data}).json()
        if "event_id" not in event:
            return json.dumps(event)
        return http.get(f"/gradio_api/call/generate/{event['event_id']}").text


# --- 1 exact pin ----------------------------------------------------------------------------------------------------


def test_01_gradio_pinned_exactly():
    pins = dict(
        re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line).groups()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if re.match(r"^[A-Za-z0-9_.-]+==", line)
    )
    assert pins["gradio"] == gr.__version__ == version("gradio")
    assert tuple(int(part) for part in pins["gradio"].split(".")[:2]) >= (6, 20)
    assert pins["gradio_client"] == version("gradio_client")
    # Hugging Face installs requirements.txt: ZeroGPU's package must be pinned there (or in a file it includes)
    installed = (REPO / "requirements.txt").read_text() + (REPO / "space_requirements.txt").read_text()
    assert "spaces" in pins and re.search(r"^spaces==", installed, re.M)


# --- 2 / 8 file route and file inputs -----------------------------------------------------------------------------

TRAVERSALS = [
    "/gradio_api/file=/etc/passwd",
    "/gradio_api/file=../../../../../../etc/passwd",
    "/gradio_api/file=..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/gradio_api/file=%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/gradio_api/file=%252e%252e%252fetc%252fpasswd",
    "/gradio_api/file=/tmp/gradio/../../etc/passwd",
    "/gradio_api/file=%2Ftmp%2Fgradio%2F..%2F..%2Fetc%2Fpasswd",
    "/gradio_api/file=....//....//....//etc/passwd",
    "/file=/etc/passwd",
    "/file=../../../../etc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_02_file_route_refuses_traversal(url, path):
    status, body = raw_get(url, path)
    assert status in (400, 403, 404), (path, status)
    assert b"root:" not in body


@pytest.mark.parametrize("name", ["app.py", "requirements.txt", "tests/apptools.py"])
def test_02_file_route_does_not_serve_the_app_source(url, name):
    for path in (f"/gradio_api/file={REPO / name}", f"/gradio_api/file={name}"):
        status, body = raw_get(url, path)
        assert status in (403, 404), (path, status)


def test_02_allowed_paths_minimal(served):
    demo = served[3]
    assert demo.allowed_paths == []


def test_08_api_cannot_pass_a_server_path_as_the_photo(url, runner):
    for server_path in ("/etc/passwd", str(REPO / "app.py"), str(REPO / "examples")):
        stream = call_raw(url, api_args({"path": server_path, "meta": {"_type": "gradio.FileData"}}))
        assert "event: error" in stream or '"error"' in stream
        assert "root:" not in stream and "import gradio" not in stream
    assert runner.calls == []


def test_08_outputs_come_from_a_per_request_folder_that_is_removed(client, runner, photo, output_root):
    seen = []
    original = runner._run

    def spy(request, out_dir, progress, cancel):
        seen.append(out_dir)
        assert out_dir.parent == output_root and not out_dir.exists()
        return original(request, out_dir, progress, cancel)

    runner._run = spy
    try:
        for seed in (1, 2):
            client.predict(*api_args(photo, seed=seed), api_name="/generate")
    finally:
        del runner._run
    assert len(set(seen)) == 2
    assert list(output_root.iterdir()) == []


# --- 3 SSRF ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def trap_server():
    """A local HTTP server that counts every request it gets."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(b"\x89PNG\r\n\x1a\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_03_no_ssrf_through_file_route_or_file_inputs(url, runner, trap_server):
    trap, hits = trap_server
    status, _ = raw_get(url, f"/gradio_api/file={trap}/secret.png")
    assert status in (403, 404)
    payload = {"path": f"{trap}/photo.png", "url": f"{trap}/photo.png", "meta": {"_type": "gradio.FileData"}}
    stream = call_raw(url, api_args(payload))
    assert "error" in stream
    time.sleep(0.2)
    assert hits == []
    assert runner.calls == []


# --- 4 upload cap ---------------------------------------------------------------------------------------------------


def test_04_upload_cap_413(url, served):
    cap = int(served[2].limits.max_upload.removesuffix("mb")) * 1024 * 1024
    with httpx.Client(base_url=url, timeout=60) as http:
        big = http.post("/gradio_api/upload", files={"files": ("big.png", b"\0" * (cap + 1))})
        small = http.post("/gradio_api/upload", files={"files": ("small.png", b"\0" * 1000)})
    assert big.status_code == 413
    assert small.status_code == 200


# --- 5 bounded queue, one GPU job at a time -------------------------------------------------------------------------


def test_05_queue_is_bounded_and_the_gpu_job_runs_alone(served):
    demo = served[3]
    assert demo._queue.max_size == 2
    generate = next(fn for fn in demo.fns.values() if fn.api_name == "generate")
    assert generate.concurrency_limit == 1 and generate.concurrency_id == "gpu"
    # the concurrent behaviour itself: tests/test_app.py::test_concurrent_jobs_bounded_queue_each_gets_its_own_seed


# --- 6 no internal paths in errors ----------------------------------------------------------------------------------


def test_06_unexpected_errors_show_a_reference_not_internals(client, runner, photo):
    runner.fail = "crash"
    with pytest.raises(AppError) as caught:
        client.predict(*api_args(photo), api_name="/generate")
    message = str(caught.value)
    assert "reference" in message
    assert "/" not in message.replace("/generate", "") and "secret" not in message and "Traceback" not in message


def test_06_image_errors_name_only_the_file(client, runner, tmp_path):
    broken = tmp_path / "holiday.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(AppError) as caught:
        client.predict(*api_args(broken), api_name="/generate")
    message = str(caught.value)
    assert "holiday.png" in message
    assert "/tmp" not in message and "gradio" not in message.lower()


def test_06_public_message_strips_directories():
    text = "cannot read /tmp/gradio/abc123/photo.png or C:\\Users\\me\\x.png (see /work/main/app.py:12)"
    cleaned = app.public_message(text)
    assert "/tmp" not in cleaned and "Users" not in cleaned and "/work" not in cleaned
    assert "photo.png" in cleaned
    assert app.public_message("size 512x384, ratio 4/3") == "size 512x384, ratio 4/3"


# --- 7 monitoring off, only intended endpoints ----------------------------------------------------------------------


def test_07_monitoring_is_off(url):
    for path in ("/monitoring", "/monitoring/summary", "/monitoring/anything"):
        status, _ = raw_get(url, path)
        assert status in (403, 404), path


def test_07_api_lists_only_generate(url, client):
    info = client.view_api(return_format="dict", print_info=False)
    assert list(info["named_endpoints"]) == ["/generate"]
    assert info["unnamed_endpoints"] == {}
    openapi = httpx.get(f"{url}/gradio_api/openapi.json").json()
    endpoints = [p for p in openapi["paths"] if "/call/" in p or "/run/" in p]
    assert all("generate" in p for p in endpoints) and endpoints


# --- 9-13 images through the app ------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = 60_000) -> bytes:
    """A ~100-byte PNG that claims side×side RGB pixels (10.8 GB decoded)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


BOMB_CHILD = """
import resource, sys, time
from pathlib import Path
import gradio as gr
import app
from tests.apptools import FakeRunner, last_update
from tests.test_app_hardening import handler_args

runner = FakeRunner(num_views=1)
ws = app.WorldStitchApp(runner, app.AppSettings(output_root=Path(sys.argv[2])), use_zero_gpu=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; this fresh process's peak so far
started = time.perf_counter()
try:
    last_update(ws.generate(*handler_args(sys.argv[1]), request=None, progress=lambda *a, **k: None))
    outcome = "accepted"
except gr.Error as err:
    outcome = err.message
grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(repr((outcome, grown_kib, time.perf_counter() - started, len(runner.calls))))
"""


def test_09_decompression_bomb_refused_with_little_memory(tmp_path):
    """Measured in a fresh process: the high-water mark of this one was set by earlier tests and cannot move."""
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png())
    child = subprocess.run(
        [sys.executable, "-c", BOMB_CHILD, str(path), str(tmp_path / "jobs")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    outcome, grown_kib, seconds, calls = ast.literal_eval(child.stdout.strip().splitlines()[-1])
    assert re.search("pixels|too large", outcome), outcome
    assert seconds < 5
    assert grown_kib < 200 * 1024  # decoding would need 10.8 GB
    assert calls == 0


def test_10_formats_allow_listed(handler, tmp_path):
    _, runner, call = handler
    for fmt in ("GIF", "BMP", "TIFF"):
        path = tmp_path / f"photo.{fmt.lower()}"
        Image.new("RGB", (128, 96), (10, 200, 30)).save(path, format=fmt)
        with pytest.raises(gr.Error, match="PNG|JPEG|WEBP"):
            call(path)
    svg = tmp_path / "photo.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="128" height="96"/>')
    with pytest.raises(gr.Error):
        call(svg)
    assert runner.calls == []
    for fmt in ("PNG", "JPEG", "WEBP"):
        path = tmp_path / f"ok.{fmt.lower()}"
        Image.new("RGB", (128, 96), (10, 200, 30)).save(path, format=fmt)
        call(path)
    assert len(runner.calls) == 3


def test_11_corrupt_and_truncated_images_give_friendly_errors(handler, photo):
    _, _, call = handler
    data = photo.read_bytes()
    rng = np.random.default_rng(0)
    variants = [data[:n] for n in (0, 8, 20, 33, 60, len(data) // 2, len(data) - 12)]
    for _ in range(12):
        flipped = bytearray(data)
        for index in rng.integers(8, len(data), 6):
            flipped[index] ^= 0xFF
        variants.append(bytes(flipped))
    for index, variant in enumerate(variants):
        path = photo.parent / f"fuzz_{index}.png"
        path.write_bytes(variant)
        try:
            call(path)  # a flip may land where the decoder does not look: then the job simply runs
        except gr.Error as err:
            assert "Traceback" not in str(err) and "/" not in str(err).replace("PNG/JPEG", "")


def test_12_sixteen_bit_alpha_cmyk_and_exif_are_handled(handler, tmp_path):
    _, runner, call = handler
    # 16-bit colour: values between the 8-bit steps survive
    ramp = np.linspace(0, 65535, 128 * 96 * 3).reshape(96, 128, 3).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), ramp)
    call(tmp_path / "deep.png")
    image = runner.calls[-1].image.numpy()
    assert not np.allclose(image * 255, np.round(image * 255), atol=1e-3)
    # alpha: transparent pixels become white, not black
    rgba = np.zeros((96, 128, 4), np.uint8)
    rgba[..., 0] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cutout.png")
    call(tmp_path / "cutout.png")
    assert runner.calls[-1].image.min() > 0.99
    # CMYK JPEG
    Image.new("CMYK", (128, 96), (0, 255, 255, 0)).save(tmp_path / "print.jpg")
    call(tmp_path / "print.jpg")
    red = runner.calls[-1].image.numpy().mean(axis=(0, 1))
    assert red[0] > 0.8 and red[1] < 0.3
    # EXIF orientation 6 (rotate 90° clockwise to view): a 128×96 file is a 96×128 portrait photo
    landscape = Image.new("RGB", (128, 96), (0, 0, 0))
    landscape.paste((255, 255, 255), (0, 0, 64, 96))  # left half white in the file
    exif = Image.Exif()
    exif[0x0112] = 6
    landscape.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    call(tmp_path / "phone.jpg", quality="draft")
    request = runner.calls[-1]
    assert tuple(request.image.shape) == (128, 96, 3)  # portrait
    assert working_size(96, 128, request.config.scene) == (192, 256)  # the preset's longest side, kept upright
    upright = request.image.numpy()
    half = upright.shape[0] // 2
    assert upright[:half].mean() > 0.8 and upright[half:].mean() < 0.2  # file's left half is now the top


def test_13_size_and_aspect_policy(handler, tmp_path):
    _, runner, call = handler
    Image.new("RGB", (40, 40)).save(tmp_path / "tiny.png")
    with pytest.raises(gr.Error, match="64"):
        call(tmp_path / "tiny.png")
    Image.new("RGB", (800, 100)).save(tmp_path / "strip.png")
    with pytest.raises(gr.Error, match="aspect"):
        call(tmp_path / "strip.png", quality="draft")
    write_photo(tmp_path / "odd.png", width=203, height=150)
    call(tmp_path / "odd.png", quality="draft")
    assert working_size(203, 150, runner.calls[-1].config.scene) == (256, 184)  # sides rounded down to 8
    call(tmp_path / "odd.png", width=203, height=150, aspect="crop")
    assert working_size(203, 150, runner.calls[-1].config.scene) == (200, 144)
    call(tmp_path / "odd.png", width=203, height=150, aspect="keep")
    assert working_size(203, 150, runner.calls[-1].config.scene) == (200, 144)  # 203:150 → 200 × 147.8 → 144


# --- 14 / 15 prompt and numbers checked on the server ---------------------------------------------------------------


def test_14_prompt_length_checked_server_side(client, runner, photo):
    limit = app.Limits().max_prompt_chars
    with pytest.raises(AppError, match=f"at most {limit}"):
        client.predict(*api_args(photo, prompt="x" * (limit + 1)), api_name="/generate")
    with pytest.raises(AppError, match=f"at most {limit}"):
        client.predict(*api_args(photo, negative_prompt="y" * 100_000), api_name="/generate")
    assert runner.calls == []
    client.predict(*api_args(photo, prompt="x" * limit), api_name="/generate")
    assert len(runner.calls) == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"steps": 10**9},
        {"steps": 0},
        {"steps": 2.5},
        {"guidance": -1},
        {"guidance": 1e6},
        {"width": 100_000},
        {"height": 8},
        {"fov_deg": 179.0},
        {"splat_iters": -5},
        {"splat_iters": 10**7},
        {"seed": -1},
        {"seed": 2**64},
        {"mode": "../../etc/passwd.json"},
        {"mode": "examples/path.json"},
        {"quality": "ultra"},
        {"renderer": "os.system"},
        {"aspect": "stretch"},
    ],
)
def test_15_numbers_and_choices_bounded_server_side(client, runner, photo, changes):
    with pytest.raises(AppError):
        client.predict(*api_args(photo, **changes), api_name="/generate")
    assert runner.calls == []


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "12; rm -rf /", None])
def test_15_non_finite_and_non_numbers_refused(handler, photo, value):
    _, runner, call = handler
    with pytest.raises(gr.Error):
        call(photo, guidance=value)
    assert runner.calls == []


# --- 16 / 17 / 20 failures leave nothing behind and the next job is fine ------------------------------------------


def test_16_out_of_memory_is_a_clean_message_and_the_next_job_runs(client, runner, photo, output_root):
    runner.fail = "oom"
    with pytest.raises(AppError) as caught:
        client.predict(*api_args(photo), api_name="/generate")
    assert "memory" in str(caught.value) and "GiB" not in str(caught.value)
    assert list(output_root.iterdir()) == []
    runner.fail = None
    status, *_ = client.predict(*api_args(photo), api_name="/generate")
    assert status.startswith("Done")


def test_16_torch_oom_and_cuda_message_count_as_oom():
    import torch

    assert app.to_user_error(torch.OutOfMemoryError("CUDA out of memory")).message == app.OOM_MESSAGE
    assert app.to_user_error(RuntimeError("MPS backend out of memory")).message == app.OOM_MESSAGE


@pytest.mark.parametrize("failure", ["job_error", "black"])
def test_17_nan_or_black_output_is_refused_and_nothing_served(client, runner, photo, output_root, failure):
    runner.fail = failure
    with pytest.raises(AppError, match="NaN|black"):
        client.predict(*api_args(photo), api_name="/generate")
    assert list(output_root.iterdir()) == []


def test_20_a_crash_leaves_no_partial_files(client, runner, photo, output_root):
    runner.fail = "crash"
    with pytest.raises(AppError):
        client.predict(*api_args(photo), api_name="/generate")
    assert list(output_root.iterdir()) == []


# --- 22 cleanup -----------------------------------------------------------------------------------------------------


def test_22_gradio_cache_cleanup_configured(served):
    demo = served[3]
    assert demo.delete_cache == app.AppSettings().cache_cleanup
    every, older_than = demo.delete_cache
    assert 0 < every <= older_than <= 24 * 3600


def test_22_stale_job_folders_are_swept(tmp_path):
    root = tmp_path / "jobs"
    (root / "old-job").mkdir(parents=True)
    (root / ".old.partial-x").mkdir()
    (root / "fresh-job").mkdir()
    past = time.time() - 10 * 3600
    for name in ("old-job", ".old.partial-x"):
        os.utime(root / name, (past, past))
    app.WorldStitchApp(FakeRunner(), app.AppSettings(output_root=root), use_zero_gpu=False)
    assert sorted(p.name for p in root.iterdir()) == ["fresh-job"]


# --- 25 ZeroGPU -----------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_spaces(monkeypatch):
    """A stand-in for the ``spaces`` package that behaves like ZeroGPU at the boundary: arguments and yielded
    values are pickled, and it records what escaped the GPU function."""
    record = {"durations": [], "escaped": []}

    def gpu(duration=60):
        record["durations"].append(duration)

        def decorate(fn):
            def wrapper(*args):
                args = pickle.loads(pickle.dumps(args))
                try:
                    for item in fn(*args):
                        yield pickle.loads(pickle.dumps(item))
                except BaseException as err:
                    record["escaped"].append(type(err))
                    raise

            return wrapper

        return decorate

    module = types.ModuleType("spaces")
    module.GPU = gpu
    monkeypatch.setitem(sys.modules, "spaces", module)
    return record


def test_25_zero_gpu_wrapping_picklable_and_only_gr_error(tmp_path, photo, fake_spaces):
    runner = FakeRunner(num_views=1)
    settings = app.AppSettings(output_root=tmp_path / "jobs", gpu_duration_s=200)
    ws = app.WorldStitchApp(runner, settings, use_zero_gpu=True)
    assert fake_spaces["durations"] == [200]

    def run():
        return last_update(ws.generate(*handler_args(photo), request=None, progress=lambda *a, **k: None))

    status, viewer, *_ = run()
    assert status.startswith("Done") and Path(viewer).name == "splats.ply"
    for failure in ("job_error", "oom", "crash"):
        runner.fail = failure
        with pytest.raises(gr.Error):
            run()
    assert fake_spaces["escaped"] and all(issubclass(kind, gr.Error) for kind in fake_spaces["escaped"])
    assert list((tmp_path / "jobs").iterdir()) == []


def test_25_zero_gpu_space_turns_wrapping_on(tmp_path, fake_spaces, monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    ws = app.WorldStitchApp(FakeRunner(), app.AppSettings(output_root=tmp_path / "jobs"))
    assert ws.gpu_job is not None
    assert app.spaces_available()
    monkeypatch.delenv("SPACES_ZERO_GPU")
    assert not app.spaces_available()  # `spaces` installed but not on ZeroGPU hardware: no process boundary


def test_25_zero_gpu_duration_is_computed_per_job_and_bounded(tmp_path, photo, fake_spaces):
    """Each call asks ZeroGPU for the seconds its own mode, quality and size need, within ZeroGPU's limits."""
    from pipeline.config import build_run_config
    from pipeline.job import JobRequest
    from pipeline.space import ZERO_GPU_MAX_S, ZERO_GPU_MIN_S

    app.WorldStitchApp(FakeRunner(num_views=1), app.AppSettings(output_root=tmp_path / "jobs"), use_zero_gpu=True)
    (duration,) = fake_spaces["durations"]
    assert callable(duration)

    def seconds(preset: str, mode: str, **choices) -> int:
        import torch

        return duration(JobRequest(torch.zeros(8, 8, 3), build_run_config(preset, mode=mode, **choices)), "job")

    single, ring = seconds("default", "single"), seconds("default", "360")
    assert ZERO_GPU_MIN_S <= single < ring <= ZERO_GPU_MAX_S
    assert seconds("high", "sphere") == ZERO_GPU_MAX_S  # bounded: ZeroGPU would refuse more
    assert seconds("default", "360", steps=5) < ring  # the job's own steps count, not only the preset's


def test_25_no_spaces_no_wrapping(tmp_path, monkeypatch):
    monkeypatch.setattr(webui.runner, "spaces_available", lambda: False)
    ws = app.WorldStitchApp(FakeRunner(), app.AppSettings(output_root=tmp_path / "jobs"))
    assert ws.gpu_job is None


# --- checked elsewhere ----------------------------------------------------------------------------------------------
# 18 PLY fields/finite/quaternions: tests/test_app.py::check_splat_ply on every job the API returns.
# 19 hostile PLY headers: the app never reads a PLY a user sends (no PLY input); pipeline tests cover the reader.
# 21 isolation: tests/test_app.py::test_concurrent_jobs_bounded_queue_each_gets_its_own_seed.
# 23 cancel: tests/test_app.py::test_cancel_stops_the_job_and_frees_the_worker and ::test_cancel_button_...
# 24 same seed → same bytes: tests/test_app.py::test_real_pipeline_job (the fake runner is trivially seeded).
