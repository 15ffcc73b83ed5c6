"""WorldStitch web app: one photo + a prompt → a 360° Gaussian-splat scene in the browser, with downloads.

The Space's entry point (``python app.py``, 127.0.0.1:7860; ``python app.py --help`` lists the flags). The Gradio
front end lives in :mod:`webui`: the form declared once (:mod:`webui.form`), the job runner with queueing, cancel,
OOM handling, the ZeroGPU wrapper, "grow where I look" and cleanup (:mod:`webui.runner`), the time estimate
(:mod:`webui.estimate`) and the page (:mod:`webui.layout`). The scene generator is injected (:func:`build_demo`
takes a runner); models are loaded once in :func:`main`, never at import.

At start, :func:`main` picks the profile for where it runs (on a Hugging Face Space with a GPU, ``auto`` means
generative: :func:`pipeline.space.choose_space_profile`), removes what killed earlier app processes left behind
(:func:`pipeline.cleanup.startup_cleanup`), and claims its own folders for Gradio's cache and the job folders, so a
``kill -9`` during a job leaves nothing after the next start.
"""

from __future__ import annotations

try:  # ZeroGPU wants `spaces` imported before anything touches CUDA; a no-op package elsewhere
    import spaces  # noqa: F401
except ImportError:
    pass

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from core.threads import configure_threads
from models.registry import ModelOptions
from pipeline.cleanup import claim_process_dir, startup_cleanup
from pipeline.config import PRESETS, ModelConfig
from pipeline.grow_more import GrowLimits
from pipeline.space import SPACE_ID_ENV, choose_space_profile, is_zero_gpu
from webui.form import CUSTOM_QUALITY, FormDefaults, FormField, JobInputs, Limits, check_form, form_fields
from webui.layout import (
    EXAMPLE_NAMES,
    EXAMPLES,
    PROFILES_ANCHOR,
    build_demo,
    example_photo,
    example_rows,
    launch,
    profile_banner,
)
from webui.runner import (
    CANCELLED_MESSAGE,
    OOM_MESSAGE,
    GrowRequest,
    PipelineRunner,
    Runner,
    SceneStore,
    WorldStitchApp,
    public_message,
    spaces_available,
    stream_job,
    to_user_error,
)
from webui.settings import APP_TEMP_ROOT, EXAMPLES_DIR, AppSettings

__all__ = [
    "APP_TEMP_ROOT",
    "CANCELLED_MESSAGE",
    "CUSTOM_QUALITY",
    "EXAMPLES",
    "EXAMPLES_DIR",
    "EXAMPLE_NAMES",
    "OOM_MESSAGE",
    "PRESETS",
    "PROFILES_ANCHOR",
    "AppSettings",
    "FormDefaults",
    "FormField",
    "GrowLimits",
    "GrowRequest",
    "JobInputs",
    "Limits",
    "PipelineRunner",
    "Runner",
    "SceneStore",
    "ServerArgs",
    "WorldStitchApp",
    "build_demo",
    "check_form",
    "example_photo",
    "example_rows",
    "form_fields",
    "launch",
    "main",
    "parse_args",
    "prepare_temp_dirs",
    "profile_banner",
    "public_message",
    "spaces_available",
    "stream_job",
    "to_user_error",
]

logger = logging.getLogger("worldstitch.app")


@dataclass(frozen=True, kw_only=True)
class ServerArgs(ModelConfig):
    """Serve the WorldStitch web app. The model flags are the command line's (python -m pipeline --help)."""

    host: str = field(default_factory=lambda: os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    """Address to listen on (0.0.0.0 for every interface)."""

    port: int = field(default_factory=lambda: int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    """Port to listen on."""

    queue_size: int = AppSettings.queue_max_size
    """Jobs allowed to wait behind the running one."""

    # re-declared only to spell the nested model options --models.* as on the command line
    options: Annotated[ModelOptions, tyro.conf.arg(name="models")] = field(default_factory=ModelOptions)
    """Model options used when loading (offload, dtype, depth and completer options); steps and guidance are
    chosen per job on the page."""


def parse_args(argv: list[str] | None = None) -> ServerArgs:
    """Parse ``python app.py`` flags."""
    return tyro.cli(ServerArgs, args=argv, prog="python app.py")


def prepare_temp_dirs(root: Path = APP_TEMP_ROOT) -> Path:
    """Remove what dead app processes left under ``root``, then claim this process's folders.

    Gradio's cache goes to a claimed ``root/gradio/<pid>-...`` (``GRADIO_TEMP_DIR``, read when the page is built)
    and the job folders to a claimed ``root/jobs/<pid>-...`` (returned): whatever a ``kill -9`` leaves in them is
    removed by the next start's :func:`pipeline.cleanup.startup_cleanup`.

    Returns:
        The folder for this process's job folders (``AppSettings.output_root``).
    """
    for folder in startup_cleanup(root):
        logger.info("removed %s left by a process that is no longer running", folder.name)
    os.environ["GRADIO_TEMP_DIR"] = str(claim_process_dir(root / "gradio"))
    return claim_process_dir(root / "jobs")


def main(argv: list[str] | None = None) -> None:
    """Load the models once, build the page and serve it."""
    threads = configure_threads()  # torch is loaded already (webui imports it): this sets the thread counts
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes
    import torch

    from pipeline.config import build_run_config
    from pipeline.job import load_components  # loads weights: here, once, never at import

    # a Space with a GPU serves the generative profile (its models are preloaded), never silently offline
    choice = choose_space_profile(os.environ, torch.cuda.is_available(), args.profile)
    models = ModelConfig(choice.profile, args.outpainter, args.depth_model, args.completer, args.options)
    startup = build_run_config(
        profile=models.profile,
        outpainter=models.outpainter,
        depth_model=models.depth_model,
        completer=models.completer,
        model_options=models.options,
    )
    components = load_components(startup)
    logger.info("profile: %s (%s); threads: %s", components.description, choice.reason, threads)
    space_id = os.environ.get(SPACE_ID_ENV)
    settings = AppSettings(
        output_root=prepare_temp_dirs(),
        queue_max_size=args.queue_size,
        models=startup.models,
        profile_reason=choice.reason if space_id else "",
        readme_url=f"https://huggingface.co/spaces/{space_id}#{PROFILES_ANCHOR}" if space_id else None,
    )
    if not (torch.cuda.is_available() or is_zero_gpu(os.environ)):  # a CPU takes minutes at the default size
        settings.form = FormDefaults.for_preset("draft")
    demo = build_demo(PipelineRunner(components), settings)
    launch(demo, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
