"""ScenePipeline: grow a scene around one photo, view by view.

For each camera on the path after the first:

1. render the fused cloud into the camera          → rgb_known, depth_known, known_mask
2. outpaint colour where the cloud has nothing     → rgb
3. complete depth, conditioned on the known depth  → depth
4. find depth edges (pixels straddling a discontinuity are not lifted)
5. lift the new region (+ seam band), dedupe, fuse

Views that cannot see each other (:func:`core.cameras.views_overlap`: the two sides of a ring, which take turns)
are outpainted together when the outpainter can fill several at once (:class:`core.components.ParallelOutpainter`,
e.g. PatchMatch on two cores). The result is the same as one after another, byte for byte: a later view of such a
wave is rendered again after the earlier ones are fused, and outpainted again if anything it sees changed.

The components are injected; this module holds no model, UI or file code.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from core.cameras import Camera, views_overlap
from core.components import (
    Cancelled,
    DepthCompleter,
    DepthEstimator,
    Outpainter,
    OutpaintRequest,
    ParallelOutpainter,
    PointRenderer,
    RenderResult,
)
from core.masks import dilate, erode, snap_depth_edges
from core.types import Frame, ProgressEvent, SceneResult
from pipeline.config import GrowConfig
from pipeline.fusion import lift_pixels, new_point_mask
from pipeline.ring import apply_closure, measure_closure, ring_centre

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[ProgressEvent], None]
STAGES = ("depth", "render", "outpaint", "complete", "snap", "fuse")


@dataclass
class _Clock:
    """Sums wall time per stage."""

    timings: dict[str, float]

    def stage(self, name: str):
        clock = self

        class _Span:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                clock.timings[name] = clock.timings.get(name, 0.0) + time.perf_counter() - self.start

        return _Span()


class ScenePipeline:
    """The grow loop with its components injected.

    Args:
        outpainter: fills colour where the cloud has nothing.
        estimator: metric depth for the first view (when no depth is given).
        completer: depth for later views, conditioned on the known (rendered) depth.
        renderer: reprojects the fused cloud into each camera.
        config: mask sizes, tolerances (see :class:`pipeline.config.GrowConfig`).
    """

    def __init__(
        self,
        outpainter: Outpainter,
        estimator: DepthEstimator,
        completer: DepthCompleter,
        renderer: PointRenderer,
        config: GrowConfig | None = None,
    ):
        self.outpainter = outpainter
        self.estimator = estimator
        self.completer = completer
        self.renderer = renderer
        self.config = config or GrowConfig()

    def __call__(
        self,
        image: Tensor,  # [H, W, 3] in [0, 1], view 0
        cameras: list[Camera],
        prompt: str = "",
        negative_prompt: str = "",
        seed: int = 0,
        initial_depth: Tensor | None = None,  # [H, W] metric z-depth of view 0, 0 = unknown
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> SceneResult:
        # 1. Check inputs
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image must be [H, W, 3], got {tuple(image.shape)}")
        if not cameras:
            raise ValueError("at least one camera is needed")
        height, width = image.shape[:2]
        if (cameras[0].height, cameras[0].width) != (height, width):
            raise ValueError(f"camera size {cameras[0].height}x{cameras[0].width} != image size {height}x{width}")
        if initial_depth is not None and initial_depth.shape != (height, width):
            raise ValueError(f"initial depth {tuple(initial_depth.shape)} != image size {(height, width)}")
        report = progress or (lambda event: None)
        clock = _Clock({name: 0.0 for name in STAGES})
        num_views = len(cameras)

        def step(stage: str, view: int, within: float, views: str | None = None) -> None:
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled")
            fraction = (view + within) / num_views
            where = f"views {views}" if views else f"view {view + 1}"
            report(ProgressEvent(stage, view, num_views, min(fraction, 1.0), f"{where}/{num_views}: {stage}"))

        # 2. The first view: depth from the given map or the estimator, lifted whole
        step("depth", 0, 0.0)
        with clock.stage("depth"):
            depth0 = self._first_depth(image, cameras[0], initial_depth)
        with clock.stage("snap"):
            # pixels straddling a depth edge are not lifted (never moved: a blurred ramp and a thin real surface
            # look alike); a depth map the user gave is lifted as given wherever it is valid
            lift = ~snap_depth_edges(depth0, self.config.snap_rel_threshold).edge_mask
            if initial_depth is not None:
                lift |= _valid_depth(initial_depth.to(depth0))
        everything = torch.ones(height, width, dtype=torch.bool, device=image.device)
        nothing = torch.zeros_like(everything)
        with clock.stage("fuse"):
            cloud = lift_pixels(image, depth0, lift, cameras[0], 0, self.config.point_footprint_px)
        frames = [Frame(0, cameras[0], image, depth0, everything, len(cloud), torch.zeros_like(depth0), nothing, lift)]

        # 3. Every further view: render, outpaint, complete, snap, fuse; views apart from each other in waves
        lanes = self.outpainter.parallel_views if isinstance(self.outpainter, ParallelOutpainter) else 1
        for wave in outpaint_waves(cameras, lanes):
            grown, cloud = self.grow_views(
                wave, [cameras[i] for i in wave], cloud, prompt, negative_prompt, seed, step, clock, cancel
            )
            frames += grown

        # 4. A closed 360° ring: spread the closure discrepancy over the ring (pipeline/ring.py)
        centre = ring_centre(cameras) if self.config.close_ring else None
        if centre is not None:
            with clock.stage("fuse"):
                closure = measure_closure(frames, cloud, self.renderer, self.estimator, centre)
                if closure is not None:
                    frames, cloud = apply_closure(frames, cloud, closure)
        report(ProgressEvent("fuse", num_views - 1, num_views, 1.0, f"{len(cloud)} points"))
        return SceneResult(frames, cloud, clock.timings, [f.points_added for f in frames])

    def _first_depth(self, image: Tensor, camera: Camera, given: Tensor | None) -> Tensor:  # -> [H, W]
        if given is not None:
            given = given.to(image)
            valid = _valid_depth(given)
            if bool(valid.all()):
                return given
            # a partial depth map (holes, invalid values): the completer fills it, aligned to what is valid
            given = torch.where(valid, given, torch.zeros_like(given))
            return torch.where(valid, given, self.completer.complete(image, given, valid, camera))
        estimate = self.estimator.estimate(image, camera)
        if estimate.kind != "metric":
            raise ValueError("the first view needs metric depth: use a metric depth model or give a depth map")
        return estimate.values.to(image)

    def grow_view(self, index, camera, cloud, prompt, negative_prompt, seed, step, clock, cancel):
        """One view of the loop: render the cloud into ``camera``, outpaint, complete depth, snap, lift the new
        pixels (view ``index``); returns the new :class:`Frame` and the grown cloud (``cloud`` is not modified).
        ``step(stage, index, within)`` is called before each stage (it raises to cancel); ``clock`` sums stage time.
        Used by :func:`pipeline.grow_more.grow_more`."""
        (frame,), cloud = self.grow_views([index], [camera], cloud, prompt, negative_prompt, seed, step, clock, cancel)
        return frame, cloud

    def grow_views(self, indices, cameras, cloud, prompt, negative_prompt, seed, step, clock, cancel):
        """Views ``indices`` (consecutive; with more than one, apart from each other, see :func:`outpaint_wave`):
        rendered and outpainted together, then completed and fused in order. Returns their frames and the grown
        cloud, exactly what :meth:`grow_view` one view after another gives."""
        first, last = indices[0], indices[-1]

        def announce(stage: str, within: float) -> None:  # a wave is announced as "views 2-3/13: outpaint"
            if len(indices) == 1:
                step(stage, first, within)
            else:
                step(stage, first, within, f"{first + 1}-{last + 1}")

        announce("render", 0.0)
        with clock.stage("render"):
            seens = [self.renderer.render(cloud.points, cloud.colors, camera, cloud.radii) for camera in cameras]
        requests = [
            self._request(index, camera, seen, prompt, negative_prompt, seed)
            for index, camera, seen in zip(indices, cameras, seens)
        ]
        announce("outpaint", 0.2)
        with clock.stage("outpaint"):
            if len(requests) == 1:
                rgbs = [self._outpaint_one(requests[0], cancel)]
            else:
                rgbs = self.outpainter.outpaint_many(requests, cancel)
        frames = []
        for position, (index, camera) in enumerate(zip(indices, cameras)):
            seen, request, rgb = seens[position], requests[position], rgbs[position]
            if position > 0:
                # the earlier views are fused now: what this view sees must not have changed
                with clock.stage("render"):
                    now = self.renderer.render(cloud.points, cloud.colors, camera, cloud.radii)
                if not _same_render(now, seen):
                    logger.info("view %d sees what views %d-%d added: outpainting it again", index, first, index - 1)
                    seen = now
                    request = self._request(index, camera, seen, prompt, negative_prompt, seed)
                    step("outpaint", index, 0.2)
                    with clock.stage("outpaint"):
                        rgb = self._outpaint_one(request, cancel)
            frame, cloud = self._finish_view(index, camera, cloud, seen, request, rgb, step, clock)
            frames.append(frame)
        return frames, cloud

    def _request(self, index, camera, seen: RenderResult, prompt, negative_prompt, seed) -> OutpaintRequest:
        """What to outpaint in view ``index``: everything but the eroded known region, grown across the seam."""
        cfg = self.config
        known = erode(seen.known_mask, cfg.known_erode_px)
        masked = torch.where(known[..., None], seen.rgb, torch.zeros_like(seen.rgb))
        inpaint_mask = dilate(~known, cfg.outpaint_dilate_px)
        return OutpaintRequest(masked, inpaint_mask, prompt, negative_prompt, seed + index, camera, index, known)

    def _outpaint_one(self, request: OutpaintRequest, cancel) -> Tensor:  # -> [H, W, 3] raw outpainter output
        return self.outpainter.outpaint(
            request.image,
            request.fill_mask,
            request.prompt,
            request.negative_prompt,
            request.seed,
            cancel,
            camera=request.camera,
            view=request.view,
            known_mask=request.known_mask,
        )

    def _finish_view(self, index, camera, cloud, seen, request, rgb, step, clock):
        """Complete depth, snap and fuse one outpainted view; returns its :class:`Frame` and the grown cloud."""
        cfg = self.config
        # what was known stays exactly what the cloud shows, except the repainted seam band
        rgb = torch.where(request.fill_mask[..., None], rgb, seen.rgb).clamp(0, 1)
        fill = ~request.known_mask

        step("complete", index, 0.5)
        with clock.stage("complete"):
            sparse = erode(seen.known_mask, cfg.sparse_erode_px)
            sparse_depth = torch.where(sparse, seen.depth, torch.zeros_like(seen.depth))
            depth = self.completer.complete(rgb, sparse_depth, sparse, camera)
            depth = torch.where(sparse, seen.depth, depth)

        step("snap", index, 0.8)
        with clock.stage("snap"):
            edges = snap_depth_edges(depth, cfg.snap_rel_threshold).edge_mask  # not lifted (see view 0)

        step("fuse", index, 0.9)
        with clock.stage("fuse"):
            add = new_point_mask(fill, depth, seen.depth, seen.known_mask, cfg.dedupe_rel_tol) & ~edges
            added = lift_pixels(rgb, depth, add, camera, index, cfg.point_footprint_px)
            cloud = cloud.cat(added)
        frame = Frame(index, camera, rgb, depth, fill, len(added), seen.depth, seen.known_mask, add)
        return frame, cloud


def outpaint_waves(cameras: list[Camera], lanes: int) -> list[list[int]]:
    """Views 1.. of the path split into the waves the grow loop outpaints together (:func:`outpaint_wave`)."""
    waves, index = [], 1
    while index < len(cameras):
        waves.append(outpaint_wave(cameras, index, max(1, lanes)))
        index += len(waves[-1])
    return waves


def outpaint_wave(cameras: list[Camera], start: int, lanes: int) -> list[int]:
    """The views from ``start`` on that can be outpainted together: consecutive, at most ``lanes``, each apart
    from every other outside the views before ``start`` (:func:`core.cameras.views_overlap`)."""
    grown = cameras[:start]
    wave = [start]
    for index in range(start + 1, min(len(cameras), start + lanes)):
        if any(views_overlap(cameras[index], cameras[other], covered=grown) for other in wave):
            break
        wave.append(index)
    return wave


def _same_render(a: RenderResult, b: RenderResult) -> bool:
    return torch.equal(a.known_mask, b.known_mask) and torch.equal(a.depth, b.depth) and torch.equal(a.rgb, b.rgb)


def _valid_depth(depth: Tensor) -> Tensor:  # [H, W] -> [H, W] bool
    """Finite, positive depth: anything else in a given map is unknown and gets filled."""
    return torch.isfinite(depth) & (depth > 0)
