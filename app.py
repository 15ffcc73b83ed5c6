"""WorldStitch web app: one photo + a prompt → a 360° Gaussian-splat scene in the browser, with downloads.

The Space's entry point (``python app.py``, 127.0.0.1:7860; ``python app.py --help`` lists the flags). The Gradio
front end lives in :mod:`webui`: the form declared once (:mod:`webui.form`), the job runner with queueing, cancel,
OOM handling, the ZeroGPU wrapper and cleanup (:mod:`webui.runner`), and the page (:mod:`webui.layout`). The scene
generator is injected (:func:`build_demo` takes a runner); models are loaded once in :func:`main`, never at import.
"""

from __future__ import annotations

try:  # ZeroGPU wants `spaces` imported before anything touches CUDA; a no-op package elsewhere
    import spaces  # noqa: F401
except ImportError:
    pass

import logging
import os
from dataclasses import dataclass, field
from typing import Annotated

import tyro

from core.threads import configure_threads
from models.registry import ModelOptions
from pipeline.config import PRESETS, ModelConfig
from webui.form import CUSTOM_QUALITY, FormDefaults, FormField, JobInputs, Limits, check_form, form_fields
from webui.layout import EXAMPLE_NAMES, build_demo, example_rows, launch, profile_banner
from webui.runner import (
    OOM_MESSAGE,
    PipelineRunner,
    Runner,
    WorldStitchApp,
    public_message,
    spaces_available,
    stream_job,
    to_user_error,
)
from webui.settings import EXAMPLES_DIR, AppSettings

__all__ = [
    "CUSTOM_QUALITY",
    "EXAMPLES_DIR",
    "EXAMPLE_NAMES",
    "OOM_MESSAGE",
    "PRESETS",
    "AppSettings",
    "FormDefaults",
    "FormField",
    "JobInputs",
    "Limits",
    "PipelineRunner",
    "Runner",
    "ServerArgs",
    "WorldStitchApp",
    "build_demo",
    "check_form",
    "example_rows",
    "form_fields",
    "launch",
    "main",
    "parse_args",
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


def main(argv: list[str] | None = None) -> None:
    """Load the models once, build the page and serve it."""
    threads = configure_threads()  # torch is loaded already (webui imports it): this sets the thread counts
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes
    from pipeline.config import build_run_config
    from pipeline.job import load_components  # loads weights: here, once, never at import

    models = ModelConfig(args.profile, args.outpainter, args.depth_model, args.completer, args.options)
    startup = build_run_config(
        profile=models.profile,
        outpainter=models.outpainter,
        depth_model=models.depth_model,
        completer=models.completer,
        model_options=models.options,
    )
    components = load_components(startup)
    logger.info("profile: %s; threads: %s", components.description, threads)
    settings = AppSettings(queue_max_size=args.queue_size, models=startup.models)
    import torch

    if not torch.cuda.is_available():  # minutes per job on a CPU at the default size: start the form at draft
        settings.form = FormDefaults.for_preset("draft")
    demo = build_demo(PipelineRunner(components), settings)
    launch(demo, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
