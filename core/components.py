"""The small protocols every backend implements, and the typed values passed between them.

Images are float32 ``[H, W, 3]`` in [0, 1]; masks are bool ``[H, W]`` (True = the thing named); depth is z-depth
``[H, W]`` in scene units with 0 = unknown. Device/dtype follow the inputs.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from torch import Tensor

from core.cameras import Camera

DepthKind = Literal["metric", "relative_inverse", "relative"]


class Cancelled(RuntimeError):
    """Raised inside the pipeline when the caller's cancel event is set."""


@dataclass
class DepthEstimate:
    """Output of a depth estimator.

    ``kind`` tells the aligner how to use it: ``metric`` is z-depth in metres, ``relative`` is depth up to
    scale and shift, ``relative_inverse`` is disparity-like (larger = nearer) up to scale and shift.
    """

    values: Tensor  # [H, W]
    kind: DepthKind = "metric"


@dataclass
class RenderResult:
    """What a point renderer sees from a camera."""

    rgb: Tensor  # [H, W, 3] float in [0, 1], 0 where unknown
    depth: Tensor  # [H, W] z-depth, 0 where unknown
    known_mask: Tensor  # [H, W] bool, True where geometry covers the pixel


@runtime_checkable
class Outpainter(Protocol):
    """Fills the pixels of ``fill_mask`` so they continue ``image``.

    ``camera`` and ``view`` say which view of the path is being filled (view 0 is the photo), for outpainters that
    condition on the direction (a panorama prior, a per-view prompt); others ignore them. ``known_mask`` says
    which pixels of ``image`` hold real content, including a seam band inside ``fill_mask`` that the caller wants
    repainted; the rest of ``fill_mask`` is a hole whose values mean nothing. None = only the pixels outside
    ``fill_mask`` are known.
    """

    def outpaint(
        self,
        image: Tensor,  # [H, W, 3]
        fill_mask: Tensor,  # [H, W] bool, True = generate here
        prompt: str,
        negative_prompt: str,
        seed: int,
        cancel: threading.Event | None = None,
        *,
        camera: Camera | None = None,
        view: int | None = None,
        known_mask: Tensor | None = None,  # [H, W] bool
    ) -> Tensor:  # [H, W, 3], equal to ``image`` outside ``fill_mask``
        ...


@dataclass(frozen=True)
class OutpaintRequest:
    """One view to fill: the arguments of :meth:`Outpainter.outpaint`, for outpainters that fill several at once."""

    image: Tensor  # [H, W, 3]
    fill_mask: Tensor  # [H, W] bool, True = generate here
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    camera: Camera | None = None
    view: int | None = None
    known_mask: Tensor | None = None  # [H, W] bool


@runtime_checkable
class ParallelOutpainter(Outpainter, Protocol):
    """An outpainter that fills up to ``parallel_views`` independent views at once, faster than one after another.

    ``outpaint_many(requests)`` returns exactly what ``outpaint`` returns for each request on its own (same
    seeds, same bytes); only the wall time differs. The grow loop hands it views that cannot see each other's new
    content (:func:`core.cameras.views_overlap`), so filling them together changes nothing but the time.
    """

    parallel_views: int

    def outpaint_many(
        self, requests: Sequence[OutpaintRequest], cancel: threading.Event | None = None
    ) -> list[Tensor]:  # one [H, W, 3] per request
        ...


@runtime_checkable
class DepthEstimator(Protocol):
    def estimate(self, image: Tensor, camera: Camera) -> DepthEstimate:  # [H, W, 3] -> DepthEstimate
        ...


@runtime_checkable
class DepthCompleter(Protocol):
    def complete(
        self,
        image: Tensor,  # [H, W, 3]
        known_depth: Tensor,  # [H, W], 0 where unknown
        known_mask: Tensor,  # [H, W] bool
        camera: Camera,
    ) -> Tensor:  # [H, W] z-depth everywhere, equal to known_depth (within tolerance) on known_mask
        ...


@runtime_checkable
class PointRenderer(Protocol):
    def render(
        self,
        points: Tensor,  # [N, 3] world
        colors: Tensor,  # [N, 3] in [0, 1]
        camera: Camera,
        radii: Tensor | None = None,  # [N] world-space footprint radius; None = one pixel at each point's depth
    ) -> RenderResult: ...
