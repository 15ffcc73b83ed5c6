"""Fitting splats (initialised from the fused cloud) against the generated frames.

``fit_splats`` reads as numbered steps: 1. targets and masks per frame (+ jittered supporting views, + held-out
views for the stopping rule), 2. parameters and optimiser, 3. the loop (render → L1 + D-SSIM + depth → step →
strategy hooks → every ``plateau_every`` steps a held-out check), 4. scores.

How long it runs: at most ``iterations`` steps and at most ``iterations_per_view`` steps per frame (a single view
needs few steps, a 360° ring more), and it stops earlier when the PSNR on held-out jittered views has stopped
improving (``stop_on_plateau``); the splats returned are the ones that scored best on the held-out views.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from core.cameras import Camera
from core.components import Cancelled
from core.types import Frame, PointCloud
from pipeline.splats.colors import solve_colors
from pipeline.splats.losses import SsimReference, fit_loss, has_ssim_term, masked_psnr
from pipeline.splats.model import SplatInitConfig, Splats, init_from_cloud, merge_to_resolution
from pipeline.splats.strategy import PruneStrategy, SplatParams, SplatStrategy, StrategyState
from pipeline.splats.views import (
    SupportRenderer,
    Target,
    frame_target,
    jittered_camera,
    refined_camera,
    rendered_target,
)
from renderers.gaussians import RasterCache, RasterSettings, get_gaussian_rasterizer


@dataclass(frozen=True)
class LearningRates:
    """Adam learning rates per parameter group (3DGS values unless noted); 0 freezes a group."""

    means: float = 0.0
    """Positions are frozen by default: they come from (completed) depth, which the frames cannot correct from a
    handful of views without floaters. Try ~1.6e-5 × scene extent for slow motion."""
    scales: float = 5e-3
    """log-σ per step."""
    quats: float = 1e-3
    """Quaternion components per step."""
    opacities: float = 5e-2
    """logit per step (3DGS uses 5e-2)."""
    sh0: float = 2.5e-3
    """DC colour coefficient per step."""
    shN: float = 2.5e-3 / 20
    """Higher-order SH learn 20× slower than the DC term (3DGS)."""
    pose: float = 1e-4
    """Per-frame pose correction (radians / scene units per step) when ``pose_refinement`` is on."""

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("means", "scales", "quats", "opacities", "sh0", "shN")}


@dataclass(frozen=True)
class SplatConfig:
    """Everything ``fit_splats`` does; see SPLAT_PRESETS for named budgets."""

    iterations: int = 300
    """Most optimisation steps of a fit; each renders one view (frames and supporting views in a shuffled cycle).
    The fit may stop earlier: see ``iterations_per_view`` and ``stop_on_plateau``. 0 = no fitting."""
    iterations_per_view: int | None = 30
    """At most this many steps per frame (a budget of ``iterations_per_view × frames``, capped by
    ``iterations``): the fit's work follows the number of views, so a single view costs a few seconds. None = no
    per-view cap."""
    stop_on_plateau: bool = True
    """Stop when the PSNR on the held-out views has not improved by ``plateau_min_gain_db`` for
    ``plateau_patience`` checks, and return the splats of the best check."""
    holdout_views: int = 2
    """Held-out views for the stopping rule: jittered copies (as supporting views) of evenly spread frames, whose
    targets come from the support renderer (by default the point cloud through the torch point renderer). They are
    never trained on."""
    plateau_every: int = 10
    """Steps between held-out checks (each renders the held-out views once, without gradients)."""
    plateau_min_gain_db: float = 0.05
    """A check improves on the best so far when it beats it by at least this many dB (mean over held-out views)."""
    plateau_patience: int = 2
    """Checks without improvement before the fit stops."""
    merge_to_fit_resolution: bool = True
    """Before fitting a PointCloud, keep at most one point per pixel of its source view at the fitting resolution
    (radius grown to that pixel; :func:`pipeline.splats.model.merge_to_resolution`): the fit cannot resolve
    denser splats, and they multiply the splats composited per pixel. The returned splats are the merged set."""
    init: SplatInitConfig = SplatInitConfig()
    """How splats are made from the cloud."""
    color_solve_iterations: int = 5
    """CGLS iterations of the colour solve that makes the initial splats reproduce the frames (see
    :mod:`pipeline.splats.colors`); each costs one forward and one backward render per training view. Only when
    fitting from a PointCloud (also with ``iterations`` = 0: the initial splats). 0 = the points' own colours."""
    rasterizer: Literal["auto", "torch", "numba", "gsplat"] = "auto"
    """Backend by name (:func:`renderers.gaussians.get_gaussian_rasterizer`): "auto" = gsplat on CUDA when it
    compiles, else the fastest CPU backend."""
    raster: RasterSettings = RasterSettings()
    """Rasteriser settings (low-pass filter, per-pixel list length)."""
    lr: LearningRates = LearningRates()
    """Learning rates."""
    ssim_weight: float = 0.2
    """λ in (1 - λ)·L1 + λ·D-SSIM (3DGS uses 0.2)."""
    depth_weight: float = 0.05
    """Weight of the relative depth term |Σ w z - alpha · d| / d against the frames' depths (keeps splats on the
    surfaces the depth completer produced)."""
    mask_mode: Literal["generated", "all"] = "generated"
    """Which pixels of a frame supervise: its own generated region (fill_mask, dilated) or all pixels."""
    mask_dilate_px: int = 8
    """Dilation of fill_mask for "generated": the overlap band each frame shares with its neighbours."""
    fit_max_side: int | None = None
    """Fit at a reduced resolution: frames whose longer side exceeds this are downscaled (area for colour,
    nearest for depth and masks). None = native. A speed lever for CPU (cost ~ pixels)."""
    pose_refinement: bool = False
    """Learn a small rigid correction per frame (frame 0 stays fixed as the world anchor)."""
    support_views_per_frame: int = 1
    """Supporting views: jittered copies of each frame's camera whose targets come from ``support_renderer`` (by
    default the point cloud through the torch point renderer). The colour solve and the fit reproduce them beside
    the frames. Nearly opaque splats overlap their neighbours on a surface; fitted to the frames alone, their
    colours suit one depth order, which a small turn reorders (room example, one view: held-out PSNR 26.1 dB with
    none, 27.7 with one, point cloud 28.6). Each costs one point render, one more view in the colour solve and a
    share of the steps. 0 = frames only."""
    support_jitter_deg: float = 3.0
    """Maximum yaw/pitch jitter of a supporting or held-out view."""
    support_jitter_fraction: float = 0.02
    """Maximum translation jitter of a supporting or held-out view, as a fraction of its frame's median depth."""
    support_weight: float = 0.2
    """Loss weight of supporting views relative to frames (colour solve and fit). The point cloud's render is
    blurrier than the frames: at 0.5 the room example (one view) gains 0.7 dB more held-out PSNR than at 0.2, but
    the landscape (stage path) loses 1.2 dB against no supporting views (at 0.2: 0.3 dB)."""
    reuse_binning_for: int = 4
    """torch backend: each view's culling and (Gaussian, pixel) pairs are rebuilt every this many renders of that
    view and reused in between (alphas are still recomputed exactly; only splats that grew past their old footprint
    are clipped until the rebuild). 1 = rebuild every step. Measured ~30 % fewer CPU seconds per step at 4."""
    strategy: SplatStrategy = PruneStrategy()
    """Densify/prune hooks (PruneStrategy, NoStrategy, or your own)."""
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Colour behind all splats while fitting."""
    seed: int = 0
    """Seed for view order and supporting/held-out jitter (same seed → same result on the same machine)."""


SPLAT_PRESETS: dict[str, SplatConfig] = {
    "draft": SplatConfig(iterations=100, iterations_per_view=15),
    "default": SplatConfig(iterations=300, iterations_per_view=30),
    "high": SplatConfig(iterations=1000, iterations_per_view=None, stop_on_plateau=False),
}


def splat_preset(name: str, **overrides) -> SplatConfig:
    """A named preset ("draft", "default", "high") with fields replaced.

    Raises:
        ValueError: for an unknown preset name (the message lists the valid ones).
    """
    if name not in SPLAT_PRESETS:
        raise ValueError(f"unknown splat preset {name!r}: expected one of {sorted(SPLAT_PRESETS)}")
    return replace(SPLAT_PRESETS[name], **overrides)


@dataclass
class FitResult:
    """What ``fit_splats`` returns."""

    splats: Splats
    losses: list[float]  # one per step taken
    psnr: list[float]  # per frame, over its supervised pixels, at the fitting resolution, after the fit
    seconds: float
    iterations: int  # steps taken (≤ the budget when the plateau rule stopped the fit)
    backend: str  # rasteriser name, e.g. "torch", "numba" or "gsplat"
    world_to_cam: list[Tensor]  # per frame [4, 4], after pose refinement (the input poses when it is off)
    holdout_psnr: list[float]  # mean held-out PSNR at each check (first = the initialisation); empty when none
    best_step: int  # the step whose splats were returned


ProgressFn = Callable[[int, int, float], None]
"""progress(step, total_steps, loss); ``total_steps`` is the budget and drops to ``step`` when the fit stops early,
so step / total_steps only grows and ends at 1."""


def step_budget(config: SplatConfig, num_frames: int) -> int:
    """Most steps a fit of ``num_frames`` frames takes under ``config``."""
    if config.iterations_per_view is None:
        return config.iterations
    return min(config.iterations, config.iterations_per_view * num_frames)


def fit_splats(
    frames: list[Frame],
    cloud: PointCloud | Splats,
    config: SplatConfig = SplatConfig(),
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    support_renderer: SupportRenderer | None = None,
) -> FitResult:
    """Fit splats (initialised from ``cloud``) to the generated frames.

    Args:
        frames: the generated views (colour, depth, generated-pixel mask, camera).
        cloud: the fused cloud (splats are made by :func:`init_from_cloud`) or splats to continue from.
        config: budget, stopping rule, losses, backend.
        progress: called after every step (see :data:`ProgressFn`).
        cancel: checked every step.
        support_renderer: renders the targets of supporting and held-out views; None renders ``cloud`` with the
            torch point renderer when it is a PointCloud (no held-out check when it is Splats).

    Returns:
        The fitted splats with per-step losses, per-frame PSNR and the held-out curve.

    Raises:
        ValueError: on empty inputs, mismatched frame shapes or a diverging loss.
        core.components.Cancelled: when ``cancel`` is set.
    """
    # 1. Check inputs, build targets.
    if not frames:
        raise ValueError("fit_splats needs at least one frame")
    if config.iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {config.iterations}")
    if config.iterations_per_view is not None and config.iterations_per_view < 0:
        raise ValueError(f"iterations_per_view must be >= 0 or None, got {config.iterations_per_view}")
    if config.color_solve_iterations < 0:
        raise ValueError(f"color_solve_iterations must be >= 0, got {config.color_solve_iterations}")
    if config.plateau_every < 1 or config.plateau_patience < 1 or config.holdout_views < 0:
        raise ValueError(
            "plateau_every and plateau_patience must be >= 1 and holdout_views >= 0, got "
            f"{config.plateau_every}, {config.plateau_patience}, {config.holdout_views}"
        )
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    targets = [
        frame_target(f, i, config.mask_mode, config.mask_dilate_px, config.fit_max_side) for i, f in enumerate(frames)
    ]
    source = cloud  # held-out targets are drawn from the full cloud
    if isinstance(cloud, PointCloud) and config.merge_to_fit_resolution:
        cloud = merge_to_resolution(cloud, {f.index: _fit_camera(f, config.fit_max_side) for f in frames})
    splats = cloud if isinstance(cloud, Splats) else init_from_cloud(cloud, config.init)
    if len(splats) == 0:
        raise ValueError("cannot fit splats to an empty point cloud")
    budget = step_budget(config, len(frames))
    render_target = support_renderer
    if render_target is None and isinstance(source, PointCloud):
        render_target = _cloud_renderer(source)
    if config.support_views_per_frame > 0 and render_target is not None:
        for f in frames:
            for _ in range(config.support_views_per_frame):
                targets.append(_jittered_target(f, render_target, config.support_weight, config, generator))
    holdout = []
    if config.stop_on_plateau and budget > 0 and render_target is not None:
        holdout = _holdout_targets(frames, render_target, config, torch.Generator().manual_seed(config.seed + 1))
    rasterizer = get_gaussian_rasterizer(config.rasterizer, config.raster, splats.means.device)
    device, dtype = splats.means.device, splats.means.dtype
    background = torch.tensor(config.background, dtype=dtype, device=device)

    # 2. Colours that reproduce the frames, parameters, optimiser, pose corrections.
    if isinstance(cloud, PointCloud):
        splats = solve_colors(splats, targets, rasterizer, config.color_solve_iterations, background)
    params = SplatParams(splats, config.lr.as_dict())
    pose_delta = torch.zeros(len(frames), 6, dtype=dtype, device=device, requires_grad=config.pose_refinement)
    pose_opt = torch.optim.Adam([pose_delta], lr=config.lr.pose) if config.pose_refinement else None

    # 3. The loop.
    losses: list[float] = []
    strategy_state = StrategyState()
    caches: dict[int, tuple[RasterCache | None, int]] = {}  # target -> (binning, renders since it was built)
    ssim_refs: dict[int, SsimReference | None] = {}  # target -> its SSIM statistics, made on first use
    order: list[int] = []
    curve: list[float] = []
    best = (-math.inf, 0, params.splats().detach(), pose_delta.detach().clone())  # psnr, step, splats, poses
    stale = 0
    if holdout:
        curve.append(_holdout_psnr(params.splats(), holdout, rasterizer, background))
        best = (curve[-1], 0, best[2], best[3])
    steps = 0
    for step in range(budget):
        if cancel is not None and cancel.is_set():
            raise Cancelled("splat fitting cancelled")
        if not order:
            order = torch.randperm(len(targets), generator=generator).tolist()
        target_index = order.pop()
        target = targets[target_index]
        camera = refined_camera(target, pose_delta) if config.pose_refinement else target.camera
        s = params.splats()
        cached = caches.get(target_index)
        reuse = cached[0] if cached is not None and cached[1] < config.reuse_binning_for else None
        render = rasterizer.render(
            s.means,
            s.quats,
            torch.exp(s.scales),
            torch.sigmoid(s.opacities),
            s.colors,
            camera,
            s.sh_degree,
            background,
            reuse=reuse,
        )
        caches[target_index] = (render.cache, 1 if reuse is None else cached[1] + 1)
        if render.means2d.requires_grad:
            render.means2d.retain_grad()
        if target_index not in ssim_refs:
            ssim_refs[target_index] = _ssim_reference(target, config.ssim_weight, dtype)
        loss = target.weight * fit_loss(
            render,
            target.rgb,
            target.depth,
            target.mask,
            config.ssim_weight,
            config.depth_weight,
            ssim_refs[target_index],
        )
        params.optimizer.zero_grad(set_to_none=True)
        if pose_opt is not None:
            pose_opt.zero_grad(set_to_none=True)
        loss.backward()
        if pose_opt is not None and pose_delta.grad is not None:
            with torch.no_grad():
                pose_delta.grad[0] = 0  # frame 0 anchors the world
        version = params.version
        config.strategy.step_post_backward(params, strategy_state, step, render, budget)
        if params.version != version:
            caches.clear()  # the set of splats changed: every view bins again
        params.optimizer.step()
        if pose_opt is not None:
            pose_opt.step()
        losses.append(float(loss.detach()))
        steps = step + 1
        if not math.isfinite(losses[-1]):
            raise ValueError(f"splat fitting diverged: loss is {losses[-1]} at step {steps}")
        stop = False
        if holdout and (steps % config.plateau_every == 0 or steps == budget):
            curve.append(_holdout_psnr(params.splats(), holdout, rasterizer, background))
            if curve[-1] >= best[0] + config.plateau_min_gain_db:
                best, stale = (curve[-1], steps, params.splats().detach(), pose_delta.detach().clone()), 0
            else:
                stale += 1
                stop = stale >= config.plateau_patience
        if progress is not None:
            progress(steps, steps if stop else budget, losses[-1])
        if stop:
            break

    # 4. Keep the best held-out splats (or the last ones without a held-out check); score each frame.
    if holdout:
        final, best_step, final_delta = best[2], best[1], best[3]
    else:
        final, best_step, final_delta = params.splats().detach(), steps, pose_delta.detach()
    psnr, poses = [], []
    with torch.no_grad():
        for frame, target in zip(frames, targets[: len(frames)]):
            camera = refined_camera(target, final_delta) if config.pose_refinement else target.camera
            render = final.render(camera, rasterizer.name, config.raster, background)
            psnr.append(masked_psnr(render.rgb, target.rgb, target.mask))
            poses.append(camera.world_to_cam.detach().to(frame.camera.world_to_cam.dtype))
    seconds = time.perf_counter() - start
    return FitResult(final, losses, psnr, seconds, steps, rasterizer.name, poses, curve, best_step)


def _ssim_reference(target: Target, ssim_weight: float, dtype: torch.dtype) -> SsimReference | None:
    """The target prepared for the SSIM term, or None when the term is off or the crop is smaller than its window."""
    return SsimReference(target.rgb.to(dtype)) if has_ssim_term(ssim_weight, target.rgb) else None


def _fit_camera(frame: Frame, fit_max_side: int | None) -> Camera:
    """The frame's camera at the fitting resolution (as :func:`frame_target` scales it, before cropping)."""
    camera = frame.camera
    if fit_max_side is not None and max(camera.height, camera.width) > fit_max_side:
        factor = fit_max_side / max(camera.height, camera.width)
        camera = camera.scaled(max(1, round(camera.height * factor)), max(1, round(camera.width * factor)))
    return camera


def _cloud_renderer(cloud: PointCloud) -> SupportRenderer:
    """The point cloud drawn by the torch z-buffer (the same render the grow loop reprojects with)."""
    from renderers.points import TorchPointRenderer  # noqa: PLC0415 - only for held-out targets

    renderer = TorchPointRenderer()
    return lambda camera: renderer.render(cloud.points, cloud.colors, camera, cloud.radii)


def _holdout_targets(
    frames: list[Frame], render_fn: SupportRenderer, config: SplatConfig, generator: torch.Generator
) -> list[Target]:
    """Jittered views of ``holdout_views`` frames spread evenly along the path, targets rendered by ``render_fn``."""
    count = config.holdout_views
    picks = [round(i * (len(frames) - 1) / max(count - 1, 1)) for i in range(count)]  # one frame: all jitter it
    return [_jittered_target(frames[index], render_fn, 1.0, config, generator) for index in picks]


def _jittered_target(
    frame: Frame, render_fn: SupportRenderer, weight: float, config: SplatConfig, generator: torch.Generator
) -> Target:
    """``frame``'s camera turned and moved by up to the supporting-view jitter, the target drawn by ``render_fn``."""
    camera = jittered_camera(
        frame.camera, frame.depth, config.support_jitter_deg, config.support_jitter_fraction, generator
    )
    return rendered_target(camera, render_fn, weight, config.fit_max_side)


@torch.no_grad()
def _holdout_psnr(splats: Splats, holdout: list[Target], rasterizer, background: Tensor) -> float:
    """Mean PSNR of ``splats`` over the held-out views' known pixels."""
    scores = []
    for target in holdout:
        render = rasterizer.render(
            splats.means,
            splats.quats,
            torch.exp(splats.scales),
            torch.sigmoid(splats.opacities),
            splats.colors,
            target.camera,
            splats.sh_degree,
            background,
        )
        scores.append(masked_psnr(render.rgb, target.rgb, target.mask))
    return sum(scores) / len(scores)
