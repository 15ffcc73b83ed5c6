"""Grow where I look: add one view to a finished scene, turned toward a yaw/pitch the user chose (WonderWorld's
interaction), from the existing cloud.

The new view sits at view 0's camera centre with view 0's intrinsics, turned by ``yaw_deg`` (right positive) and
``pitch_deg`` (up positive) in the scene frame; it goes through the same per-view step as every view of the grow
loop (render the cloud, outpaint the unknown part, complete depth conditioned on the known part, snap edges, lift
the new pixels), so what is already there is kept and only the missing part is added. The input
:class:`core.types.SceneResult` is not modified; a new one is returned.

Memory is bounded per scene (:class:`GrowLimits`): a session that keeps growing stops with a clear error before its
cloud or frame list outgrows the budget.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from core.cameras import Camera, pose, rotation_yaw_pitch
from core.components import Cancelled
from core.types import ProgressEvent, SceneResult
from pipeline.grow import STAGES, ScenePipeline, _Clock

BYTES_PER_POINT = 40
"""A cloud point: xyz + rgb float32 (24 B), radius float32 (4 B), source view int64 (8 B), + slack."""
BYTES_PER_FRAME_PIXEL = 40
"""A frame pixel: rgb (12 B), depth, known depth (8 B), three masks (3 B), + what the encoders copy."""


@dataclass(frozen=True)
class GrowLimits:
    """How large one grown scene may become (a session's memory budget)."""

    max_points: int = 4_000_000
    """Points in the cloud: ~160 MB; three times a default 360 scene (1.35 M points)."""

    max_views: int = 40
    """Frames kept (each is encoded into the downloads): three times the 360 ring."""


class GrowLimitError(ValueError):
    """Growing further would exceed :class:`GrowLimits`; the message names the limit."""


def camera_toward(reference: Camera, yaw_deg: float, pitch_deg: float) -> Camera:
    """A camera at ``reference``'s centre with its intrinsics, looking toward ``yaw_deg``/``pitch_deg`` (scene frame).

    Raises:
        ValueError: pitch outside [-90, 90] degrees or a non-finite angle.
    """
    if not (-90.0 <= pitch_deg <= 90.0) or not abs(yaw_deg) < float("inf"):
        raise ValueError(f"pitch must lie in [-90, 90] degrees and yaw be finite, got yaw {yaw_deg}, pitch {pitch_deg}")
    world_to_cam = pose(rotation_yaw_pitch(yaw_deg, pitch_deg), reference.center)
    return Camera(reference.K.clone(), world_to_cam.to(reference.world_to_cam), reference.height, reference.width)


def grow_more(
    result: SceneResult,
    pipe: ScenePipeline,
    yaw_deg: float,
    pitch_deg: float = 0.0,
    prompt: str = "",
    negative_prompt: str = "",
    seed: int = 0,
    cancel: threading.Event | None = None,
    progress=None,
    limits: GrowLimits = GrowLimits(),
) -> SceneResult:
    """Grow ``result`` by one view toward ``yaw_deg``/``pitch_deg``.

    Args:
        result: a finished scene (its frames and cloud are reused, not modified).
        pipe: the same components the scene was grown with.
        yaw_deg: where to look, degrees right of the photo's direction.
        pitch_deg: degrees up from level.
        prompt, negative_prompt, seed: as for the first run (the view's seed is ``seed + its index``).
        cancel: stops the step with :class:`core.components.Cancelled`.
        progress: receives :class:`core.types.ProgressEvent` for the view's stages.
        limits: the scene's memory budget.

    Returns:
        A new :class:`SceneResult` with one more frame, the grown cloud, updated timings and points per view.

    Raises:
        GrowLimitError: the scene already holds :attr:`GrowLimits.max_views` views, or the new view could push the
            cloud past :attr:`GrowLimits.max_points`.
        ValueError: a bad angle or an empty scene.
    """
    # 1. Check inputs and the budget (worst case: every pixel of the new view is new)
    if not result.frames:
        raise ValueError("the scene has no views to grow from")
    reference = result.frames[0].camera
    camera = camera_toward(reference, yaw_deg, pitch_deg)
    index = len(result.frames)
    if index >= limits.max_views:
        raise GrowLimitError(f"a scene may have at most {limits.max_views} views; this one has {index} already")
    worst = len(result.cloud) + camera.width * camera.height
    if worst > limits.max_points:
        raise GrowLimitError(
            f"a scene may hold at most {limits.max_points:,} points; this one has {len(result.cloud):,} and a new "
            f"view can add {camera.width * camera.height:,}"
        )

    # 2. The grow loop's per-view step (render, outpaint, complete, snap, fuse)
    report = progress or (lambda event: None)
    clock = _Clock({name: 0.0 for name in STAGES})

    def step(stage: str, view: int, within: float) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        report(ProgressEvent(stage, view, index + 1, within, f"growing toward yaw {yaw_deg:g}°: {stage}"))

    frame, cloud = pipe.grow_view(index, camera, result.cloud, prompt, negative_prompt, seed, step, clock, cancel)

    # 3. A new result: the old frames plus the new one
    timings = {name: result.timings.get(name, 0.0) + clock.timings.get(name, 0.0) for name in STAGES}
    return SceneResult([*result.frames, frame], cloud, timings, [*result.points_per_view, frame.points_added])
