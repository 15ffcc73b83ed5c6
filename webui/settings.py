"""How the web app's server is set up: limits, where files go, queue size, cleanup, form defaults."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import ModelConfig
from webui.form import FormDefaults, Limits

APP_DIR = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = APP_DIR / "examples"


@dataclass
class AppSettings:
    """How the server is set up: limits, where files go, queue size, cleanup."""

    output_root: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "worldstitch-app" / "jobs")
    """App-owned folder holding one sub-folder per running job (removed when the job's handler ends)."""

    limits: Limits = field(default_factory=Limits)
    """What the server accepts (sizes, lengths, number ranges)."""

    queue_max_size: int = 8
    """Jobs waiting behind the running one; more are refused with "queue is full" instead of piling up."""

    cache_cleanup: tuple[int, int] = (1800, 3600)
    """Gradio ``delete_cache`` (every, older than) in seconds: served results live at most ~1.5 h."""

    stale_job_s: float = 3 * 3600
    """Job folders older than this (left by a crash) are removed when the app starts and before each job."""

    gpu_duration_s: int = 240
    """ZeroGPU seconds requested per job (``spaces.GPU(duration=...)``; ~300 s is the per-call ceiling)."""

    examples_dir: Path = EXAMPLES_DIR
    """Folder with ``<name>/image.png`` (+ ``prompt.txt``) examples shown under the form."""

    form: FormDefaults = field(default_factory=FormDefaults)
    """What the form shows when the page opens."""

    models: ModelConfig = field(default_factory=ModelConfig)
    """The model choice the server was started with; recorded in every job's run configuration."""
