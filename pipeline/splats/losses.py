"""Losses and metrics of the fit: masked L1 + D-SSIM + relative depth, and masked PSNR.

SSIM is the one of Wang et al. 2004 as kornia computes it (``kornia.metrics.ssim``: 11×11 Gaussian window,
σ = 1.5, reflect padding, the same constants; the tests hold our map and its gradient to kornia's within 1e-6
and 1e-5). We compute it ourselves because a fit step compares a changing render with a FIXED target, and two
things follow from that:

* the target's local mean and variance are computed once per target (:class:`SsimReference`), not every step, so
  each step blurs three maps (x, x², x·y) instead of five, and the backward pass only goes through those three;
* the separable Gaussian blur with reflect padding is one [H, H] and one [W, W] matrix, so the blur of all nine
  channels is two matrix products (BLAS) instead of ten depthwise convolutions, and so is its gradient.

Forward + backward, ``python scripts/bench_splats.py --section loss`` (one run, kornia and ours alternating; the
figures are in docs/benchmarks.md): about 2.5× faster than kornia.metrics.ssim at the fit's 256×192.
pytorch-msssim (twice as fast as kornia in an earlier run) returns only the image mean, and the fit needs the
per-pixel map: later frames supervise only the pixels they generated.
"""

from __future__ import annotations

import functools

import kornia.filters
import torch
from torch import Tensor

from renderers.gaussians import GaussianRender

SSIM_WINDOW = 11
"""SSIM Gaussian window size in pixels (Wang et al. 2004 and 3DGS)."""
SSIM_SIGMA = 1.5
"""SSIM Gaussian window standard deviation in pixels (Wang et al. 2004; kornia's fixed value)."""
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2
"""SSIM stabilising constants for images in [0, 1] (Wang et al. 2004: (K1·L)², (K2·L)² with K1 = 0.01, K2 = 0.03)."""
MIN_PSNR_MSE = 1e-10
"""MSE floor for PSNR (a perfect fit reports 100 dB instead of infinity)."""


@functools.lru_cache(maxsize=16)
def _blur_matrix(n: int) -> Tensor:  # -> [n, n] float64
    """The 1-D SSIM Gaussian blur of a length-``n`` signal with reflect padding, as a matrix: ``out = M @ signal``."""
    taps = kornia.filters.get_gaussian_kernel1d(SSIM_WINDOW, SSIM_SIGMA)[0].double()  # [11], sums to 1
    half = SSIM_WINDOW // 2
    rows = torch.arange(n)[:, None]
    cols = rows + torch.arange(-half, half + 1)[None]  # [n, 11] source index of each tap before reflection
    cols = torch.where(cols < 0, -cols, cols)
    cols = torch.where(cols > n - 1, 2 * (n - 1) - cols, cols)
    matrix = torch.zeros(n, n, dtype=torch.float64)
    matrix.index_put_((rows.expand_as(cols), cols), taps.expand(n, -1), accumulate=True)
    return matrix


class SsimReference:
    """One fixed image prepared for SSIM against many others: its blurred mean and variance are kept.

    Args:
        image: the reference (the fit's target) in [0, 1].  # [H, W, 3]

    Raises:
        ValueError: when the image is not [H, W, 3] or a side is not larger than half the window.
    """

    def __init__(self, image: Tensor):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"SSIM needs an [H, W, 3] image, got {tuple(image.shape)}")
        if min(image.shape[0], image.shape[1]) <= SSIM_WINDOW // 2:
            raise ValueError(f"SSIM needs images larger than {SSIM_WINDOW // 2} px, got {tuple(image.shape[:2])}")
        self.image = image.permute(2, 0, 1).detach()  # [3, H, W]
        height, width = image.shape[:2]
        self._rows = _blur_matrix(height).to(image)  # [H, H]
        self._cols_t = _blur_matrix(width).T.contiguous().to(image)  # [W, W]
        self.mean = self._blur(self.image)  # [3, H, W]
        self.variance = self._blur(self.image * self.image) - self.mean**2  # [3, H, W]

    def _blur(self, channels: Tensor) -> Tensor:  # [C, H, W] -> [C, H, W]
        return self._rows @ (channels @ self._cols_t)

    def map(self, image: Tensor) -> Tensor:  # [H, W, 3] -> [H, W]
        """SSIM of ``image`` against the reference per pixel (mean over the colour channels), in [-1, 1]."""
        if image.shape != (self.image.shape[1], self.image.shape[2], 3):
            raise ValueError(
                f"SSIM needs images of the reference's shape {tuple(self.image.shape[1:])} + (3,), "
                f"got {tuple(image.shape)}"
            )
        x = image.permute(2, 0, 1)  # [3, H, W]
        blurred = self._blur(torch.cat([x, x * x, x * self.image]))  # [9, H, W]
        mean, square, cross = blurred[:3], blurred[3:6], blurred[6:]
        variance = square - mean**2
        covariance = cross - mean * self.mean
        numerator = (2 * mean * self.mean + SSIM_C1) * (2 * covariance + SSIM_C2)
        denominator = (mean**2 + self.mean**2 + SSIM_C1) * (variance + self.variance + SSIM_C2)
        return (numerator / denominator).mean(dim=0)


def ssim_map(a: Tensor, b: Tensor) -> Tensor:  # [H, W, 3], [H, W, 3] -> [H, W]
    """Structural similarity per pixel (mean over the colour channels); gradients flow to ``a``.

    Args:
        a: an image in [0, 1].  # [H, W, 3]
        b: another image of the same shape (treated as a constant).  # [H, W, 3]

    Returns:
        SSIM in [-1, 1] per pixel; 1 where the two agree.  # [H, W]

    Raises:
        ValueError: when the shapes differ or a side is not larger than half the window.
    """
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"ssim_map needs two [H, W, 3] images, got {tuple(a.shape)} and {tuple(b.shape)}")
    return SsimReference(b.to(a)).map(a)


def has_ssim_term(ssim_weight: float, target_rgb: Tensor) -> bool:
    """Whether :func:`fit_loss` has an SSIM term for this target: a positive weight and an image larger than the
    window (a few-pixel crop has none)."""
    return ssim_weight > 0 and min(target_rgb.shape[0], target_rgb.shape[1]) > SSIM_WINDOW // 2


def fit_loss(
    render: GaussianRender,
    target_rgb: Tensor,  # [H, W, 3]
    target_depth: Tensor,  # [H, W], 0 = unknown
    mask: Tensor,  # [H, W] bool, the supervised pixels
    ssim_weight: float,
    depth_weight: float,
    ssim_reference: SsimReference | None = None,
) -> Tensor:  # [] scalar
    """(1 - λ)·L1 + λ·(1 - SSIM) over the masked pixels, plus ``depth_weight`` × the mean relative depth error.

    The depth term compares the alpha-weighted rendered depth with ``alpha · depth`` (so a half-covered pixel is
    not pulled towards the camera) and only where the target depth is known. SSIM is skipped on images too small
    for its window (a few-pixel crop). Pass ``ssim_reference`` (made once from ``target_rgb``) when the same target
    is compared many times: it saves blurring the target every call.
    """
    weights = mask.to(render.rgb.dtype)
    denom = weights.sum().clamp_min(1.0)
    target_rgb = target_rgb.to(render.rgb)
    l1 = ((render.rgb - target_rgb).abs().mean(dim=-1) * weights).sum() / denom
    loss = (1 - ssim_weight) * l1
    if has_ssim_term(ssim_weight, target_rgb):
        reference = ssim_reference if ssim_reference is not None else SsimReference(target_rgb)
        loss = loss + ssim_weight * ((1 - reference.map(render.rgb)) * weights).sum() / denom
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
