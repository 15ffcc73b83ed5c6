"""The job runner behind the web app: one job at a time in a worker thread, progress, cancel, clean failures.

How a job runs: the Generate handler (:meth:`WorldStitchApp.generate`) is a generator. It checks every input on the
server with the form declaration (:mod:`webui.form`; API callers skip the browser's limits), decodes the upload with
:func:`core.images.load_image`, then runs the pipeline in a worker thread that reports
:class:`core.types.ProgressEvent` through a queue; the handler turns those into UI updates. Cancel sets the job's
``threading.Event``; the pipeline stops at the next view or denoising step and the worker is free. Each job writes
into its own folder under an app-owned root; Gradio copies the results into its cache (which ``delete_cache``
empties), and the job folder is removed when the handler finishes, fails or is cancelled.

On a Hugging Face ZeroGPU Space (the ``spaces`` package is importable) the GPU part runs inside
``spaces.GPU(duration=...)``: its arguments are picklable (a :class:`pipeline.job.JobRequest` and a folder name)
and only ``gr.Error`` leaves it.
"""

from __future__ import annotations

import contextvars
import gc
import importlib.util
import logging
import queue
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import gradio as gr

from core.components import Cancelled
from core.images import ImageError, check_aspect, load_depth_file, load_image, to_uint8
from core.types import ProgressEvent
from pipeline.config import working_size
from pipeline.job import JobError, JobOutputs, JobRequest
from webui.form import JobInputs, Limits, check_form, form_fields
from webui.settings import AppSettings

logger = logging.getLogger("worldstitch.app")

PREVIEW_MAX_SIDE = 512  # the input preview is shown at most this large
HEARTBEAT_S = 0.5  # the handler yields at least this often, so a closed connection or Cancel is seen quickly
SECONDS_PER_UPDATE = 0.25  # at most this many progress updates per second reach the browser


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


def make_request(inputs: JobInputs, limits: Limits) -> JobRequest:
    """Decode the photo (and depth map) with the project's loader; refuse sizes the job would refuse, before the
    job queues for the accelerator. Raises ``gr.Error`` naming the problem."""
    try:
        image = load_image(inputs.image_path, max_pixels=limits.max_pixels, min_side=limits.min_side)
        height, width = image.shape[:2]
        check_aspect(width, height)
        working_size(width, height, inputs.config.scene)
        depth = load_depth_file(inputs.depth_path, max_pixels=limits.max_pixels) if inputs.depth_path else None
    except ValueError as err:  # ImageError is a ValueError too
        raise gr.Error(public_message(str(err))) from None
    return JobRequest(image, inputs.config, depth)


def available_renderers() -> tuple[str, ...]:
    """Point renderers this machine can run (PyTorch3D only when it is installed)."""
    names = ["torch"]
    if importlib.util.find_spec("pytorch3d") is not None:
        names.append("pytorch3d")
    return tuple(names)


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
        self.fields = form_fields(self.settings.limits, self.settings.form, self.renderers)
        """The Generate form's declaration: the handler's arguments, their checks and their widgets."""
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

    def generate(self, *values, request: gr.Request | None = None, progress=gr.Progress()):
        """Generate a scene from the form's values (in :func:`webui.form.form_fields` order).

        Yields (status, viewer, downloads, gallery, timings, seed).
        """
        # 1. Check every input on the server and build the run configuration
        inputs = check_form(self.fields, values, self.settings.models)
        skip = gr.skip()
        yield "Reading the photo…", None, None, None, None, inputs.seed

        # 2. Decode with the project's loader (EXIF, 16-bit, alpha, size policy)
        job_request = make_request(inputs, self.settings.limits)
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
        return to_uint8(decoded[::step, ::step])
