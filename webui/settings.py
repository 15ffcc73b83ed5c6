"""How the web app's server is set up: limits, where files go, queue size, cleanup, form defaults."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import ModelConfig
from pipeline.grow_more import GrowLimits
from webui.form import FormDefaults, Limits

APP_DIR = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = APP_DIR / "examples"
APP_TEMP_ROOT = Path(tempfile.gettempdir()) / "worldstitch-app"
"""The app's temporary root: ``gradio/`` (Gradio's cache) and ``jobs/`` claim folders, one per process
(:mod:`pipeline.cleanup`)."""


@dataclass
class AppSettings:
    """How the server is set up: limits, where files go, queue size, cleanup."""

    output_root: Path = field(default_factory=lambda: APP_TEMP_ROOT / "jobs")
    """App-owned folder holding one sub-folder per running job (removed when the job's handler ends). ``main``
    sets it to a folder this process claims, so a crash's leftovers are removed at the next start."""

    limits: Limits = field(default_factory=Limits)
    """What the server accepts (sizes, lengths, number ranges)."""

    queue_max_size: int = 8
    """Jobs waiting behind the running one; more are refused with "queue is full" instead of piling up."""

    cache_cleanup: tuple[int, int] = (1800, 3600)
    """Gradio ``delete_cache`` (every, older than) in seconds: served results live at most ~1.5 h."""

    stale_job_s: float = 3 * 3600
    """Job folders older than this (left by a crash) are removed when the app starts and before each job."""

    gpu_duration_s: int | None = None
    """ZeroGPU seconds requested per job (``spaces.GPU(duration=...)``); None = computed for each job from its
    mode, quality, size and views (:func:`webui.estimate.zero_gpu_seconds`, bounded by ZeroGPU's per-call limit)."""

    examples_dir: Path = EXAMPLES_DIR
    """Folder with the examples listed at the top of the page (:data:`webui.layout.EXAMPLES`)."""

    grow_limits: GrowLimits = field(default_factory=GrowLimits)
    """How large one session's grown scene may become (views, points)."""

    max_kept_scenes: int = 4
    """Scenes kept in memory for "grow where I look" (one per session, the oldest dropped first): with
    :attr:`grow_limits` this bounds the memory all sessions together hold (~4 × 200 MB at most: 160 MB of frames
    and cloud, ~35 MB of fitted splats — 300k at degree 0 plus at most 8 placed objects' surface splats)."""

    kept_scene_s: float = 3600
    """A session's scene is dropped this long after its last use (or when the browser tab closes)."""

    form: FormDefaults = field(default_factory=FormDefaults)
    """What the form shows when the page opens."""

    models: ModelConfig = field(default_factory=ModelConfig)
    """The model choice the server was started with; recorded in every job's run configuration."""

    profile_reason: str = ""
    """Why the server runs its profile (:func:`pipeline.space.choose_space_profile`), shown in the banner."""

    readme_url: str | None = None
    """Link to README.md's profiles section (set on a Space: its page renders the README); None names it."""
