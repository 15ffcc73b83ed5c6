"""WorldStitch web app: one photo + a prompt → a 360° Gaussian-splat scene in the browser, with downloads.

The Gradio front end only. The scene generator is injected (:func:`build_demo` takes a runner), models are loaded
once in :func:`main`, never at import. Run ``python app.py`` (127.0.0.1:7860) or ``python app.py --help``.

How a job runs: the Generate handler is a generator. It checks every input on the server (API callers skip the
browser's limits), decodes the upload with :func:`core.images.load_image`, then runs the pipeline in a worker
thread that reports :class:`core.types.ProgressEvent` through a queue; the handler turns those into UI updates.
Cancel sets the job's ``threading.Event``; the pipeline stops at the next view or denoising step and the worker is
free. Each job writes into its own folder under an app-owned root; Gradio copies the results into its cache (which
``delete_cache`` empties), and the job folder is removed when the handler finishes, fails or is cancelled.

On a Hugging Face ZeroGPU Space (the ``spaces`` package is importable) the GPU part runs inside
``spaces.GPU(duration=...)``: its arguments are picklable (a :class:`pipeline.job.JobRequest` and a folder name)
and only ``gr.Error`` leaves it.
"""

from __future__ import annotations

import argparse
import contextvars
import gc
import importlib.util
import logging
import math
import os
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

try:  # ZeroGPU wants `spaces` imported before anything touches CUDA; a no-op package elsewhere
    import spaces  # noqa: F401
except ImportError:
    pass

import gradio as gr
import numpy as np

from core.components import Cancelled
from core.images import ImageError, fit_size, load_depth_file, load_image, target_size
from core.types import ProgressEvent
from pipeline.config import MODES, PRESETS, GrowConfig
from pipeline.job import JobError, JobOutputs, JobRequest

logger = logging.getLogger("worldstitch.app")

APP_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = APP_DIR / "examples"
EXAMPLE_NAMES = ("room", "street", "landscape")  # procedural examples made by the project (scripts/)
DEFAULT_NEGATIVE_PROMPT = "blurry, distorted, text, watermark, people"
CUSTOM_QUALITY = "custom"  # quality choice that takes size / steps / splat iterations from the advanced settings
DEFAULT_QUALITY = "default"
DEFAULT_FOV_DEG = 2 * math.degrees(math.atan(0.5))  # focal = image width (Invisible Stitch): ≈ 53.13°
PREVIEW_MAX_SIDE = 512  # the input preview is shown at most this large
HEARTBEAT_S = 0.5  # the handler yields at least this often, so a closed connection or Cancel is seen quickly
SECONDS_PER_UPDATE = 0.25  # at most this many progress updates per second reach the browser


@dataclass(frozen=True)
class Limits:
    """What the server accepts, whatever the browser sends (API callers skip the browser's widgets)."""

    max_prompt_chars: int = 500
    """Longest prompt / negative prompt; the text encoders read ~77 tokens anyway."""

    max_upload: str = "25mb"
    """Largest upload (Gradio answers 413 above it); a 24-megapixel JPEG is ~10 MB."""

    max_pixels: int = 40_000_000
    """Largest decoded photo, checked from the file header before decoding (decompression bombs)."""

    min_side: int = 64
    """Smallest photo side; smaller leaves too little context for outpainting and depth."""

    seed_max: int = 2**32 - 1
    """Seeds are unsigned 32-bit (what numpy and diffusers generators accept everywhere)."""

    steps: tuple[int, int] = (1, 100)
    """Diffusion steps; beyond 100 the images stop improving and the GPU time runs out."""

    guidance: tuple[float, float] = (0.0, 20.0)
    """Classifier-free guidance scale; above 20 images saturate."""

    side: tuple[int, int] = (64, 1024)
    """Working width/height in pixels; rounded to a multiple of 8. 1024 keeps a 360 run inside GPU memory."""

    fov_deg: tuple[float, float] = (30.0, 120.0)
    """Horizontal field of view; outside this range the views barely overlap or distort badly."""

    splat_iters: tuple[int, int] = (0, 3000)
    """Splat fitting iterations (0 = export the initialised splats)."""


@dataclass(frozen=True)
class FormDefaults:
    """What the form shows when the page opens (a CPU-only host may start at draft quality)."""

    mode: str = "360"
    quality: str = DEFAULT_QUALITY
    size: tuple[int, int] = PRESETS[DEFAULT_QUALITY].size  # (W, H) in the advanced settings
    steps: int = PRESETS[DEFAULT_QUALITY].steps
    splat_iters: int = PRESETS[DEFAULT_QUALITY].splat_iters
    video: bool = True


@dataclass
class AppSettings:
    """How the server is set up: limits, where files go, queue size, cleanup."""

    output_root: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "worldstitch-app" / "jobs")
    """App-owned folder holding one sub-folder per running job (removed when the job's handler ends)."""

    limits: Limits = field(default_factory=Limits)
    queue_max_size: int = 8
    """Jobs waiting behind the running one; more are refused with "queue is full" instead of piling up."""

    cache_cleanup: tuple[int, int] = (1800, 3600)
    """Gradio ``delete_cache`` (every, older than) in seconds: served results live at most ~1.5 h."""

    stale_job_s: float = 3 * 3600
    """Job folders older than this (left by a crash) are removed when the app starts and before each job."""

    gpu_duration_s: int = 240
    """ZeroGPU seconds requested per job (``spaces.GPU(duration=...)``; ~300 s is the per-call ceiling)."""

    examples_dir: Path = EXAMPLES_DIR
    form: FormDefaults = field(default_factory=FormDefaults)


class Runner(Protocol):
    """The injected pipeline: runs one job, writing into ``out_dir``."""

    profile: str  # "offline" | "generative"
    description: str

    def __call__(
        self,
        request: JobRequest,
        out_dir: Path,
        progress: Callable[[ProgressEvent], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> JobOutputs: ...


class PipelineRunner:
    """:func:`pipeline.job.run_job` bound to components built once at start."""

    def __init__(self, components):
        self.components = components
        self.profile = components.profile
        self.description = components.description

    def __call__(self, request, out_dir, progress=None, cancel=None) -> JobOutputs:
        from pipeline.job import run_job

        return run_job(request, self.components, out_dir, progress=progress, cancel=cancel)


# --- input checking (server side) ----------------------------------------------------------------------------------


def _number(value, name: str, bounds: tuple[float, float], *, integer: bool) -> float | int:
    """``value`` as a finite number within ``bounds``, else a ``gr.Error`` naming the field and the range."""
    low, high = bounds
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number between {low:g} and {high:g}.") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise gr.Error(f"{name} must be between {low:g} and {high:g}.")
    if integer:
        if number != int(number):
            raise gr.Error(f"{name} must be a whole number.")
        return int(number)
    return number


def _text(value, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise gr.Error(f"{name} must be text.")
    if len(value) > limit:
        raise gr.Error(f"{name} is {len(value)} characters long; at most {limit} are allowed.")
    return value.strip()


def _choice(value, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise gr.Error(f"{name} must be one of: {', '.join(allowed)}.")
    return value


def _round8(side: int) -> int:
    return max(8, int(round(side / 8)) * 8)


@dataclass(frozen=True)
class JobInputs:
    """The Generate form after checking; numbers already inside :class:`Limits`."""

    image_path: str
    prompt: str
    negative_prompt: str
    mode: str
    seed: int
    quality: str
    depth_path: str | None
    steps: int
    guidance: float
    size: tuple[int, int] | None  # (W, H) when the quality is custom; None = from the preset and the photo
    fov_deg: float
    splat_iters: int
    video: bool
    renderer: str


def check_inputs(
    limits: Limits,
    renderers: tuple[str, ...],
    image,
    prompt,
    negative_prompt,
    mode,
    seed,
    randomize_seed,
    quality,
    depth,
    steps,
    guidance,
    width,
    height,
    fov_deg,
    splat_iters,
    video,
    renderer,
) -> JobInputs:
    """Validate every Generate input on the server. Raises ``gr.Error`` with a message the user can act on."""
    if not image:
        raise gr.Error("Upload a photo first (PNG, JPEG or WEBP), or pick one of the examples.")
    if not isinstance(image, str):
        raise gr.Error("The photo must be an uploaded file.")
    if depth is not None and not isinstance(depth, str):
        raise gr.Error("The depth map must be an uploaded file.")
    # Only the named camera paths: a JSON path would make the server open a file the user names.
    mode = _choice(mode, "Mode", MODES)
    quality = _choice(quality, "Quality", (*PRESETS, CUSTOM_QUALITY))
    renderer = _choice(renderer, "Point renderer", renderers)
    if randomize_seed:
        seed = secrets.randbelow(limits.seed_max + 1)
    size = None
    if quality == CUSTOM_QUALITY:
        size = (
            _round8(_number(width, "Width", limits.side, integer=True)),
            _round8(_number(height, "Height", limits.side, integer=True)),
        )
    return JobInputs(
        image_path=image,
        prompt=_text(prompt, "Prompt", limits.max_prompt_chars),
        negative_prompt=_text(negative_prompt, "Negative prompt", limits.max_prompt_chars),
        mode=mode,
        seed=_number(seed, "Seed", (0, limits.seed_max), integer=True),
        quality=quality,
        depth_path=depth or None,
        steps=_number(steps, "Steps", limits.steps, integer=True),
        guidance=_number(guidance, "Guidance", limits.guidance, integer=False),
        size=size,
        fov_deg=_number(fov_deg, "Field of view", limits.fov_deg, integer=False),
        splat_iters=_number(splat_iters, "Splat iterations", limits.splat_iters, integer=True),
        video=bool(video),
        renderer=renderer,
    )


def make_request(inputs: JobInputs, limits: Limits) -> JobRequest:
    """Decode the photo (and depth map) with the project's loader and build the pipeline request."""
    image = load_image(inputs.image_path, max_pixels=limits.max_pixels, min_side=limits.min_side)
    height, width = image.shape[:2]
    if inputs.quality == CUSTOM_QUALITY:
        size, steps, splat_iters = inputs.size, inputs.steps, inputs.splat_iters
    else:
        preset = PRESETS[inputs.quality]
        # keep the photo's aspect ratio: the preset sets the longest side
        size = target_size(width, height, None, max(preset.size), upscale=True)
        steps, splat_iters = preset.steps, preset.splat_iters
    image = fit_size(image, size=size)
    depth = load_depth_file(inputs.depth_path, size, max_pixels=limits.max_pixels) if inputs.depth_path else None
    return JobRequest(
        image=image,
        prompt=inputs.prompt,
        negative_prompt=inputs.negative_prompt,
        mode=inputs.mode,
        seed=inputs.seed,
        size=size,
        hfov_deg=inputs.fov_deg,
        depth=depth,
        splat_iters=splat_iters,
        video=inputs.video,
        steps=steps,
        guidance=inputs.guidance,
        grow=replace(GrowConfig(), renderer=inputs.renderer),
    )


# --- errors the user sees -----------------------------------------------------------------------------------------

OOM_MESSAGE = (
    "Ran out of memory for this job. Nothing was saved. Try the draft quality, a smaller size or the single/stage "
    "mode; the next job starts fresh."
)
_PATH_PATTERN = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s\\/'\"`:,;()]+){2,}")


def public_message(text: str) -> str:
    """``text`` with every absolute path cut down to its last component (no server layout in messages)."""
    return _PATH_PATTERN.sub(lambda m: re.split(r"[\\/]", m.group(0))[-1], text)


def _is_oom(err: BaseException) -> bool:
    import torch

    if isinstance(err, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def to_user_error(err: BaseException) -> gr.Error:
    """The ``gr.Error`` shown for an exception from a job (only gr.Error may reach the user, on ZeroGPU too)."""
    if isinstance(err, gr.Error):
        return err
    if isinstance(err, (JobError, ImageError)):
        return gr.Error(public_message(str(err)))
    if _is_oom(err):
        return gr.Error(OOM_MESSAGE)
    reference = uuid.uuid4().hex[:8]
    logger.error("job failed (reference %s)", reference, exc_info=err)
    return gr.Error(
        f"Something went wrong while generating (reference {reference}); nothing was saved. Please try again."
    )


def _free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- running a job in a worker thread -----------------------------------------------------------------------------


@dataclass
class _Finished:
    outputs: JobOutputs


@dataclass
class _Failed:
    error: BaseException


def stream_job(
    runner: Runner,
    request: JobRequest,
    out_dir: Path,
    cancel: threading.Event,
    gpu_lock: threading.Lock,
) -> Iterator[ProgressEvent | JobOutputs | None]:
    """Run ``runner`` in a worker thread; yield its progress events, ``None`` every :data:`HEARTBEAT_S` without
    news, and finally its :class:`JobOutputs`. The job's exception is re-raised here.

    ``gpu_lock`` keeps one job on the accelerator at a time, even while a cancelled job is still winding down.
    Closing this generator (the browser left, or Cancel) sets ``cancel``.
    """
    events: queue.SimpleQueue = queue.SimpleQueue()

    def work() -> None:
        try:
            if not gpu_lock.acquire(blocking=False):
                events.put(ProgressEvent("waiting", -1, 0, 0.0, "waiting for the previous job to stop"))
                while not gpu_lock.acquire(timeout=HEARTBEAT_S):
                    if cancel.is_set():
                        raise Cancelled("cancelled while waiting for the previous job to stop")
            try:
                events.put(_Finished(runner(request, out_dir, progress=events.put, cancel=cancel)))
            finally:
                gpu_lock.release()
        except BaseException as err:  # handed to the consumer, which re-raises it in the request's context
            events.put(_Failed(err))

    # copy the request's context so Gradio/ZeroGPU helpers called inside the job still see the request
    worker = threading.Thread(target=contextvars.copy_context().run, args=(work,), name="worldstitch-job", daemon=True)
    worker.start()
    try:
        while True:
            try:
                item = events.get(timeout=HEARTBEAT_S)
            except queue.Empty:
                yield None
                continue
            if isinstance(item, _Finished):
                yield item.outputs
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        cancel.set()  # no effect after success; stops the job when the consumer went away


def _gpu_wrapped(runner: Runner, gpu_lock: threading.Lock, duration_s: int):
    """On ZeroGPU: a ``spaces.GPU`` generator with picklable arguments that lets only ``gr.Error`` out."""
    import spaces

    def gpu_job(request: JobRequest, out_dir: str) -> Iterator[ProgressEvent | JobOutputs | None]:
        cancel = threading.Event()  # events cannot cross the process boundary; closing the generator cancels
        failure: gr.Error | None = None
        try:
            for item in stream_job(runner, request, Path(out_dir), cancel, gpu_lock):
                yield replace(item, result=None) if isinstance(item, JobOutputs) else item  # no tensors back
        except Cancelled:
            return
        except Exception as err:  # noqa: BLE001 - ZeroGPU shows anything but gr.Error as "worker error"
            failure = to_user_error(err)
        if failure is not None:
            _free_memory()
            raise failure

    return spaces.GPU(duration=duration_s)(gpu_job)


def spaces_available() -> bool:
    """Whether the ``spaces`` package (ZeroGPU) can be imported; outside a ZeroGPU Space its decorator is a no-op."""
    try:
        import spaces  # noqa: F401
    except ImportError:
        return False
    return True


# --- the app --------------------------------------------------------------------------------------------------------


def available_renderers() -> tuple[str, ...]:
    names = ["torch"]
    if importlib.util.find_spec("pytorch3d") is not None:
        names.append("pytorch3d")
    return tuple(names)


def profile_banner(runner: Runner) -> str:
    profile = getattr(runner, "profile", "offline")
    description = getattr(runner, "description", "")
    if profile == "generative":
        other = (
            "For a fast, weight-free run (PatchMatch outpainting + classical depth), start the app with "
            "`python app.py --profile offline`."
        )
        title = "Generative profile: diffusion outpainting and learned depth"
    else:
        other = (
            "For diffusion outpainting and learned depth, download the model weights (see the README, "
            '"Generative profile") and start the app with `python app.py --profile generative` '
            "— a GPU is strongly recommended."
        )
        title = "Offline profile: PatchMatch outpainting and classical depth, no model weights"
    detail = f" ({public_message(description)})" if description else ""  # no server paths on the page
    return f"**{title}**{detail}. {other}"


def sweep_stale(root: Path, max_age_s: float) -> None:
    """Remove job folders (and staging folders) under ``root`` older than ``max_age_s``: crash leftovers."""
    if not root.is_dir():
        return
    cutoff = time.time() - max_age_s
    for entry in root.iterdir():
        try:
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        except OSError:
            pass


def _timing_rows(timings: dict[str, float]) -> list[list]:
    rows = [[stage, round(float(seconds), 2)] for stage, seconds in timings.items()]
    rows.append(["total", round(sum(float(s) for s in timings.values()), 2)])
    return rows


def _status(event: ProgressEvent, started: float) -> str:
    where = f"view {event.view + 1}/{event.num_views} · " if event.view >= 0 and event.num_views else ""
    message = public_message(event.message or event.stage)
    return f"{where}**{event.stage}** · {event.fraction:.0%} · {time.perf_counter() - started:.0f} s — {message}"


class WorldStitchApp:
    """The handlers behind the UI; holds the injected runner and the per-session cancel events."""

    def __init__(self, runner: Runner, settings: AppSettings | None = None, *, use_zero_gpu: bool | None = None):
        self.runner = runner
        self.settings = settings or AppSettings()
        self.renderers = available_renderers()
        self.gpu_lock = threading.Lock()
        self._cancel_events: dict[str, threading.Event] = {}
        self._cancel_guard = threading.Lock()
        self.settings.output_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        sweep_stale(self.settings.output_root, self.settings.stale_job_s)
        if use_zero_gpu is None:
            use_zero_gpu = spaces_available()
        self.gpu_job = _gpu_wrapped(runner, self.gpu_lock, self.settings.gpu_duration_s) if use_zero_gpu else None
        self.examples: gr.Examples | None = None

    # the job -------------------------------------------------------------------------------------------------------

    def generate(
        self,
        image,
        prompt,
        negative_prompt,
        mode,
        seed,
        randomize_seed,
        quality,
        depth,
        steps,
        guidance,
        width,
        height,
        fov_deg,
        splat_iters,
        video,
        renderer,
        request: gr.Request | None = None,
        progress=gr.Progress(),
    ):
        """Generate a scene. Yields (status, viewer, downloads, gallery, timings, seed)."""
        # 1. Check every input on the server
        inputs = check_inputs(
            self.settings.limits,
            self.renderers,
            image,
            prompt,
            negative_prompt,
            mode,
            seed,
            randomize_seed,
            quality,
            depth,
            steps,
            guidance,
            width,
            height,
            fov_deg,
            splat_iters,
            video,
            renderer,
        )
        skip = gr.skip()
        yield "Reading the photo…", None, None, None, None, inputs.seed

        # 2. Decode with the project's loader (EXIF, 16-bit, alpha, size policy)
        try:
            job_request = make_request(inputs, self.settings.limits)
        except (ImageError, JobError) as err:
            raise gr.Error(public_message(str(err))) from None
        depth_warnings = list(job_request.depth.warnings) if job_request.depth is not None else []
        for warning in depth_warnings:
            gr.Warning(public_message(warning))

        # 3. Run the pipeline in a worker, in a folder of its own
        sweep_stale(self.settings.output_root, self.settings.stale_job_s)
        job_dir = self.settings.output_root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex}"
        cancel = self._register_cancel(request)
        started = time.perf_counter()
        last_update = 0.0
        last_event: ProgressEvent | None = None
        failure: gr.Error | None = None
        try:
            if self.gpu_job is not None:
                stream = self.gpu_job(job_request, str(job_dir))
            else:
                stream = stream_job(self.runner, job_request, job_dir, cancel, self.gpu_lock)
            outputs = None
            for item in stream:
                if isinstance(item, JobOutputs):
                    outputs = item  # the stream ends right after; let it finish (releases the GPU cleanly)
                    continue
                if isinstance(item, ProgressEvent):
                    last_event = item
                    progress(min(max(item.fraction, 0.0), 1.0), desc=public_message(item.message or item.stage))
                now = time.perf_counter()
                if now - last_update >= SECONDS_PER_UPDATE:  # also on heartbeats: the clock in the status ticks
                    last_update = now
                    status = _status(last_event, started) if last_event else f"Starting… {now - started:.0f} s"
                    yield status, skip, skip, skip, skip, skip
            if outputs is None:  # the stream ended without a result: cancelled
                yield "Cancelled.", skip, skip, skip, skip, skip
                return

            # 4. Show the results
            yield self._results(outputs, inputs, depth_warnings, time.perf_counter() - started)
        except Cancelled:
            yield "Cancelled. Nothing was saved.", skip, skip, skip, skip, skip
        except Exception as err:  # noqa: BLE001 - every failure becomes a message without internals
            failure = to_user_error(err)
        finally:
            self._unregister_cancel(request, cancel)
            shutil.rmtree(job_dir, ignore_errors=True)  # results were copied to Gradio's cache on the last yield
        if failure is not None:
            _free_memory()  # outside the except block: the failed job's frames (and tensors) are released by now
            raise failure

    def _results(self, outputs: JobOutputs, inputs: JobInputs, warnings: list[str], seconds: float):
        downloads = [
            path
            for path in (
                outputs.splat_ply,
                outputs.dotsplat,
                outputs.points_ply,
                outputs.frames_zip,
                outputs.video,
            )
            if path is not None and Path(path).is_file()
        ]
        gallery = [(str(path), caption) for path, caption in outputs.gallery if Path(path).is_file()]
        viewer = outputs.splat_ply if outputs.splat_ply is not None else outputs.points_ply
        notes = [public_message(w) for w in [*warnings, *outputs.warnings]]
        for note in outputs.warnings:
            gr.Warning(public_message(note))
        points = sum(outputs.points_per_view)
        views = len(outputs.points_per_view)
        status = f"Done in {seconds:.1f} s · seed {inputs.seed} · {points:,} points from {views} views"
        if notes:
            status += "\n\n" + "\n".join(f"- {note}" for note in notes)
        return (
            status,
            str(viewer),
            [str(p) for p in downloads],
            gallery,
            _timing_rows(outputs.timings),
            inputs.seed,
        )

    # cancel ----------------------------------------------------------------------------------------------------

    def _register_cancel(self, request: gr.Request | None) -> threading.Event:
        event = threading.Event()
        key = getattr(request, "session_hash", None)
        if key:
            with self._cancel_guard:
                self._cancel_events[key] = event
        return event

    def _unregister_cancel(self, request: gr.Request | None, event: threading.Event) -> None:
        key = getattr(request, "session_hash", None)
        with self._cancel_guard:
            if key and self._cancel_events.get(key) is event:
                del self._cancel_events[key]

    def cancel(self, request: gr.Request | None = None) -> None:
        """Stop this browser session's running job at its next view or denoising step."""
        key = getattr(request, "session_hash", None)
        with self._cancel_guard:
            event = self._cancel_events.get(key) if key else None
        if event is not None:
            event.set()

    # small UI helpers ----------------------------------------------------------------------------------------------

    def preview(self, image):
        """Decode the upload as the job will (upright, alpha composited) and show it; bad files fail here."""
        if not image:
            return None
        if not isinstance(image, str):
            raise gr.Error("The photo must be an uploaded file.")
        try:
            decoded = load_image(image, max_pixels=self.settings.limits.max_pixels, min_side=1)
        except ImageError as err:
            raise gr.Error(public_message(str(err))) from None
        height, width = decoded.shape[:2]
        scale = min(1.0, PREVIEW_MAX_SIDE / max(height, width))
        step = max(1, int(round(1 / scale)))
        return (decoded[::step, ::step].numpy() * 255 + 0.5).astype(np.uint8)

    @staticmethod
    def apply_quality(quality):
        """Show a preset's values in the advanced settings (custom leaves them as they are)."""
        if quality not in PRESETS:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        preset = PRESETS[quality]
        return preset.size[0], preset.size[1], preset.steps, preset.splat_iters


def _examples(examples_dir: Path) -> list[list]:
    rows = []
    for name in EXAMPLE_NAMES:
        image = examples_dir / name / "image.png"
        prompt_file = examples_dir / name / "prompt.txt"
        if image.is_file():
            prompt = prompt_file.read_text(encoding="utf-8").strip() if prompt_file.is_file() else ""
            rows.append([str(image), str(image), prompt])
    return rows


CSS = """
#viewer canvas { background: #111; }
"""


def build_demo(runner: Runner, settings: AppSettings | None = None, *, use_zero_gpu: bool | None = None) -> gr.Blocks:
    """The WorldStitch UI around an injected pipeline ``runner`` (see :class:`Runner`)."""
    app = WorldStitchApp(runner, settings, use_zero_gpu=use_zero_gpu)
    settings = app.settings
    limits = settings.limits
    form = settings.form

    with gr.Blocks(title="WorldStitch", delete_cache=settings.cache_cleanup, analytics_enabled=False) as demo:
        demo.worldstitch = app  # tests and main() reach the handlers and settings through the Blocks
        gr.Markdown(
            "# WorldStitch\nOne photo and a prompt → a 360° scene of Gaussian splats you can orbit here and "
            "download (PLY, .splat, point cloud, frames with `transforms.json`, video)."
        )
        gr.Markdown(profile_banner(runner), elem_id="profile-banner")
        with gr.Row():
            with gr.Column(scale=1):
                image_file = gr.File(
                    label="Photo (PNG, JPEG or WEBP)",
                    file_types=[".png", ".jpg", ".jpeg", ".webp"],
                    elem_id="photo",
                )
                preview = gr.Image(label="Photo as it will be used", interactive=False, format="png", height=220)
                prompt = gr.Textbox(
                    label="Prompt",
                    placeholder="what the rest of the scene should contain",
                    max_length=limits.max_prompt_chars,
                    lines=2,
                )
                negative_prompt = gr.Textbox(
                    label="Negative prompt", value=DEFAULT_NEGATIVE_PROMPT, max_length=limits.max_prompt_chars
                )
                with gr.Row():
                    mode = gr.Dropdown(
                        choices=list(MODES),
                        value=form.mode,
                        label="Mode",
                        info="single view · stage (a few views in front) · 360 (all around) · sphere (+ up/down)",
                    )
                    quality = gr.Dropdown(choices=[*PRESETS, CUSTOM_QUALITY], value=form.quality, label="Quality")
                with gr.Row():
                    seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=limits.seed_max)
                    randomize_seed = gr.Checkbox(label="Random seed", value=False)
                with gr.Accordion("Advanced settings", open=False):
                    gr.Markdown("Size, steps and splat iterations are used when Quality is **custom**.")
                    with gr.Row():
                        width = gr.Slider(*limits.side, value=form.size[0], step=8, label="Width")
                        height = gr.Slider(*limits.side, value=form.size[1], step=8, label="Height")
                    steps = gr.Slider(*limits.steps, value=form.steps, step=1, label="Diffusion steps")
                    guidance = gr.Slider(*limits.guidance, value=7.5, step=0.5, label="Guidance")
                    fov = gr.Slider(
                        *limits.fov_deg, value=round(DEFAULT_FOV_DEG, 2), step=0.01, label="Field of view (°)"
                    )
                    splat_iters = gr.Slider(
                        *limits.splat_iters, value=form.splat_iters, step=1, label="Splat iterations (0 = no fit)"
                    )
                    video = gr.Checkbox(label="Render a fly-through video", value=form.video)
                    renderer = gr.Dropdown(
                        choices=list(app.renderers), value="torch", label="Point renderer (reprojection)"
                    )
                    depth = gr.File(
                        label="Depth map for the photo (optional: 16-bit PNG in mm, .npy/.npz in m)",
                        file_types=[".png", ".npy", ".npz"],
                    )
                with gr.Row():
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
            with gr.Column(scale=2):
                status = gr.Markdown("Upload a photo or pick an example, then press **Generate**.", elem_id="status")
                viewer = gr.Model3D(label="Scene (drag to orbit, scroll to zoom)", height=480, elem_id="viewer")
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
                gallery = gr.Gallery(label="Generated views and depth", columns=4, height=260, elem_id="gallery")
                timings = gr.Dataframe(
                    headers=["stage", "seconds"],
                    datatype=["str", "number"],
                    label="Time per stage",
                    interactive=False,
                    elem_id="timings",
                )

        rows = _examples(settings.examples_dir)
        if rows:
            app.examples = gr.Examples(
                examples=rows,
                inputs=[preview, image_file, prompt],
                label="Examples (made by the project; no downloaded images)",
                cache_examples=False,
            )

        job_inputs = [
            image_file,
            prompt,
            negative_prompt,
            mode,
            seed,
            randomize_seed,
            quality,
            depth,
            steps,
            guidance,
            width,
            height,
            fov,
            splat_iters,
            video,
            renderer,
        ]
        job = generate_btn.click(
            app.generate,
            inputs=job_inputs,
            outputs=[status, viewer, downloads, gallery, timings, seed],
            api_name="generate",
            concurrency_limit=1,
            concurrency_id="gpu",
        )
        cancel_btn.click(app.cancel, None, None, cancels=[job], queue=False, api_visibility="private")
        image_file.change(
            app.preview,
            image_file,
            preview,
            api_visibility="private",
            concurrency_limit=2,
            concurrency_id="decode",
            show_progress="minimal",
        )
        quality.change(
            app.apply_quality, quality, [width, height, steps, splat_iters], queue=False, api_visibility="private"
        )
        for slider in (width, height, steps, splat_iters):
            slider.input(lambda: CUSTOM_QUALITY, None, quality, queue=False, api_visibility="private")

    demo.queue(default_concurrency_limit=1, max_size=settings.queue_max_size)
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, **extra):
    """Serve ``demo`` with the hardened launch settings. Returns Gradio's ``(app, local_url, share_url)``."""
    settings: AppSettings = demo.worldstitch.settings
    return demo.launch(
        server_name=host,
        server_port=port,
        max_file_size=settings.limits.max_upload,  # larger uploads get 413
        enable_monitoring=False,  # /monitoring answers 403
        allowed_paths=[],  # nothing beyond Gradio's upload/cache dirs; examples and results are copied to the cache
        show_error=False,  # only gr.Error messages (written for users) reach the browser
        mcp_server=False,
        run_history=False,  # no saved inputs in browsers; keeps the route surface small
        footer_links=["api", "gradio"],
        css=CSS,
        **extra,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python app.py", description="Serve the WorldStitch web app.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument(
        "--profile",
        default="auto",
        choices=("auto", "offline", "generative"),
        help="auto = generative when the model weights are present, else offline",
    )
    parser.add_argument("--outpainter", default=None, help="outpainter name, local dir or Hub id")
    parser.add_argument("--depth-model", default=None, help="depth model name, local dir or Hub id")
    parser.add_argument("--completer", default=None, help="depth completer name, local dir or Hub id")
    parser.add_argument("--queue-size", type=int, default=AppSettings.queue_max_size, help="jobs allowed to wait")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes
    from models.registry import build_components  # loads weights: here, once, never at import

    components = build_components(
        args.profile, outpainter=args.outpainter, depth_model=args.depth_model, completer=args.completer
    )
    logger.info("profile: %s", components.description)
    settings = AppSettings(queue_max_size=args.queue_size)
    import torch

    if not torch.cuda.is_available():  # minutes per job on a CPU at the default size: start the form at draft
        draft = PRESETS["draft"]
        settings.form = FormDefaults(quality="draft", size=draft.size, steps=draft.steps, splat_iters=draft.splat_iters)
    demo = build_demo(PipelineRunner(components), settings)
    launch(demo, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
