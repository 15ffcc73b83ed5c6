"""The web app through its public API (gradio_client against a local launch) and its handlers directly.

Most tests inject :class:`tests.apptools.FakeRunner` (milliseconds per job); ``test_real_pipeline_job`` runs the
real offline pipeline at 128×96 when ``models.registry`` is importable.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from plyfile import PlyData

import app
from pipeline.config import build_run_config, preset_values, working_size
from tests.apptools import (
    SPLAT_FIELDS,
    VIEWER_COPY_COMMENT,
    FakeRunner,
    last_update,
    last_update_kept,
    launched,
    served_fake_app,
    write_photo,
)

QUEUE_MAX_SIZE = 2
REPO = Path(__file__).resolve().parents[1]


def job_args(photo, *, seed=7, mode="stage", quality="custom", width=128, height=96, splat_iters=0, **changes):
    """The /generate arguments in order, tiny by default."""
    args = dict(
        image=handle_file(str(photo)),
        prompt="a small room",
        negative_prompt="",
        mode=mode,
        seed=seed,
        randomize_seed=False,
        quality=quality,
        aspect="keep",
        depth=None,
        steps=10,
        guidance=7.5,
        width=width,
        height=height,
        fov_deg=60.0,
        splat_iters=splat_iters,
        video=False,
        renderer="torch",
    )
    args.update(changes)
    return list(args.values())


def check_splat_ply(path) -> PlyData:
    """The file Gradio's splat viewer needs: every field float, finite, unit quaternions, header < 10 KiB."""
    raw = Path(path).read_bytes()
    assert raw.index(b"end_header") < 10 * 1024
    ply = PlyData.read(str(path))
    vertex = ply["vertex"]
    names = [prop.name for prop in vertex.properties]
    for name in SPLAT_FIELDS:
        assert name in names, f"{name} missing from {names}"
        assert vertex.data.dtype[name] == np.float32
        assert np.isfinite(vertex.data[name]).all(), name
    assert len(vertex.data) > 0
    quats = np.stack([vertex.data[f"rot_{i}"] for i in range(4)], axis=1)
    norms = np.linalg.norm(quats, axis=1)
    assert np.all(norms > 0)
    return ply


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("app")


@pytest.fixture(scope="module")
def photo(workdir) -> Path:
    return write_photo(workdir / "photo.png")


@pytest.fixture(scope="module")
def served(workdir):
    """One server for the module: a fake runner the tests reconfigure, a small queue."""
    with served_fake_app(workdir, QUEUE_MAX_SIZE) as (runner, url, settings, _demo):
        yield runner, url, settings


@pytest.fixture
def runner(served):
    runner, _, _ = served
    runner.fail, runner.view_delay_s, runner.num_views = None, 0.0, 3
    runner.calls.clear()
    runner.cancelled.clear()
    runner.max_running = 0
    return runner


@pytest.fixture
def client(served) -> Client:
    return Client(served[1], verbose=False)


def test_full_job_returns_splat_ply_downloads_gallery_and_timings(runner, client, photo, served):
    status, viewer, downloads, gallery, timings, seed = client.predict(*job_args(photo, seed=11), api_name="/generate")

    assert status.startswith("Done") and "seed 11" in status
    assert f"from {runner.num_views} views" in status
    assert seed == 11
    ply = check_splat_ply(viewer)
    assert "seed 11" in "\n".join(ply.comments)
    assert VIEWER_COPY_COMMENT in "\n".join(ply.comments)  # the viewer shows the copy that opens on the photo
    names = sorted(Path(p).name for p in downloads)
    assert names == ["frames.zip", "points.ply", "scene.glb", "scene.splat", "splats.ply"]  # not viewer/
    assert len(gallery) == 2 * runner.num_views
    assert [row[0] for row in timings["data"]][-1] == "total"
    # the request the pipeline saw: decoded by our loader, the run configuration from the form
    request = runner.calls[-1]
    config = request.config
    assert tuple(request.image.shape) == (96, 128, 3) and working_size(128, 96, config.scene) == (128, 96)
    assert config.scene.mode == "stage" and config.splats.iterations == 0 and config.video is False
    assert config.scene.seed == config.splats.seed == 11 and config.scene.prompt == "a small room"
    # the job folder is gone: Gradio served copies from its cache
    assert list(served[2].output_root.iterdir()) == []


def test_quality_preset_sets_size_steps_and_iterations_keeping_aspect(runner, client, photo):
    """A preset ignores the advanced sliders (they only count for "custom")."""
    client.predict(*job_args(photo, quality="draft", width=1024, height=1024, steps=99), api_name="/generate")
    config = runner.calls[-1].config
    size, steps, splat_iters = preset_values("draft")
    assert working_size(128, 96, config.scene) == size  # the photo is 4:3 like the preset's size
    assert config.models.options.diffusion.steps == steps != 99
    assert config.splats.iterations == splat_iters


def test_random_seed_is_reported(runner, client, photo):
    *_, seed = client.predict(*job_args(photo, seed=5, randomize_seed=True), api_name="/generate")
    assert runner.calls[-1].config.scene.seed == seed
    assert 0 <= seed <= app.Limits().seed_max


def test_concurrent_jobs_bounded_queue_each_gets_its_own_seed(runner, served, photo):
    """N+3 clients at once: one job runs at a time, at most max_size wait, the rest are refused; no mixing."""
    runner.view_delay_s = 0.4
    url = served[1]
    seeds = list(range(100, 100 + QUEUE_MAX_SIZE + 3))
    clients = [Client(url, verbose=False) for _ in seeds]

    def one(pair):
        client, seed = pair
        try:
            return seed, client.predict(*job_args(photo, seed=seed), api_name="/generate")
        except Exception as err:  # noqa: BLE001 - a refused job is an expected outcome here
            return seed, err

    with ThreadPoolExecutor(len(seeds)) as pool:
        results = list(pool.map(one, zip(clients, seeds)))

    done = {seed: out for seed, out in results if not isinstance(out, Exception)}
    refused = [(seed, out) for seed, out in results if isinstance(out, Exception)]
    assert runner.max_running == 1
    assert 1 <= len(done) <= 1 + QUEUE_MAX_SIZE + 1  # +1: a job may finish while others arrive
    assert len(refused) >= 1
    for _, err in refused:
        assert "queue" in str(err).lower() and "full" in str(err).lower()
    for seed, (_, viewer, downloads, _, _, seed_out) in done.items():
        assert seed_out == seed
        assert f"seed {seed}".encode() in Path(viewer).read_bytes()[:1024]
        splat = next(p for p in downloads if Path(p).name == "splats.ply")
        assert f"seed {seed}".encode() in Path(splat).read_bytes()[:1024]


def test_cancel_stops_the_job_and_frees_the_worker(runner, client, photo, served):
    runner.view_delay_s, runner.num_views = 0.3, 40  # ~12 s if never cancelled
    job = client.submit(*job_args(photo, seed=21), api_name="/generate")
    deadline = time.time() + 20
    while not runner.calls and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    started = time.time()
    job.cancel()
    deadline = time.time() + 10
    while 21 not in runner.cancelled and time.time() < deadline:
        time.sleep(0.05)
    assert runner.cancelled == [21], "the pipeline never saw the cancel event"
    assert time.time() - started < 10  # loaded CI machines; typically < 1 s

    runner.view_delay_s, runner.num_views = 0.0, 2
    begin = time.time()
    status, *_ = client.predict(*job_args(photo, seed=22), api_name="/generate")
    assert status.startswith("Done") and time.time() - begin < 15
    assert list(served[2].output_root.iterdir()) == []


def test_cancel_button_sets_the_sessions_event(tmp_path, photo):
    """The Cancel button's handler reaches the job of the same browser session only."""
    runner = FakeRunner(view_delay_s=0.1, num_views=100)
    ws = app.WorldStitchApp(runner, app.AppSettings(output_root=tmp_path / "jobs"), use_zero_gpu=False)
    session = type("Request", (), {"session_hash": "session-a"})()
    other = type("Request", (), {"session_hash": "session-b"})()
    outputs = []

    def run():
        for update in ws.generate(*_handler_args(photo, seed=3), request=session, progress=lambda *a, **k: None):
            outputs.append(update)

    thread = threading.Thread(target=run)
    thread.start()
    while not runner.calls:
        time.sleep(0.02)
    assert ws.cancel(other) is not app.CANCELLED_MESSAGE  # no job in that session: the status is left alone
    time.sleep(0.3)
    assert runner.cancelled == []
    assert ws.cancel(session) == app.CANCELLED_MESSAGE  # shown on the status at once (the event is cancelled)
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert runner.cancelled == [3]
    assert outputs[-1][0] == app.CANCELLED_MESSAGE
    assert list((tmp_path / "jobs").iterdir()) == []


def _handler_args(photo, **changes):
    args = job_args(photo, **changes)
    args[0] = str(photo)
    return args


def test_banner_names_the_profile_and_how_to_get_the_other():
    offline = app.profile_banner(FakeRunner(profile="offline", description="PatchMatch + prior"))
    assert "offline profile" in offline and "--profile generative" in offline and "PatchMatch + prior" in offline
    assert "without AI models" in offline and "“Profiles: offline and generative”" in offline  # names the section
    cache_hint = app.profile_banner(FakeRunner(description="weights not in /root/.cache/huggingface/hub"))
    assert "/root" not in cache_hint and "hub" in cache_hint
    generative = app.profile_banner(FakeRunner(profile="generative"))
    assert "generative profile" in generative and "--profile offline" in generative
    # on a Space the banner links to the README section on the Space's page, and says why this profile runs
    url = f"https://huggingface.co/spaces/me/worldstitch#{app.PROFILES_ANCHOR}"
    linked = app.profile_banner(FakeRunner(profile="generative"), "me/worldstitch runs on ZeroGPU", url)
    assert f"]({url})" in linked and "runs on ZeroGPU" in linked


def test_readme_has_the_profiles_section_the_banner_links_to():
    """The anchor is GitHub's / the Hub's slug of a README heading (lower case, punctuation dropped, - for spaces)."""
    headings = [line.lstrip("#").strip() for line in (REPO / "README.md").read_text().splitlines() if line[:2] == "##"]
    slugs = {"-".join("".join(c for c in h.lower() if c.isalnum() or c in " -").split()) for h in headings}
    if app.PROFILES_ANCHOR not in slugs:
        pytest.xfail(f"README.md has no section '{app.PROFILES_ANCHOR}' yet (the integrator writes it)")
    assert app.PROFILES_ANCHOR in slugs


def test_importing_the_app_loads_no_models():
    """Weights load in main(), once; importing app.py (as Spaces and tests do) imports no model library (the
    option dataclasses of ``models.registry`` are plain Python)."""
    code = (
        "import sys, app; heavy = [m for m in sys.modules if m.split('.')[0] in ('diffusers', 'transformers')]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_examples_are_listed_at_the_top_with_names_prompts_and_depth(tmp_path):
    for index, name in enumerate(app.EXAMPLE_NAMES):
        folder = tmp_path / name
        folder.mkdir()
        write_photo(folder / ("image.png" if index % 2 else "image.jpg"))
        (folder / "prompt.txt").write_text(f"a {name}\n")
        if index == 0:
            (folder / "depth.png").write_bytes((REPO / "examples" / "room" / "depth.png").read_bytes())
    demo = app.build_demo(FakeRunner(), app.AppSettings(output_root=tmp_path / "jobs", examples_dir=tmp_path))
    examples = [block for block in demo.blocks.values() if isinstance(block, gr.Dataset)]
    assert len(examples) == 1
    dataset = examples[0]
    assert dataset.sample_labels == [example.label for example in app.EXAMPLES]  # readable, no "image.png"
    assert len(set(dataset.sample_labels)) == len(app.EXAMPLES)
    rows = app.example_rows(tmp_path)
    assert [row[1] for row in rows] == [f"a {name}" for name in app.EXAMPLE_NAMES]
    assert rows[0][2] == str(tmp_path / app.EXAMPLE_NAMES[0] / "depth.png")  # its own depth map goes with it
    assert all(row[2] is None for row in rows[1:])
    assert demo.worldstitch.examples.cache_examples is False
    # at the top: the examples come before the Generate button and the form's photo in the page
    order = list(demo.blocks)
    photo = next(i for i, b in demo.blocks.items() if getattr(b, "elem_id", None) == "photo")
    generate = next(i for i, b in demo.blocks.items() if getattr(b, "elem_id", None) == "generate")
    config = demo.get_config_file()
    flat = _layout_order(config["layout"])
    assert flat.index(dataset._id) < flat.index(photo) < flat.index(generate), order


def _layout_order(node) -> list[int]:
    """Component ids in page order (depth first through the layout tree)."""
    ids = [node["id"]] if "id" in node else []
    for child in node.get("children", []):
        ids += _layout_order(child)
    return ids


def test_project_examples_include_real_photos_and_depth_maps():
    rows = app.example_rows(app.EXAMPLES_DIR)
    folders = [Path(row[0]).parent.name for row in rows]
    assert folders == list(app.EXAMPLE_NAMES)
    photos = [row for row in rows if Path(row[0]).parent.name.startswith("photo-")]
    assert len(photos) == 3 and all(Path(row[0]).suffix == ".jpg" for row in photos)
    with_depth = {Path(row[0]).parent.name for row in rows if row[2]}
    assert with_depth == {"room", "street", "landscape"}
    assert all(Path(row[2]).is_file() for row in rows if row[2])


def test_main_parses_host_port_and_model_options(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    args = app.parse_args(["--host", "0.0.0.0", "--port", "7999", "--profile", "offline"])
    assert (args.host, args.port, args.profile) == ("0.0.0.0", 7999, "offline")
    assert app.parse_args([]).host == "127.0.0.1"
    offload = app.parse_args(["--models.diffusion.cpu-offload", "--models.completion.scaling", "1.0"])
    assert offload.options.diffusion.cpu_offload is True and offload.options.completion.scaling == 1.0


def _real_components():
    registry = pytest.importorskip("models.registry", reason="models.registry (the real pipeline) not available")
    try:
        return registry.build_components("offline")
    except (ImportError, NotImplementedError) as err:
        pytest.skip(f"offline components not buildable yet: {err}")


def test_real_pipeline_job(tmp_path):
    """The real offline pipeline behind the app: a tiny stage job gives a viewer-ready splat PLY, and the same
    seed gives the same bytes."""
    components = _real_components()
    photo = write_photo(tmp_path / "photo.png")
    settings = app.AppSettings(output_root=tmp_path / "jobs")
    demo = app.build_demo(app.PipelineRunner(components), settings, use_zero_gpu=False)
    with launched(demo) as url:
        client = Client(url, verbose=False)
        first = client.predict(*job_args(photo, seed=3, splat_iters=5), api_name="/generate")
        second = client.predict(*job_args(photo, seed=3, splat_iters=5), api_name="/generate")
    status, viewer, downloads, gallery, timings, _ = first
    assert status.startswith("Done"), status
    check_splat_ply(viewer)
    assert {"splats.ply", "scene.splat", "points.ply", "frames.zip"} <= {Path(p).name for p in downloads}
    assert len(gallery) >= 2
    assert Path(viewer).read_bytes() == Path(second[1]).read_bytes()
    assert list(settings.output_root.iterdir()) == []


def test_generate_rejects_missing_photo(client, runner, photo):
    with pytest.raises(AppError, match="Upload a photo"):
        client.predict(*job_args(photo, image=None), api_name="/generate")
    assert runner.calls == []


def test_a_job_waits_while_a_cancelled_one_still_holds_the_accelerator(tmp_path):
    import torch

    from pipeline.job import JobOutputs, JobRequest

    lock = threading.Lock()
    lock.acquire()  # a cancelled job still winding down
    runner = FakeRunner(num_views=1)
    request = JobRequest(torch.rand(96, 128, 3), build_run_config(size=(128, 96), seed=4))
    events = app.stream_job(runner, request, tmp_path / "job", threading.Event(), lock)
    first = next(events)
    assert first.stage == "waiting" and runner.calls == []
    lock.release()
    rest = [item for item in events if item is not None]
    assert isinstance(rest[-1], JobOutputs) and len(runner.calls) == 1
    assert not lock.locked()


def test_the_form_is_declared_once(tmp_path):
    """The page's Generate inputs are the form declaration's, in its order, with its defaults and bounds."""
    demo = app.build_demo(FakeRunner(), app.AppSettings(output_root=tmp_path / "jobs"), use_zero_gpu=False)
    fields = demo.worldstitch.fields
    generate = next(fn for fn in demo.fns.values() if fn.api_name == "generate")
    assert len(generate.inputs) == len(fields)
    for block, spec in zip(generate.inputs, fields):
        assert block.label == spec.label
        if spec.widget not in ("file",):
            assert block.value == spec.default, spec.name
        if spec.widget == "slider":
            assert (block.minimum, block.maximum) == spec.bounds, spec.name
    # the defaults are the run configuration's: the page as it opens runs what the CLI runs without options
    form = {spec.name: spec.default for spec in fields}
    assert form["negative_prompt"] == build_run_config().scene.negative_prompt
    assert (form["width"], form["height"]) == build_run_config().scene.size


def _dependency(demo, fn_name: str) -> dict:
    config = demo.get_config_file()
    fn = next(fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == fn_name)
    return config["dependencies"][fn._id]


def test_one_progress_display_on_the_status(tmp_path):
    """Generate and grow draw their progress on the status only (not on the viewer, downloads, seed, ...)."""
    demo = app.build_demo(FakeRunner(), app.AppSettings(output_root=tmp_path / "jobs"), use_zero_gpu=False)
    status = next(i for i, b in demo.blocks.items() if getattr(b, "elem_id", None) == "status")
    for name in ("generate", "grow"):
        dependency = _dependency(demo, name)
        assert dependency["show_progress"] == "full", name
        assert dependency["show_progress_on"] == [status], name
        assert len(dependency["outputs"]) >= 6  # many outputs, one progress display


def test_diffusion_controls_hidden_in_the_offline_profile(tmp_path):
    def visible(profile: str) -> dict[str, bool]:
        demo = app.build_demo(
            FakeRunner(profile=profile), app.AppSettings(output_root=tmp_path / profile), use_zero_gpu=False
        )
        generate = next(fn for fn in demo.fns.values() if fn.api_name == "generate")
        return {spec.name: block.visible for spec, block in zip(demo.worldstitch.fields, generate.inputs)}

    offline, generative = visible("offline"), visible("generative")
    assert offline["steps"] is False and offline["guidance"] is False
    assert generative["steps"] is True and generative["guidance"] is True
    assert all(offline[name] for name in ("image", "prompt", "mode", "quality", "video", "splat_iters"))


def test_estimate_before_generate_scales_with_views_and_size(tmp_path, photo):
    from webui.layout import _estimate

    runner = FakeRunner(profile="offline")

    def seconds(mode: str, quality: str = "draft", width=256, height=192, video=True) -> float:
        text = _estimate(runner, str(photo), mode, quality, "keep", width, height, None, 10, 100, video)
        assert text.startswith("Estimated time:"), text
        number = float(text.split("**about ")[1].split()[0])
        return number * (60 if "min**" in text else 1)

    single, stage, ring = seconds("single"), seconds("stage"), seconds("360")
    assert single < stage < ring and single * 2 < ring
    assert seconds("360", "default") > ring  # more pixels per view
    assert "14 views at 256×192" in _estimate(runner, str(photo), "360", "draft", "keep", 0, 0, None, 1, 1, True)
    assert "1 view at" in _estimate(runner, str(photo), "single", "draft", "keep", 0, 0, None, 1, 1, True)
    assert _estimate(runner, str(photo), "single", "custom", "keep", 8, 8, None, 1, 1, True) == ""  # too small


def test_pick_direction_from_a_panorama_click(tmp_path):
    from PIL import Image

    from webui.layout import direction_from_click

    panorama = tmp_path / "panorama.png"
    Image.new("RGB", (400, 200)).save(panorama)

    def click(x, y):
        return direction_from_click(str(panorama), type("Select", (), {"index": [x, y]})())

    assert click(200, 100) == (0, 0)  # the middle looks where the photo looks
    assert click(300, 50) == (90, 45)  # right and up
    assert click(0, 199) == (-180, -90)  # the bottom-left pixel: behind (left edge) and straight down


@pytest.fixture(scope="module")
def grown_app(tmp_path_factory):
    """The real offline pipeline behind the handlers; one tiny single-view scene generated in a session."""
    components = _real_components()
    root = tmp_path_factory.mktemp("grow")
    photo = write_photo(root / "photo.png")
    settings = app.AppSettings(output_root=root / "jobs", grow_limits=app.GrowLimits(max_views=3))
    ws = app.WorldStitchApp(app.PipelineRunner(components), settings, use_zero_gpu=False)
    session = type("Request", (), {"session_hash": "grow-session"})()
    args = _handler_args(photo, seed=5, mode="single", width=96, height=72, splat_iters=3, fov_deg=None)
    updates = ws.generate(*args, request=session, progress=lambda *a, **k: None)
    *shown, token = last_update_kept(updates, root / "kept")
    return ws, session, token, shown


def test_grow_where_i_look_through_the_handler(grown_app, tmp_path):
    ws, session, token, (status, viewer, downloads, gallery, timings, seed) = grown_app
    assert status.startswith("Done") and "from 1 view" in status and "views" not in status
    assert isinstance(token, str) and len(ws.scenes) == 1
    updates = ws.grow(token, 40, 0, request=session, progress=lambda *a, **k: None)
    status2, viewer2, downloads2, gallery2, timings2, token2 = last_update_kept(updates, tmp_path)
    assert status2.startswith("Grew toward yaw 40°") and "from 2 views" in status2, status2
    assert token2 == token and len(ws.scenes.get(token).result.frames) == 2
    assert len(gallery2) == 2 * 2  # each view and its depth
    check_splat_ply(viewer2)
    assert Path(viewer2).read_bytes() != Path(viewer).read_bytes()  # the viewer shows the grown scene
    names = {Path(p).name.split("-", 1)[1] for p in downloads2}
    assert names >= {"splats.ply", "scene.glb", "points.ply", "frames.zip"}

    def points(files) -> int:
        return PlyData.read(next(p for p in files if p.endswith("points.ply")))["vertex"].count

    assert points(downloads2) > points(downloads)
    assert list(ws.settings.output_root.iterdir()) == []


def test_grow_errors_budget_and_cancel(grown_app):
    ws, session, token, _ = grown_app
    quiet = dict(request=session, progress=lambda *a, **k: None)
    with pytest.raises(gr.Error, match="Turn"):
        last_update(ws.grow(token, 400, 0, **quiet))
    with pytest.raises(gr.Error, match="up/down"):
        last_update(ws.grow(token, 0, float("nan"), **quiet))
    with pytest.raises(gr.Error, match="press Generate first"):
        last_update(ws.grow("not-a-session-token", 10, 0, **quiet))
    while len(ws.scenes.get(token).result.frames) < ws.settings.grow_limits.max_views:
        last_update(ws.grow(token, 40, 0, **quiet))
    with pytest.raises(gr.Error, match="at most 3 views"):  # the session's memory budget, named
        last_update(ws.grow(token, 90, 0, **quiet))
    # cancel while growing: the status says so, nothing is kept from the cancelled step
    views = len(ws.scenes.get(token).result.frames)
    ws.settings.grow_limits = app.GrowLimits(max_views=10)
    updates = ws.grow(token, 70, 0, **quiet)  # overlaps the view grown at 40°
    first = next(updates)
    assert ws.cancel(session) == app.CANCELLED_MESSAGE, first
    assert last_update(updates)[0] == app.CANCELLED_MESSAGE
    assert len(ws.scenes.get(token).result.frames) == views
    assert list(ws.settings.output_root.iterdir()) == []


def test_scene_store_is_bounded_and_forgets():
    store = app.SceneStore(max_scenes=2, max_age_s=3600)
    config = build_run_config()
    tokens = [store.put(f"scene {i}", config) for i in range(3)]
    assert len(store) == 2
    with pytest.raises(gr.Error, match="Generate"):
        store.get(tokens[0])  # the oldest went first
    assert store.get(tokens[2]).result == "scene 2"
    store.drop(tokens[2])
    assert len(store) == 1
    expired = app.SceneStore(max_scenes=2, max_age_s=0)
    token = expired.put("scene", config)
    time.sleep(0.01)
    with pytest.raises(gr.Error):
        expired.get(token)


def test_the_page_cancel_reaches_a_job_started_through_the_server(tmp_path, photo):
    """Through the real server, Generate's handler gets the session (Gradio injects ``request`` only into
    positional parameters), so Cancel stops it and the job ends with the cancel message, not an error."""
    runner = FakeRunner(view_delay_s=0.2, num_views=100)
    demo = app.build_demo(runner, app.AppSettings(output_root=tmp_path / "jobs"), use_zero_gpu=False)
    ws = demo.worldstitch
    with launched(demo) as url:
        job = Client(url, verbose=False).submit(*job_args(photo, seed=31), api_name="/generate")
        deadline = time.time() + 30
        while not ws._cancel_events and time.time() < deadline:
            time.sleep(0.05)
        (session,) = ws._cancel_events  # the job registered under the browser session's id
        assert ws.cancel(type("Request", (), {"session_hash": session})()) == app.CANCELLED_MESSAGE
        status, *_ = job.result(timeout=30)
    assert status == app.CANCELLED_MESSAGE and runner.cancelled == [31]
