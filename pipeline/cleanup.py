"""Leftovers of killed processes, removed at the next start, and bounds on the work one run may ask for.

Leftovers. A process killed with SIGKILL (out of memory, a hard restart of a Space) runs no ``finally``: it leaves
the job's hidden staging folder (``.<out>.partial-*``, see :mod:`pipeline.job`), its job folders and the results
Gradio cached for it. Removing "old" files by age alone would either keep them for hours or delete a live
neighbour's files, so each process that writes temporary folders *claims* a folder of its own
(:func:`claim_process_dir`): the folder holds ``owner.json`` with the process id and its start time, and
:func:`remove_dead_process_dirs` removes claimed folders whose owner is no longer running (a reused pid has another
start time). The app claims one folder for Gradio's cache (``GRADIO_TEMP_DIR``) and one for its job folders;
:func:`startup_cleanup` sweeps both at start. The CLI's staging folders sit beside the output the user chose;
:func:`remove_staging_dirs` removes those of one output name (a new run into that folder owns them).

Bounds. :func:`check_work` refuses a camera path with too many views or too much total work (views × pixels),
with a message naming the limit — a path file with 20,000 views would otherwise run for hours.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from core.files import atomic_write

OWNER_FILE = "owner.json"
START_TIME_TOLERANCE_S = 1.0
"""psutil reports a process's start time rounded to the clock tick; within this, it is the same process."""
UNCLAIMED_GRACE_S = 60.0
"""A folder under a claim root without ``owner.json`` is being claimed right now, or the claim crashed between
mkdir and the owner file: removed only once it is older than this."""
GRADIO_DIR = "gradio"
JOBS_DIR = "jobs"


@dataclass(frozen=True)
class Owner:
    """The process that owns a claimed folder."""

    pid: int
    started: float
    """The process's start time (``psutil.Process.create_time()``, seconds since the epoch)."""

    @staticmethod
    def current() -> Owner:
        return Owner(os.getpid(), psutil.Process().create_time())

    def alive(self) -> bool:
        """Whether this process is still running (same pid and the same start time)."""
        try:
            started = psutil.Process(self.pid).create_time()
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            return False
        return abs(started - self.started) <= START_TIME_TOLERANCE_S


def claim_process_dir(root: str | Path) -> Path:
    """Create ``root/<pid>-<random>`` owned by this process (``owner.json``) and return it.

    Everything this process writes under the returned folder is removed by :func:`remove_dead_process_dirs` after
    the process dies, however it dies.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    owner = Owner.current()
    folder = root / f"{owner.pid}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(mode=0o700)
    atomic_write(folder / OWNER_FILE, json.dumps({"pid": owner.pid, "started": owner.started}).encode())
    return folder


def read_owner(folder: Path) -> Owner | None:
    """The owner recorded in ``folder``, or None when it has none or it is unreadable."""
    try:
        data = json.loads((folder / OWNER_FILE).read_text())
        return Owner(int(data["pid"]), float(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_dead_process_dirs(root: str | Path, now: float | None = None) -> list[Path]:
    """Remove the claimed folders under ``root`` whose owner is not running; return what was removed.

    Folders of live processes are kept; a folder without an owner file is removed once it is older than
    :data:`UNCLAIMED_GRACE_S`; files directly under ``root`` are left alone.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.is_symlink():
            continue
        owner = read_owner(folder)
        if owner is None:
            try:
                dead = now - folder.stat().st_mtime > UNCLAIMED_GRACE_S
            except OSError:
                continue
        else:
            dead = not owner.alive()
        if dead:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def remove_staging_dirs(out_dir: str | Path) -> list[Path]:
    """Remove the staging folders a killed job left beside ``out_dir`` (``.<name>.partial-*``, see pipeline.job)."""
    out_dir = Path(out_dir)
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    removed = []
    for folder in sorted(parent.glob(f".{out_dir.name}.partial-*")):
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def startup_cleanup(app_root: str | Path) -> list[Path]:
    """At the app's start: remove the Gradio caches and job folders of dead app processes under ``app_root``.

    Args:
        app_root: the app's temporary root (e.g. ``<tmp>/worldstitch-app``) holding ``gradio/`` and ``jobs/``
            claim roots.

    Returns:
        The folders removed.
    """
    app_root = Path(app_root)
    return remove_dead_process_dirs(app_root / GRADIO_DIR) + remove_dead_process_dirs(app_root / JOBS_DIR)


@dataclass(frozen=True)
class WorkLimits:
    """How much one run may ask for."""

    max_views: int = 200
    """Views on one camera path: the largest named path (``sphere``) has 60; 200 leaves room for custom paths."""

    max_megapixels: float = 64.0
    """Total generated pixels (views × width × height) in millions: ``sphere`` at 1024×1024 is 63 M, hours of
    diffusion on a GPU; beyond it a run outlives any queue and ZeroGPU call."""


class WorkLimitError(ValueError):
    """A run asks for more work than :class:`WorkLimits` allows; the message names the limit."""


def check_work(cameras, limits: WorkLimits = WorkLimits()) -> None:
    """Refuse a camera path with too many views or too many pixels in total.

    Args:
        cameras: the run's cameras (``core.cameras.Camera``, each with ``width`` and ``height``).
        limits: the bounds.

    Raises:
        WorkLimitError: naming the limit and the requested amount.

    Example:
        >>> from core.cameras import make_cameras
        >>> check_work(make_cameras("sphere", (512, 384)))  # 60 views, 11.8 megapixels: fine
    """
    views = len(cameras)
    if views > limits.max_views:
        raise WorkLimitError(f"a path file may have at most {limits.max_views} views; this one has {views}")
    megapixels = sum(camera.width * camera.height for camera in cameras) / 1e6
    if megapixels > limits.max_megapixels:
        width, height = cameras[0].width, cameras[0].height
        raise WorkLimitError(
            f"this run would generate {views} views of {width}x{height} = {megapixels:,.1f} megapixels; the limit "
            f"is {limits.max_megapixels:g} megapixels (views x width x height): use fewer views or a smaller size"
        )
