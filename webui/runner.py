"""The job runner behind the web app: one job at a time in a worker thread, progress, cancel, clean failures.

How a job runs: the Generate handler (:meth:`WorldStitchApp.generate`) is a generator. It checks every input on the
server with the form declaration (:mod:`webui.form`; API callers skip the browser's limits), decodes the upload with
:func:`core.images.load_image`, then runs the pipeline in a worker thread that reports
:class:`core.types.ProgressEvent` through a queue; the handler turns those into UI updates. Cancel sets the job's
``threading.Event``; the pipeline stops at the next view or denoising step and the worker is free. Each job writes
into its own folder under an app-owned root; Gradio copies the results into its cache (which ``delete_cache``
empties), and the job folder is removed when the handler finishes, fails or is cancelled.

"Grow where I look" (:meth:`WorldStitchApp.grow`): after a run the session holds a token (``gr.State``) for its
scene, kept in a bounded :class:`SceneStore` (a few scenes, each within :class:`pipeline.grow_more.GrowLimits`);
growing runs like a job (same queue, lock, cancel and folders) through the runner's ``grow``.

Objects (:mod:`webui.objects_ui`): a click on a generated view places an object on the clicked surface and shows it
drawn into that view (a preview, no job); "Add object" re-exports the kept scene with every placed object
(:class:`ObjectsRequest`, :func:`pipeline.job.objects_job`: the fitted splats are reused, no growing) through the same
queue, lock, cancel and staged folders as a job. The objects are kept with the scene and drawn into it again after
each "grow where I look".

On a ZeroGPU Space (``SPACES_ZERO_GPU`` set, :func:`pipeline.space.is_zero_gpu`) the GPU part runs inside
``spaces.GPU(duration=...)``, the duration computed per job from its mode, quality and size
(:func:`webui.estimate.zero_gpu_seconds`); its arguments are picklable (a :class:`pipeline.job.JobRequest` or a
:class:`GrowRequest`, and a folder name), the scene comes back on the CPU, and only ``gr.Error`` leaves it.
"""

from __future__ import annotations

import collections
import contextvars
import dataclasses
import gc
import importlib.util
import inspect
import logging
import os
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
from torch import Tensor

from core.components import Cancelled
from core.images import ImageError, check_aspect, load_depth_file, load_image, to_uint8
from core.types import ProgressEvent, SceneResult
from pipeline.config import RunConfig, working_size
from pipeline.job import JobError, JobOutputs, JobRequest
from pipeline.space import is_zero_gpu
from webui.estimate import zero_gpu_seconds
from webui.form import JobInputs, Limits, check_form, check_number, form_fields
from webui.objects_ui import (
    MAX_SCENE_OBJECTS,
    Click,
    SceneObject,
    check_choice,
    check_click,
    check_occlusion,
    object_rows,
    occluder_for,
    place_object,
    view_with_objects,
)
from webui.settings import AppSettings

logger = logging.getLogger("worldstitch.app")

PREVIEW_MAX_SIDE = 512  # the input preview is shown at most this large
HEARTBEAT_S = 0.5  # the handler yields at least this often, so a closed connection or Cancel is seen quickly
SECONDS_PER_UPDATE = 0.25  # at most this many progress updates per second reach the browser
CANCELLED_MESSAGE = "Cancelled — nothing was saved."
YAW_RANGE = (-180.0, 180.0)  # degrees right of the photo's direction
PITCH_RANGE = (-90.0, 90.0)  # degrees up from level


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


@dataclass
class GrowRequest:
    """Grow a finished scene by one view toward a direction (picklable, for ZeroGPU like :class:`JobRequest`)."""

    result: SceneResult
    config: RunConfig
    yaw_deg: float
    pitch_deg: float
    limits: object
    """:class:`pipeline.grow_more.GrowLimits` of the session."""
    objects: tuple[SceneObject, ...] = ()
    """The objects placed in the scene: drawn into the grown scene too."""


@dataclass
class ObjectsRequest:
    """Write a kept scene again with these objects in it (picklable; runs on the CPU, no model needed)."""

    result: SceneResult
    config: RunConfig
    objects: tuple[SceneObject, ...]
    splats: object | None
    """The scene's fitted splats (reused: no fit), or None to fit them again."""
    occlusion: str = "depth test"
    """:data:`webui.objects_ui.OCCLUSION_CHOICES`: how the downloaded frames hide the objects."""


def export_objects(request: ObjectsRequest, out_dir, progress=None, cancel=None) -> JobOutputs:
    """Run :func:`pipeline.job.objects_job` for ``request`` (the objects are built here, in the worker)."""
    from pipeline.job import objects_job

    return objects_job(
        request.result,
        request.config,
        [obj.build() for obj in request.objects],
        out_dir,
        progress=progress,
        cancel=cancel,
        splats=request.splats,
        occluder=occluder_for(request.occlusion),
    )


class PipelineRunner:
    """:func:`pipeline.job.run_job` and :func:`pipeline.job.grow_job` bound to components built once at start."""

    def __init__(self, components):
        self.components = components
        self.profile = components.profile
        self.description = components.description

    def __call__(self, request, out_dir, progress=None, cancel=None) -> JobOutputs:
        from pipeline.job import run_job

        return run_job(request, self.components, out_dir, progress=progress, cancel=cancel)

    def grow(self, request: GrowRequest, out_dir, progress=None, cancel=None) -> JobOutputs:
        """Grow ``request.result`` toward its direction and write the grown scene (see :func:`grow_job`)."""
        from pipeline.job import grow_job

        return grow_job(
            request.result,
            request.config,
            self.components,
            request.yaw_deg,
            request.pitch_deg,
            out_dir,
            progress=progress,
            cancel=cancel,
            limits=request.limits,
            objects=[obj.build() for obj in request.objects],
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
    request: JobRequest | GrowRequest | ObjectsRequest,
    out_dir: Path,
    cancel: threading.Event,
    gpu_lock: threading.Lock,
) -> Iterator[ProgressEvent | JobOutputs | None]:
    """Run ``runner`` (``runner.grow`` for a :class:`GrowRequest`, :func:`export_objects` for an
    :class:`ObjectsRequest`) in a worker thread; yield its progress events,
    ``None`` every :data:`HEARTBEAT_S` without news, and finally its :class:`JobOutputs`. The job's exception is
    re-raised here.

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
                if isinstance(request, ObjectsRequest):
                    job = export_objects
                else:
                    job = runner.grow if isinstance(request, GrowRequest) else runner
                events.put(_Finished(job(request, out_dir, progress=events.put, cancel=cancel)))
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


def _gpu_wrapped(runner: Runner, gpu_lock: threading.Lock, duration_s: int | None):
    """On ZeroGPU: a ``spaces.GPU`` generator with picklable arguments that lets only ``gr.Error`` out.

    ``duration_s`` None asks for :func:`webui.estimate.zero_gpu_seconds` of each job (computed from its request
    before the GPU is granted), else that many seconds for every job.
    """
    import spaces

    def gpu_job(request: JobRequest | GrowRequest, out_dir: str) -> Iterator[ProgressEvent | JobOutputs | None]:
        cancel = threading.Event()  # events cannot cross the process boundary; closing the generator cancels
        failure: gr.Error | None = None
        try:
            for item in stream_job(runner, request, Path(out_dir), cancel, gpu_lock):
                if isinstance(item, JobOutputs):  # the scene comes back on the CPU (kept for "grow where I look")
                    item = replace(item, result=_on_cpu(item.result), splats=_on_cpu(item.splats))
                yield item
        except Cancelled:
            return
        except Exception as err:  # noqa: BLE001 - ZeroGPU shows anything but gr.Error as "worker error"
            failure = to_user_error(err)
        if failure is not None:
            _free_memory()
            raise failure

    def duration(request: JobRequest | GrowRequest, out_dir: str) -> int:
        return zero_gpu_seconds(request.config, grow=isinstance(request, GrowRequest))

    return spaces.GPU(duration=duration if duration_s is None else duration_s)(gpu_job)


def _on_cpu(value):
    """``value`` with every tensor inside it (dataclasses, lists, tuples) moved to the CPU."""
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(item) for item in value)
    if isinstance(value, dict):
        return {key: _on_cpu(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: _on_cpu(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init})
    return value


def spaces_available() -> bool:
    """Whether this process runs on ZeroGPU hardware (``SPACES_ZERO_GPU`` set by Hugging Face) and the ``spaces``
    package is importable; elsewhere its decorator would only add a process boundary."""
    if not is_zero_gpu(os.environ):
        return False
    try:
        import spaces  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class KeptScene:
    """A finished scene a session may grow further and place objects in."""

    result: SceneResult
    config: RunConfig
    used: float
    """``time.monotonic()`` of its last use."""
    objects: tuple[SceneObject, ...] = ()
    """Objects placed in it (not in ``result``: growing continues from the scene itself)."""
    splats: object | None = None
    """Its fitted splats without the objects (``JobOutputs.splats``), reused when objects are added."""
    occlusion: str = "depth test"
    """How its downloaded frames hide the objects (the last choice)."""


class SceneStore:
    """The scenes kept for "grow where I look": at most ``max_scenes``, each dropped ``max_age_s`` after its last
    use; the least recently used goes first. A session holds only the random token (``gr.State``).
    """

    def __init__(self, max_scenes: int, max_age_s: float):
        self.max_scenes = max_scenes
        self.max_age_s = max_age_s
        self._scenes: collections.OrderedDict[str, KeptScene] = collections.OrderedDict()
        self._guard = threading.Lock()

    def put(
        self,
        result: SceneResult,
        config: RunConfig,
        token: str | None = None,
        *,
        objects: tuple[SceneObject, ...] = (),
        splats=None,
        occlusion: str = "depth test",
    ) -> str:
        """Keep ``result`` (under ``token``, replacing what it held, or a new token) with its objects and fitted
        splats; returns the token."""
        token = token or uuid.uuid4().hex
        with self._guard:
            self._scenes.pop(token, None)
            self._scenes[token] = KeptScene(result, config, time.monotonic(), tuple(objects), splats, occlusion)
            self._expire()
            while len(self._scenes) > self.max_scenes:
                self._scenes.popitem(last=False)
        return token

    def get(self, token: str | None) -> KeptScene:
        """The scene kept under ``token``. Raises ``gr.Error`` when there is none (never made, or dropped)."""
        with self._guard:
            self._expire()
            scene = self._scenes.get(token) if isinstance(token, str) else None
            if scene is None:
                raise gr.Error(
                    "There is no scene to grow in this session (none was generated yet, or it was dropped to free "
                    "memory): press Generate first."
                )
            scene.used = time.monotonic()
            self._scenes.move_to_end(token)
            return scene

    def drop(self, token: str | None) -> None:
        """Forget the scene under ``token`` (the session ended)."""
        with self._guard:
            if isinstance(token, str):
                self._scenes.pop(token, None)

    def __len__(self) -> int:
        with self._guard:
            return len(self._scenes)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.max_age_s
        for token in [token for token, scene in self._scenes.items() if scene.used < cutoff]:
            del self._scenes[token]


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


def plural(count: int, noun: str) -> str:
    """``1 view``, ``13 views``, ``1,234 points``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _status(event: ProgressEvent, started: float) -> str:
    where = f"view {event.view + 1}/{event.num_views} · " if event.view >= 0 and event.num_views else ""
    message = public_message(event.message or event.stage)
    return f"{where}{event.stage} · {event.fraction:.0%} · {time.perf_counter() - started:.0f} s — {message}"


@dataclass
class _Done:
    outputs: JobOutputs
    seconds: float


@dataclass
class _Running:
    status: str
    """The progress display's text (the status itself stays as it is under it)."""


def _shown(update):
    """The status output for an update of :meth:`WorldStitchApp._run`: unchanged while running, else the text."""
    return gr.skip() if isinstance(update, _Running) else update


class WorldStitchApp:
    """The handlers behind the UI; holds the injected runner, the per-session cancel events and kept scenes."""

    def __init__(self, runner: Runner, settings: AppSettings | None = None, *, use_zero_gpu: bool | None = None):
        self.runner = runner
        self.settings = settings or AppSettings()
        self.renderers = available_renderers()
        self.fields = form_fields(self.settings.limits, self.settings.form, self.renderers)
        """The Generate form's declaration: the handler's arguments, their checks and their widgets."""
        self.gpu_lock = threading.Lock()
        self._cancel_events: dict[str, threading.Event] = {}
        self._cancel_guard = threading.Lock()
        self.scenes = SceneStore(self.settings.max_kept_scenes, self.settings.kept_scene_s)
        """Finished scenes a session may grow further (bounded)."""
        self.settings.output_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        sweep_stale(self.settings.output_root, self.settings.stale_job_s)
        if use_zero_gpu is None:
            use_zero_gpu = spaces_available()
        self.gpu_job = _gpu_wrapped(runner, self.gpu_lock, self.settings.gpu_duration_s) if use_zero_gpu else None
        self.examples: gr.Examples | None = None

    # the job -------------------------------------------------------------------------------------------------------

    def generate_event(self):
        """:meth:`generate` as a Gradio event handler: one named parameter per form field, then ``request`` and
        ``progress``. Gradio injects the request (the session, which Cancel needs) and the progress tracker only
        into positional parameters, never after ``*values``."""

        def generate(*args):
            *values, request, progress = args
            yield from self.generate(*values, request=request, progress=progress)

        names = [spec.name for spec in self.fields]
        positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
        generate.__signature__ = inspect.Signature(
            [inspect.Parameter(name, positional) for name in names]
            + [
                inspect.Parameter("request", positional, default=None, annotation=gr.Request | None),
                inspect.Parameter("progress", positional, default=gr.Progress()),
            ]
        )
        generate.__annotations__ = {"request": gr.Request | None}
        return generate

    def generate(self, *values, request: gr.Request | None = None, progress=gr.Progress()):
        """Generate a scene from the form's values (in :func:`webui.form.form_fields` order).

        Yields (status, viewer, downloads, gallery, timings, seed, scene token).
        """
        # 1. Check every input on the server and build the run configuration
        inputs = check_form(self.fields, values, self.settings.models)
        skip = gr.skip()
        yield "", None, None, None, None, inputs.seed, skip  # the status is blank under the progress display

        # 2. Decode with the project's loader (EXIF, 16-bit, alpha, size policy)
        job_request = make_request(inputs, self.settings.limits)
        depth_warnings = list(job_request.depth.warnings) if job_request.depth is not None else []
        for warning in depth_warnings:
            gr.Warning(public_message(warning))

        # 3. Run the pipeline in a worker, in a folder of its own; 4. show the results and keep the scene
        for update in self._run(job_request, request, progress):
            if isinstance(update, _Done):
                outputs = update.outputs
                if outputs.result is not None:
                    token = self.scenes.put(outputs.result, inputs.config, splats=outputs.splats)
                else:
                    token = skip
                status, *shown = self._results(outputs, inputs.seed, depth_warnings, update.seconds)
                yield status, *shown, inputs.seed, token
            else:
                yield _shown(update), skip, skip, skip, skip, skip, skip

    def grow(self, token, yaw, pitch, request: gr.Request | None = None, progress=gr.Progress()):
        """Grow this session's scene by one view toward ``yaw``/``pitch`` (degrees) and show the grown scene.

        Yields (status, viewer, downloads, gallery, timings, scene token).
        """
        yaw = check_number(yaw, "Turn (yaw)", YAW_RANGE, integer=False)
        pitch = check_number(pitch, "Look up/down (pitch)", PITCH_RANGE, integer=False)
        kept = self.scenes.get(token)
        skip = gr.skip()
        grow_request = GrowRequest(kept.result, kept.config, yaw, pitch, self.settings.grow_limits, kept.objects)
        for update in self._run(grow_request, request, progress):
            if isinstance(update, _Done):
                outputs = update.outputs
                self.scenes.put(outputs.result, kept.config, token, objects=kept.objects, splats=outputs.splats)
                status, *shown = self._results(outputs, kept.config.scene.seed, [], update.seconds)
                status = f"Grew toward yaw {yaw:g}°, pitch {pitch:g}° · " + status
                yield status, *shown, token
            else:
                yield _shown(update), skip, skip, skip, skip, skip

    # objects -------------------------------------------------------------------------------------------------------

    def objects_panel(self, token):
        """After a run or a grow: the objects panel for this session's scene (view 0, its objects, no pending click).

        Returns (panel, view slider, view image, objects table, pending click).
        """
        try:
            kept = self.scenes.get(token)
        except gr.Error:
            return gr.update(visible=False), gr.skip(), None, [], None
        frames = kept.result.frames
        image = view_with_objects(frames[0], list(kept.objects), kept.occlusion)
        views = gr.update(maximum=max(len(frames) - 1, 1), value=0, interactive=len(frames) > 1)
        return gr.update(visible=True), views, image, object_rows(list(kept.objects)), None

    def show_view(self, token, view, occlusion):
        """The chosen view with the scene's objects, ready to be clicked. Returns (view image, pending click)."""
        kept = self.scenes.get(token)
        view = check_number(view, "View", (0, len(kept.result.frames) - 1), integer=True)
        occlusion = check_occlusion(occlusion)
        return view_with_objects(kept.result.frames[view], list(kept.objects), occlusion), None

    def place(self, token, view, kind, size, color, turn, right, up, away, scale, mesh, occlusion, evt: gr.SelectData):
        """A click on the shown view: the object stands on the clicked surface; the view shows it (not added yet).

        The arguments after ``view`` are the panel's controls (see :func:`webui.objects_ui.check_choice`); Gradio
        passes the click as ``evt`` (its ``index`` is [column, row] in the view's pixels).
        Returns (pending click, preview image, note).
        """
        controls = (kind, size, color, turn, right, up, away, scale, mesh, occlusion)
        kept = self.scenes.get(token)
        view = check_number(view, "View", (0, len(kept.result.frames) - 1), integer=True)
        frame = kept.result.frames[view]
        index = getattr(evt, "index", None)
        if not (isinstance(index, (list, tuple)) and len(index) == 2):
            raise gr.Error("Click a pixel of the view.")
        height, width = frame.depth.shape
        # the browser rounds the clicked position to whole pixels: a click on the far edge reports the width
        column = int(check_number(index[0], "Clicked column", (0, width), integer=True))
        row = int(check_number(index[1], "Clicked row", (0, height), integer=True))
        click = Click(view, min(column, width - 1), min(row, height - 1))
        return (click, *self._preview(kept, click, controls))

    def adjust(self, token, click, *controls):
        """The pending object again after a control changed. Returns (preview image, note); no click, no change."""
        if click is None:
            return gr.skip(), gr.skip()
        kept = self.scenes.get(token)
        return self._preview(kept, check_click(click, len(kept.result.frames)), controls)

    def _preview(self, kept: KeptScene, click: Click, controls) -> tuple:
        choice = check_choice(*controls)
        frame = kept.result.frames[click.view]
        obj = place_object(frame, click, choice)
        image = view_with_objects(frame, [*kept.objects, obj], choice.occlusion)
        x, y, z = obj.spec.position
        note = (
            f"Preview: {obj.spec.kind} at ({x:.2f}, {y:.2f}, {z:.2f}) on the surface at pixel "
            f"({click.column}, {click.row}) of view {click.view}. Press **Add object** to put it into the scene."
        )
        return image, note

    def add_object(
        self,
        token,
        click,
        kind,
        size,
        color,
        turn,
        right,
        up,
        away,
        scale,
        mesh,
        occlusion,
        request: gr.Request | None = None,
        progress=gr.Progress(),
    ):
        """Put the pending object into the scene: viewer, video and downloads are written again with every object.

        Yields (status, viewer, downloads, gallery, timings, objects table, view image, pending click, note).
        """
        kept = self.scenes.get(token)
        click = check_click(click, len(kept.result.frames))
        choice = check_choice(kind, size, color, turn, right, up, away, scale, mesh, occlusion)
        if len(kept.objects) >= MAX_SCENE_OBJECTS:
            raise gr.Error(f"A scene holds at most {MAX_SCENE_OBJECTS} objects: clear them to start again.")
        obj = place_object(kept.result.frames[click.view], click, choice)
        yield from self._write_objects(
            token, kept, (*kept.objects, obj), choice.occlusion, click.view, request, progress
        )

    def clear_objects(self, token, view, occlusion, request: gr.Request | None = None, progress=gr.Progress()):
        """Remove every object: the scene's files are written again as they were generated.

        Yields what :meth:`add_object` yields.
        """
        kept = self.scenes.get(token)
        view = check_number(view, "View", (0, len(kept.result.frames) - 1), integer=True)
        occlusion = check_occlusion(occlusion)
        yield from self._write_objects(token, kept, (), occlusion, view, request, progress)

    def _write_objects(self, token, kept: KeptScene, objects: tuple, occlusion: str, view: int, request, progress):
        skip = gr.skip()
        job = ObjectsRequest(kept.result, kept.config, objects, kept.splats, occlusion)
        for update in self._run(job, request, progress):
            if isinstance(update, _Done):
                outputs = update.outputs
                self.scenes.put(
                    kept.result, kept.config, token, objects=objects, splats=kept.splats, occlusion=occlusion
                )
                status, *shown = self._results(outputs, kept.config.scene.seed, [], update.seconds)
                what = f"{plural(len(objects), 'object')} in the scene" if objects else "No objects in the scene"
                image = view_with_objects(kept.result.frames[view], list(objects), occlusion)
                yield f"{what} · {status}", *shown, object_rows(list(objects)), image, None, ""
            else:
                yield _shown(update), *([skip] * 8)

    def _run(self, job: JobRequest | GrowRequest | ObjectsRequest, request: gr.Request | None, progress):
        """Run ``job`` in a folder of its own; yields status lines (while it runs: the progress display's text), then
        a :class:`_Done` or the cancel message.

        Cancel (:meth:`cancel`) sets this session's event: the local worker sees it at its next view or step; on
        ZeroGPU the GPU generator is closed (events cannot cross the process boundary). Either way the handler
        answers within :data:`HEARTBEAT_S` and ends normally with the cancel message (Gradio's own event
        cancellation would mark the status "Error"). Raises ``gr.Error`` for every failure (no internals); the job
        folder is removed in every case.
        """
        sweep_stale(self.settings.output_root, self.settings.stale_job_s)
        job_dir = self.settings.output_root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex}"
        cancel = self._register_cancel(request)
        started = time.perf_counter()
        last_update = 0.0
        last_event: ProgressEvent | None = None
        failure: gr.Error | None = None
        try:
            if self.gpu_job is not None and not isinstance(job, ObjectsRequest):  # objects need no accelerator
                stream = self.gpu_job(job, str(job_dir))
            else:
                stream = stream_job(self.runner, job, job_dir, cancel, self.gpu_lock)
            outputs = None
            for item in stream:
                if cancel.is_set():
                    stream.close()  # on ZeroGPU this stops the GPU job; locally the worker already saw the event
                    break
                if isinstance(item, JobOutputs):
                    outputs = item  # the stream ends right after; let it finish (releases the GPU cleanly)
                    continue
                if isinstance(item, ProgressEvent):
                    last_event = item
                now = time.perf_counter()
                if now - last_update >= SECONDS_PER_UPDATE:  # also on heartbeats: the clock in the status ticks
                    last_update = now
                    status = _status(last_event, started) if last_event else f"Starting… {now - started:.0f} s"
                    # the one progress display (on the status): its bar, with the status line as its text
                    fraction = min(max(last_event.fraction, 0.0), 1.0) if last_event else 0.0
                    progress(fraction, desc=status)
                    yield _Running(status)
            if outputs is None:  # the stream ended without a result: cancelled
                yield CANCELLED_MESSAGE
                return
            yield _Done(outputs, time.perf_counter() - started)
        except Cancelled:
            yield CANCELLED_MESSAGE
        except Exception as err:  # noqa: BLE001 - every failure becomes a message without internals
            failure = to_user_error(err)
        finally:
            self._unregister_cancel(request, cancel)
            shutil.rmtree(job_dir, ignore_errors=True)  # results were copied to Gradio's cache on the last yield
        if failure is not None:
            _free_memory()  # outside the except block: the failed job's frames (and tensors) are released by now
            raise failure

    def _results(self, outputs: JobOutputs, seed: int, warnings: list[str], seconds: float):
        """(status, viewer, downloads, gallery, timings) for a finished job."""
        downloads = [path for path in outputs.downloads if Path(path).is_file()]
        gallery = [(str(path), caption) for path, caption in outputs.gallery if Path(path).is_file()]
        viewer = outputs.viewer_ply or outputs.splat_ply or outputs.points_ply  # the copy that opens on the photo
        notes = [public_message(w) for w in [*warnings, *outputs.warnings]]
        for note in outputs.warnings:
            gr.Warning(public_message(note))
        points = sum(outputs.points_per_view)
        views = len(outputs.points_per_view)
        status = f"Done in {seconds:.1f} s · seed {seed} · {plural(points, 'point')} from {plural(views, 'view')}"
        if notes:
            status += "\n\n" + "\n".join(f"- {note}" for note in notes)
        return status, str(viewer), [str(p) for p in downloads], gallery, _timing_rows(outputs.timings)

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

    def cancel(self, request: gr.Request | None = None):
        """Stop this browser session's running job at its next view or denoising step.

        Returns the status to show: the cancel message when a job was running, else no change.
        """
        key = getattr(request, "session_hash", None)
        with self._cancel_guard:
            event = self._cancel_events.get(key) if key else None
        if event is None:
            return gr.skip()
        event.set()
        return CANCELLED_MESSAGE

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
