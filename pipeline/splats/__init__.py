"""Gaussian splats: the model and its initialisation from the fused cloud, densify/prune strategies, the fit loop,
and its losses and metrics.

Modules (each importable on its own):

* :mod:`pipeline.splats.model`: :class:`Splats`, :class:`SplatInitConfig`, :func:`init_from_cloud`
* :mod:`pipeline.splats.strategy`: :class:`SplatParams`, :class:`PruneStrategy`, :class:`NoStrategy`
* :mod:`pipeline.splats.views`: frame, supporting and held-out targets; pose correction
* :mod:`pipeline.splats.losses`: L1 + D-SSIM + depth loss, SSIM map, masked PSNR
* :mod:`pipeline.splats.fit`: :class:`SplatConfig`, :func:`fit_splats`, :class:`FitResult`, presets

"""

from __future__ import annotations

from pipeline.splats.fit import (
    SPLAT_PRESETS,
    FitResult,
    LearningRates,
    ProgressFn,
    SplatConfig,
    fit_splats,
    splat_preset,
    step_budget,
)
from pipeline.splats.losses import SSIM_WINDOW, SsimReference, fit_loss, masked_psnr, ssim_map
from pipeline.splats.model import INIT_OPACITY, SplatInitConfig, Splats, init_from_cloud
from pipeline.splats.strategy import NoStrategy, PruneStrategy, SplatParams, SplatStrategy, StrategyState
from pipeline.splats.views import SupportRenderer
from renderers.gaussians import SH_C0

__all__ = [
    "INIT_OPACITY",
    "SH_C0",
    "SPLAT_PRESETS",
    "SSIM_WINDOW",
    "FitResult",
    "LearningRates",
    "NoStrategy",
    "ProgressFn",
    "PruneStrategy",
    "SplatConfig",
    "SplatInitConfig",
    "SplatParams",
    "SplatStrategy",
    "Splats",
    "StrategyState",
    "SupportRenderer",
    "fit_loss",
    "fit_splats",
    "init_from_cloud",
    "masked_psnr",
    "splat_preset",
    "ssim_map",
    "SsimReference",
    "step_budget",
]
