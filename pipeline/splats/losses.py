"""Losses and metrics of the fit: masked L1 + D-SSIM + relative depth, and masked PSNR.

SSIM is kornia's (``kornia.metrics.ssim``: 11×11 Gaussian window, σ = 1.5, the constants of Wang et al. 2004,
reflect padding). It was chosen by measuring forward + backward on one CPU thread at the fit's image sizes
(``OMP_NUM_THREADS=1``, shared 2-core machine, 2026-12):

======================  ==========  ==========  ==========
implementation           128×96      256×192     512×384
======================  ==========  ==========  ==========
kornia.metrics.ssim      8.4 ms      25.8 ms     110 ms
our former conv2d SSIM   8.1 ms      29.6 ms     112 ms
pytorch-msssim.ssim      5.1 ms      12.2 ms      58 ms
======================  ==========  ==========  ==========

Ours was not measurably faster, so it is gone. pytorch-msssim is twice as fast but returns only the image mean
(no per-pixel map), and the fit needs the map: later frames supervise only the pixels they generated.
"""

from __future__ import annotations

import kornia.metrics
import torch
from torch import Tensor

from renderers.gaussians import GaussianRender

SSIM_WINDOW = 11
"""SSIM Gaussian window size in pixels (Wang et al. 2004 and 3DGS; kornia fixes σ = 1.5)."""
MIN_PSNR_MSE = 1e-10
"""MSE floor for PSNR (a perfect fit reports 100 dB instead of infinity)."""


def ssim_map(a: Tensor, b: Tensor) -> Tensor:  # [H, W, 3], [H, W, 3] -> [H, W]
    """Structural similarity per pixel (mean over the colour channels).

    Args:
        a: an image in [0, 1].  # [H, W, 3]
        b: another image of the same shape.  # [H, W, 3]

    Returns:
        SSIM in [-1, 1] per pixel; 1 where the two agree.  # [H, W]

    Raises:
        ValueError: when the shapes differ or a side is not larger than half the window.
    """
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"ssim_map needs two [H, W, 3] images, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[0], a.shape[1]) <= SSIM_WINDOW // 2:
        raise ValueError(f"ssim_map needs images larger than {SSIM_WINDOW // 2} px, got {tuple(a.shape[:2])}")
    x, y = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]
    return kornia.metrics.ssim(x, y, SSIM_WINDOW)[0].mean(dim=0)


def fit_loss(
    render: GaussianRender,
    target_rgb: Tensor,  # [H, W, 3]
    target_depth: Tensor,  # [H, W], 0 = unknown
    mask: Tensor,  # [H, W] bool, the supervised pixels
    ssim_weight: float,
    depth_weight: float,
) -> Tensor:  # [] scalar
    """(1 - λ)·L1 + λ·(1 - SSIM) over the masked pixels, plus ``depth_weight`` × the mean relative depth error.

    The depth term compares the alpha-weighted rendered depth with ``alpha · depth`` (so a half-covered pixel is
    not pulled towards the camera) and only where the target depth is known. SSIM is skipped on images too small
    for its window (a few-pixel crop).
    """
    weights = mask.to(render.rgb.dtype)
    denom = weights.sum().clamp_min(1.0)
    target_rgb = target_rgb.to(render.rgb)
    l1 = ((render.rgb - target_rgb).abs().mean(dim=-1) * weights).sum() / denom
    loss = (1 - ssim_weight) * l1
    if ssim_weight > 0 and min(target_rgb.shape[0], target_rgb.shape[1]) > SSIM_WINDOW // 2:
        loss = loss + ssim_weight * ((1 - ssim_map(render.rgb, target_rgb)) * weights).sum() / denom
    if depth_weight > 0:
        depth = target_depth.to(render.rgb)
        known = weights * (depth > 0).to(weights)
        rel = (render.depth_accum - render.alpha * depth).abs() / depth.clamp_min(1e-6)
        loss = loss + depth_weight * (rel * known).sum() / known.sum().clamp_min(1.0)
    return loss


def masked_psnr(
    prediction: Tensor,  # [H, W, 3]
    target: Tensor,  # [H, W, 3]
    mask: Tensor | None = None,  # [H, W] bool
) -> float:
    """PSNR in dB over the masked pixels (all pixels when mask is None), images in [0, 1].

    Args:
        prediction: the rendered image (clamped to [0, 1] before scoring).
        target: the reference image.
        mask: pixels to score; None scores all.

    Returns:
        10·log10(1 / MSE), at most 100 dB (MSE floored at MIN_PSNR_MSE).
    """
    err = ((prediction.clamp(0, 1) - target.to(prediction)) ** 2).mean(dim=-1)
    mse = err.mean() if mask is None else (err * mask).sum() / mask.sum().clamp_min(1)
    return float(10 * torch.log10(1 / mse.clamp_min(MIN_PSNR_MSE)))
