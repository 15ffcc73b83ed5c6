"""Leftovers of a job killed with SIGKILL are gone after the next start's cleanup; work bounds name the limit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.cameras import make_cameras
from pipeline.cleanup import (
    OWNER_FILE,
    Owner,
    WorkLimitError,
    WorkLimits,
    check_work,
    claim_process_dir,
    remove_dead_process_dirs,
    remove_staging_dirs,
    startup_cleanup,
)

ROOT = Path(__file__).resolve().parents[1]
KILL_TIMEOUT_S = 240  # the child grows a tiny scene first (seconds on a quiet machine; more when shared)

# A child process that claims its folders like the app, caches a "result" like Gradio, runs a real job and is
# SIGKILLed while the job's staging folder is full (the video stage: every other file is written). It prints the
# paths it made.
CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from core.images import load_image
    from pipeline.cleanup import claim_process_dir
    from pipeline.config import build_run_config
    from pipeline.job import JobRequest, load_components, run_job

    app_root, cli_out = Path(sys.argv[1]), Path(sys.argv[2])
    gradio_dir = claim_process_dir(app_root / "gradio")
    jobs_dir = claim_process_dir(app_root / "jobs")
    (gradio_dir / "cached-result").mkdir()
    (gradio_dir / "cached-result" / "splats.ply").write_bytes(b"ply" * 1000)
    out = jobs_dir / "job-1" if sys.argv[3] == "app" else cli_out

    def progress(event):
        if event.stage == "video":
            print(json.dumps({"gradio": str(gradio_dir), "jobs": str(jobs_dir), "out": str(out)}), flush=True)
            time.sleep(600)  # killed here, with the staging folder on disk

    config = build_run_config("draft", mode="stage", size=(96, 72), profile="offline", splat_iters=5, video=True)
    photo = load_image(Path(os.environ["WS_ROOT"]) / "examples" / "room" / "image.png")
    run_job(JobRequest(photo, config), load_components(config), out, progress=progress)
    """
)


def kill_mid_job(tmp_path: Path, layout: str) -> dict:
    env = {**os.environ, "WS_ROOT": str(ROOT), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    args = [sys.executable, "-c", CHILD, str(tmp_path / "app"), str(tmp_path / "cli" / "out"), layout]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = child.stdout.readline()  # blocks until the job reaches the video stage (or dies)
        assert line, f"the child died before the video stage: {child.stderr.read()[-2000:]}"
        paths = json.loads(line)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return paths


def test_app_layout_kill_9_then_startup_cleanup_leaves_nothing(tmp_path):
    paths = kill_mid_job(tmp_path, "app")
    out = Path(paths["out"])
    staging = list(out.parent.glob(f".{out.name}.partial-*"))
    assert staging and any(p.is_file() for p in staging[0].rglob("*")), "the kill should leave a staging folder"
    assert (Path(paths["gradio"]) / "cached-result" / "splats.ply").is_file()
    mine = claim_process_dir(tmp_path / "app" / "gradio")  # this (live) process's cache survives
    removed = startup_cleanup(tmp_path / "app")
    assert {Path(paths["gradio"]), Path(paths["jobs"])} <= set(removed)
    leftovers = [p for p in (tmp_path / "app").rglob("*") if not p.is_relative_to(mine)]
    assert sorted(p.name for p in leftovers) == ["gradio", "jobs"], leftovers  # only the empty claim roots
    assert (mine / OWNER_FILE).is_file()


def test_cli_layout_kill_9_then_staging_removed(tmp_path):
    paths = kill_mid_job(tmp_path, "cli")
    out = Path(paths["out"])
    assert list(out.parent.glob(f".{out.name}.partial-*"))
    neighbour = out.parent / ".other.partial-abc"  # another output's staging: not ours to remove
    neighbour.mkdir()
    remove_staging_dirs(out)
    assert sorted(p.name for p in out.parent.iterdir()) == [".other.partial-abc"]


def test_live_owner_kept_dead_and_reused_pid_removed(tmp_path):
    live = claim_process_dir(tmp_path)
    reused = tmp_path / "reused"
    reused.mkdir()
    me = Owner.current()
    (reused / OWNER_FILE).write_text(json.dumps({"pid": me.pid, "started": me.started - 3600}))  # pid reused
    unclaimed = tmp_path / "half-made"
    unclaimed.mkdir()
    assert remove_dead_process_dirs(tmp_path) == [reused]
    assert remove_dead_process_dirs(tmp_path, now=time.time() + 3600) == [unclaimed]
    assert live.is_dir()


def test_work_limits_name_the_limit():
    check_work(make_cameras("sphere", (512, 384)))
    many = make_cameras("single", (64, 48)) * 20_000
    with pytest.raises(WorkLimitError, match="at most 200 views; this one has 20000"):
        check_work(many)
    with pytest.raises(WorkLimitError, match="limit is 64 megapixels"):
        check_work(make_cameras("sphere", (1536, 1152)))
    check_work(many, WorkLimits(max_views=20_000, max_megapixels=100))


def test_app_start_after_kill_9_leaves_only_its_own_folders(tmp_path, monkeypatch):
    """What ``python app.py`` does at start (:func:`app.prepare_temp_dirs`): a job killed mid-way leaves nothing
    after the next start, and the new process claims fresh folders for Gradio's cache and its jobs."""
    import app

    monkeypatch.setenv("GRADIO_TEMP_DIR", "")  # restored after the test: prepare_temp_dirs sets it
    paths = kill_mid_job(tmp_path, "app")
    assert any(p.is_file() for p in Path(paths["jobs"]).rglob("*")), "the kill should leave job files"
    jobs = app.prepare_temp_dirs(tmp_path / "app")
    gradio_dir = Path(os.environ["GRADIO_TEMP_DIR"])
    assert not Path(paths["gradio"]).exists() and not Path(paths["jobs"]).exists()
    assert gradio_dir.parent == tmp_path / "app" / "gradio" and jobs.parent == tmp_path / "app" / "jobs"
    left = sorted(p.relative_to(tmp_path / "app") for p in (tmp_path / "app").rglob("*") if p.is_file())
    assert left == sorted(Path(d.parent.name, d.name, OWNER_FILE) for d in (gradio_dir, jobs)), left
