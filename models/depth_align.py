"""Training-free depth completion: robust scale/shift alignment plus a harmonic residual.

A monocular depth estimate of a new view has the right shapes but the wrong global scale (and, for relative
models, an unknown shift), and it drifts slowly across the image. The known (reprojected) depth of the same view
is correct but covers only part of it. Completion here is two steps:

1. :func:`fit_scale_shift` fits one robust affine map from the estimate to the known depth, in the space where the
   estimator's error is affine (depth for metric/relative depth, inverse depth for disparity-like outputs).
2. The remaining mismatch on the known pixels, ``log(known) - log(aligned)``, is extended into the unknown region
   by :func:`harmonic_fill` (Laplace's equation with the known pixels as boundary) and applied, so the completed
   depth equals the known depth on known pixels and meets it without a step at the seam.

Conventions are the project's: z-depth ``[H, W]`` in scene units, 0 = unknown, bool masks True = known.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg
import torch
from torch import Tensor

from core.cameras import Camera
from core.checks import check_completion_inputs
from core.components import DepthEstimate, DepthEstimator
from core.masks import dilate

FitSpace = Literal["depth", "inverse"]

TRIM_KEEP_FRACTION = 0.8
"""The robust fit starts from least squares on the 80 % of known pixels with the smallest residuals of a plain fit,
so up to ~20 % gross outliers (bad reprojections, sky, mismatched edges) cannot drag the starting point."""

IRLS_ITERATIONS = 10
"""Tukey reweighting steps after the trimmed start; the fit has two unknowns and settles in a handful."""

TUKEY_C = 4.685
"""Tukey biweight tuning constant, in units of the robust residual spread (95 % efficiency under Gaussian noise)."""

MAD_TO_SIGMA = 1.4826
"""Median absolute deviation to standard deviation for Gaussian noise."""

MIN_AFFINE_PIXELS = 64
"""Below this many known pixels (or when the estimate is constant on them) only a scale is fitted: a shift
estimated from a small cluster of pixels extrapolates wildly over the rest of the image."""

MAX_FIT_PIXELS = 200_000
"""The fit uses at most this many known pixels (an even stride through them); more adds time, not accuracy."""

RANGE_MARGIN = 50.0
"""Aligned depth is clamped to [nearest known / 50, farthest known * 50]. Values beyond that are fit artefacts
(a relative-inverse estimate's sky has ~0 disparity and would map to infinite or negative depth), not geometry;
the clamp keeps the output positive and finite and leaves every plausible value alone."""

OUTLIER_WINDOW_PX = 2
"""Known residuals are compared with the median of their (2*2+1)^2 = 5x5 known neighbourhood."""

OUTLIER_BAND_PX = 3
"""Only known pixels within 3 px of the unknown region are checked for outliers: the harmonic extension depends
only on the known pixels that border the unknown region, and 3 px covers the next rings that become the border
when an outlier is removed."""

OUTLIER_Z = 4.0
"""A border residual more than 4 robust standard deviations from its local median is an outlier."""

OUTLIER_MIN_LOG = 0.02
"""...and only when it also differs from its local median by more than 2 % in depth (log 1.02): pixel-level noise
below that is harmless and not worth dropping."""


class ScaleShift(NamedTuple):
    """An affine map ``target ≈ scale * estimate + shift`` in the space it was fitted in."""

    scale: float
    shift: float


def _check_map(tensor: Tensor, name: str) -> None:
    if not isinstance(tensor, Tensor) or tensor.ndim != 2 or not tensor.is_floating_point():
        shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
        dtype = tensor.dtype if isinstance(tensor, Tensor) else None
        raise ValueError(f"{name} must be a float tensor [H, W], got shape {shape} dtype {dtype}")


def _check_mask(mask: Tensor, shape: tuple[int, ...], name: str = "known_mask") -> None:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != tuple(shape):
        got = (tuple(mask.shape), mask.dtype) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{name} must be a bool tensor of shape {tuple(shape)}, got {got}")


def _check_space(space: str) -> None:
    if space not in ("depth", "inverse"):
        raise ValueError(f"space must be 'depth' or 'inverse', got {space!r}")


def _weighted_affine(x: Tensor, y: Tensor, weights: Tensor) -> ScaleShift | None:  # [N], [N], [N]
    """Weighted least squares of ``y ≈ s x + b`` with relative residuals (weights / y^2); None if degenerate."""
    omega = weights / (y * y)
    sw, sx, sy = omega.sum(), (omega * x).sum(), (omega * y).sum()
    sxx, sxy = (omega * x * x).sum(), (omega * x * y).sum()
    det = sw * sxx - sx * sx
    # the spread of x under the weights must be non-negligible relative to its magnitude
    if float(sw) <= 0 or float(det) <= 1e-10 * float(sw * sxx):
        return None
    scale = (sw * sxy - sx * sy) / det
    shift = (sy - scale * sx) / sw
    return ScaleShift(float(scale), float(shift))


def _scale_only(x: Tensor, y: Tensor) -> ScaleShift:  # [N], [N]
    positive = (x > 0) & (y > 0)
    if not bool(positive.any()):
        raise ValueError("cannot align: the estimate is not positive on any known pixel")
    return ScaleShift(float((y[positive] / x[positive]).median()), 0.0)


def fit_scale_shift(
    estimate: Tensor,  # [H, W]
    known_depth: Tensor,  # [H, W] z-depth, 0 = unknown
    known_mask: Tensor,  # [H, W] bool
    space: FitSpace = "depth",
) -> ScaleShift:
    """Robustly fit ``target ≈ scale * estimate + shift`` on the known pixels.

    Which space: a monocular network's error is affine in the quantity it was trained to output, so the fit is
    done there. Relative Depth Anything (``DepthEstimate.kind == "relative_inverse"``) is trained scale-and-shift
    invariant on disparity, so its output is affine in *inverse* depth: use ``space="inverse"`` (the target is
    ``1 / known_depth``; fitting it in depth space bends every plane). Metric models (ZoeDepth, Depth Anything
    metric) and relative-depth models are near-affine in *depth* (mostly a global scale error): use
    ``space="depth"``. :func:`align_depth` picks the space from the estimate's kind.

    The fit minimises relative residuals ``(target - scale * estimate - shift) / target`` so near and far pixels
    count alike, starting from a trimmed least-squares fit (best :data:`TRIM_KEEP_FRACTION` of pixels) and then
    reweighting with Tukey's biweight (:data:`IRLS_ITERATIONS` steps), which gives gross outliers zero weight.
    With fewer than :data:`MIN_AFFINE_PIXELS` pixels, a constant estimate, or a non-positive fitted scale, only a
    scale is fitted (median ratio, shift 0).

    Args:
        estimate: the estimator's output (depth-like for ``"depth"``, disparity-like for ``"inverse"``).
        known_depth: trusted z-depth; pixels that are not > 0 and finite are ignored.
        known_mask: True where ``known_depth`` is trusted.
        space: ``"depth"`` (target = depth) or ``"inverse"`` (target = 1 / depth).

    Returns:
        ``ScaleShift(scale, shift)`` in the fitted space.

    Raises:
        ValueError: bad shapes, unknown space, no usable known pixel, or an estimate that is not positive
            anywhere it would need to be.

    Example:
        >>> truth = torch.linspace(1, 3, 64).repeat(64, 1)
        >>> fit = fit_scale_shift((truth - 0.5) / 2, truth, torch.ones(64, 64, dtype=torch.bool))
        >>> round(fit.scale, 4), round(fit.shift, 4)
        (2.0, 0.5)
    """
    _check_map(estimate, "estimate")
    _check_map(known_depth, "known_depth")
    if known_depth.shape != estimate.shape:
        raise ValueError(f"known_depth {tuple(known_depth.shape)} and estimate {tuple(estimate.shape)} differ")
    _check_mask(known_mask, tuple(estimate.shape))
    _check_space(space)

    usable = known_mask & torch.isfinite(known_depth) & (known_depth > 0) & torch.isfinite(estimate)
    x = estimate[usable].to(torch.float64)
    y = known_depth[usable].to(device=x.device, dtype=torch.float64)
    if x.numel() == 0:
        raise ValueError("cannot fit scale/shift: no known pixel with finite positive depth and a finite estimate")
    if x.numel() > MAX_FIT_PIXELS:
        stride = math.ceil(x.numel() / MAX_FIT_PIXELS)
        x, y = x[::stride], y[::stride]
    if space == "inverse":
        y = 1.0 / y
    if x.numel() < MIN_AFFINE_PIXELS:
        return _scale_only(x, y)

    fit = _weighted_affine(x, y, torch.ones_like(x))
    if fit is None:
        return _scale_only(x, y)
    # 1. trimmed start: refit on the best fraction of a plain fit
    error = ((y - fit.scale * x - fit.shift) / y).abs()
    keep = error <= torch.quantile(error, TRIM_KEEP_FRACTION)
    fit = _weighted_affine(x, y, keep.to(x.dtype)) or fit
    # 2. Tukey IRLS
    for _ in range(IRLS_ITERATIONS):
        error = (y - fit.scale * x - fit.shift) / y
        sigma = MAD_TO_SIGMA * float(error.abs().median())
        if sigma <= 1e-12:  # exact fit
            break
        cutoff = TUKEY_C * sigma
        weights = ((1 - (error / cutoff) ** 2).clamp(min=0)) ** 2
        refit = _weighted_affine(x, y, weights)
        if refit is None:
            break
        done = abs(refit.scale - fit.scale) <= 1e-9 * abs(fit.scale) and abs(refit.shift - fit.shift) <= 1e-9 * (
            abs(fit.shift) + abs(fit.scale) * float(x.abs().median())
        )
        fit = refit
        if done:
            break
    if fit.scale <= 0:  # anti-correlated: the estimate is useless as an affine map; keep its shapes, fix its scale
        return _scale_only(x, y)
    return fit


def apply_scale_shift(
    estimate: Tensor,  # [H, W]
    fit: ScaleShift,
    space: FitSpace,
    depth_range: tuple[float, float] | None = None,
) -> Tensor:  # [H, W] z-depth
    """Map an estimate to depth with a fitted :class:`ScaleShift` (non-finite stays non-finite).

    Args:
        estimate: the estimator's output.
        fit: from :func:`fit_scale_shift` in the same ``space``.
        space: ``"depth"`` or ``"inverse"``.
        depth_range: optional (near, far) clamp of the resulting depth; also keeps it positive.

    Returns:
        z-depth.
    """
    _check_map(estimate, "estimate")
    _check_space(space)
    mapped = fit.scale * estimate + fit.shift
    if space == "depth":
        return mapped if depth_range is None else mapped.clamp(depth_range[0], depth_range[1])
    if depth_range is None:
        return 1.0 / mapped
    return 1.0 / mapped.clamp(1.0 / depth_range[1], 1.0 / depth_range[0])


def _laplace_system(
    known: np.ndarray,  # [H, W] bool
    values: np.ndarray,  # [H, W] float64
) -> tuple[sparse.csc_matrix, np.ndarray, np.ndarray]:  # [n, n], [n], [n] flat indices of the unknowns
    """Five-point Laplacian on the unknown pixels; known neighbours move to the right-hand side.

    Neighbours outside the image are simply absent (a zero-flux, Neumann border), so an unknown region reaching
    the frame edge is not pulled toward anything there.
    """
    height, width = known.shape
    unknown = ~known
    flat = np.flatnonzero(unknown)
    count = flat.size
    index = np.full(height * width, -1, dtype=np.int64)
    index[flat] = np.arange(count)
    index = index.reshape(height, width)
    diag = np.zeros(count)
    rhs = np.zeros(count)
    rows, cols = [], []
    # each undirected grid edge once: (this pixel, its right neighbour) and (this pixel, its lower neighbour)
    for a, b in (
        ((slice(None), slice(0, width - 1)), (slice(None), slice(1, width))),
        ((slice(0, height - 1), slice(None)), (slice(1, height), slice(None))),
    ):
        ia, ib = index[a].ravel(), index[b].ravel()
        va, vb = values[a].ravel(), values[b].ravel()
        ua, ub = ia >= 0, ib >= 0
        both = ua & ub
        rows += [ia[both], ib[both]]
        cols += [ib[both], ia[both]]
        diag += np.bincount(ia[ua], minlength=count) + np.bincount(ib[ub], minlength=count)
        rhs += np.bincount(ia[ua & ~ub], weights=vb[ua & ~ub], minlength=count)
        rhs += np.bincount(ib[ub & ~ua], weights=va[ub & ~ua], minlength=count)
    off_rows, off_cols = np.concatenate(rows), np.concatenate(cols)
    matrix = sparse.csc_matrix(
        (
            np.concatenate([np.full(off_rows.size, -1.0), diag]),
            (np.concatenate([off_rows, np.arange(count)]), np.concatenate([off_cols, np.arange(count)])),
        ),
        shape=(count, count),
    )
    return matrix, rhs, flat


def harmonic_fill(
    values: Tensor,  # [H, W]
    known_mask: Tensor,  # [H, W] bool
    isolated_value: float = 0.0,
) -> Tensor:  # [H, W]
    """Fill the unknown pixels with the harmonic interpolant of the known ones.

    Solves the discrete Laplace equation (five-point stencil) on the unknown pixels with the known pixels as
    Dirichlet boundary: the smoothest field that takes the known values exactly, continuous across the seam, with
    no overshoot (every filled value lies between the known values around it). The image border is a zero-flux
    boundary. On an image grid every unknown region borders some known pixel unless nothing at all is known, so
    the system is regular; with no known pixel the result is ``isolated_value`` everywhere.

    Sparse direct solve (SuperLU in symmetric mode with a minimum-degree ordering, which suits the symmetric
    positive definite grid Laplacian) in float64 on the CPU: about 0.3 s for 100k unknown pixels.

    Args:
        values: field to extend; must be finite on ``known_mask`` (unknown entries are ignored).
        known_mask: True where ``values`` is the boundary condition.
        isolated_value: the result everywhere when no pixel is known.

    Returns:
        ``values`` on known pixels (bit-exact), the harmonic fill elsewhere; dtype and device of ``values``.

    Example:
        >>> v = torch.tensor([[0.0, 0.0, 0.0, 3.0]]); known = torch.tensor([[True, False, False, True]])
        >>> harmonic_fill(v, known).tolist()
        [[0.0, 1.0, 2.0, 3.0]]
    """
    _check_map(values, "values")
    _check_mask(known_mask, tuple(values.shape))
    if not math.isfinite(isolated_value):
        raise ValueError(f"isolated_value must be finite, got {isolated_value}")
    if not bool(torch.isfinite(values[known_mask]).all()):
        raise ValueError("values must be finite on every known pixel")
    unknown = ~known_mask
    if not bool(unknown.any()):
        return values.clone()
    if not bool(known_mask.any()):
        return torch.full_like(values, isolated_value)

    known_np = known_mask.detach().cpu().numpy()
    values_np = np.where(known_np, values.detach().cpu().to(torch.float64).numpy(), 0.0)
    matrix, rhs, flat = _laplace_system(known_np, values_np)
    # the matrix is symmetric positive definite: symmetric mode with diagonal pivots skips needless row swaps
    factor = sparse_linalg.splu(
        matrix, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}
    )
    solution = factor.solve(rhs)
    out = values.clone().reshape(-1)
    out[torch.from_numpy(flat).to(values.device)] = torch.from_numpy(solution).to(values)
    return out.reshape(values.shape)


def _local_median(
    field: Tensor,  # [H, W], NaN = not a sample
    rows: Tensor,  # [n] long
    cols: Tensor,  # [n] long
    radius: int,
) -> Tensor:  # [n]
    """NaN-ignoring median of the (2r+1)^2 window around each listed pixel."""
    height, width = field.shape
    padded = torch.full((height + 2 * radius, width + 2 * radius), float("nan"), dtype=field.dtype, device=field.device)
    padded[radius : radius + height, radius : radius + width] = field
    offsets = torch.arange(2 * radius + 1, device=field.device)
    window_rows = rows[:, None, None] + offsets[None, :, None]  # [n, k, 1]
    window_cols = cols[:, None, None] + offsets[None, None, :]  # [n, 1, k]
    return padded[window_rows, window_cols].reshape(rows.numel(), -1).nanmedian(dim=1).values


def _border_outliers(
    residual: Tensor,  # [H, W] log-depth residual, valid on anchors
    anchors: Tensor,  # [H, W] bool
) -> Tensor:  # [H, W] bool, True = drop from the boundary
    """Known pixels near the unknown region whose residual disagrees with their known neighbourhood."""
    check = anchors & dilate(~anchors, OUTLIER_BAND_PX)
    if not bool(check.any()):
        return torch.zeros_like(anchors)
    rows, cols = torch.nonzero(check, as_tuple=True)
    samples = torch.where(anchors, residual, torch.full_like(residual, float("nan")))
    deviation = (residual[rows, cols] - _local_median(samples, rows, cols, OUTLIER_WINDOW_PX)).abs()
    sigma = MAD_TO_SIGMA * float(deviation.median())
    cutoff = max(OUTLIER_Z * sigma, OUTLIER_MIN_LOG)
    outliers = torch.zeros_like(anchors)
    outliers[rows, cols] = deviation > cutoff
    return outliers


def _fill_invalid_log(depth: Tensor, valid: Tensor) -> Tensor:  # [H, W], [H, W] bool -> [H, W]
    """Replace invalid pixels by the harmonic fill of log-depth from the valid ones."""
    if bool(valid.all()):
        return depth
    if not bool(valid.any()):
        raise ValueError("the depth estimate has no finite positive value")
    log_depth = torch.where(valid, depth, torch.ones_like(depth)).log()
    return harmonic_fill(log_depth, valid).exp()


def _space_for(kind: str) -> FitSpace:
    if kind == "relative_inverse":
        return "inverse"
    if kind in ("metric", "relative"):
        return "depth"
    raise ValueError(f"unknown depth estimate kind {kind!r}: expected 'metric', 'relative' or 'relative_inverse'")


def align_depth(
    estimate: DepthEstimate,
    known_depth: Tensor,  # [H, W] z-depth, 0 = unknown
    known_mask: Tensor,  # [H, W] bool
) -> Tensor:  # [H, W] z-depth > 0 everywhere
    """Complete a partly known depth map from a monocular estimate of the same view.

    1. A robust global :func:`fit_scale_shift` in the estimate's space (``inverse`` for ``relative_inverse``,
       ``depth`` otherwise), then clamped to a plausible range (:data:`RANGE_MARGIN`).
    2. The residual ``log(known_depth) - log(aligned)`` on known pixels, minus local outliers among the pixels
       bordering the unknown region (they would otherwise imprint themselves on the fill).
    3. :func:`harmonic_fill` extends the residual into the unknown region; the completed depth is
       ``aligned * exp(residual)``, and exactly ``known_depth`` on every known pixel.

    The residual is multiplicative (additive in log-depth) because the estimate's remaining error is a slowly
    varying *relative* one (a region 5 % too far); a log residual is unit-free, and ``exp`` keeps the result
    positive however the residual extrapolates, where an additive depth residual could push a near surface past
    zero. Since the harmonic fill has no overshoot, the completed depth stays between the aligned estimate scaled
    by the smallest and largest residual seen on the border.

    Args:
        estimate: the estimator's output for this view and its kind.
        known_depth: trusted z-depth; pixels not > 0 and finite count as unknown.
        known_mask: True where ``known_depth`` is trusted.

    Returns:
        z-depth, strictly positive and finite, equal to ``known_depth`` on known pixels, in ``known_depth``'s dtype
        and device.

    Raises:
        ValueError: bad shapes or kind, or a relative estimate with no known pixel (it needs a metric anchor).
    """
    if not isinstance(estimate, DepthEstimate):
        raise ValueError(f"estimate must be a DepthEstimate, got {type(estimate).__name__}")
    space = _space_for(estimate.kind)
    _check_map(known_depth, "known_depth")
    _check_mask(known_mask, tuple(known_depth.shape))
    _check_map(estimate.values, "estimate.values")
    if estimate.values.shape != known_depth.shape:
        raise ValueError(
            f"estimate.values {tuple(estimate.values.shape)} and known_depth {tuple(known_depth.shape)} differ"
        )
    values = estimate.values.to(known_depth)
    known = known_mask & torch.isfinite(known_depth) & (known_depth > 0)

    # 1. Degenerate cases: nothing known, everything known
    if not bool(known.any()):
        if estimate.kind != "metric":
            raise ValueError(
                f"a {estimate.kind} depth estimate has no scale: it needs known depth (a metric anchor) to be "
                "aligned, but no pixel of known_mask has a finite depth > 0"
            )
        return _fill_invalid_log(values, torch.isfinite(values) & (values > 0))
    if bool(known.all()):
        return known_depth.clone()

    # 2. Global robust alignment, clamped to a plausible range around the known depth
    known_values = known_depth[known]
    depth_range = (float(known_values.min()) / RANGE_MARGIN, float(known_values.max()) * RANGE_MARGIN)
    if estimate.kind == "metric":
        # A metric estimate is right up to a global scale. A free shift is ill-conditioned when the known pixels
        # span a narrow depth range (a floor strip at the seam): it turns small errors of the known depth into
        # relative errors that grow toward the camera (measured: 3 % at the seam became 9 % at the image bottom).
        fit = _scale_only(values[known].double(), known_depth[known].double())
    else:
        fit = fit_scale_shift(values, known_depth, known, space)
    aligned = apply_scale_shift(values, fit, space, depth_range)
    aligned = _fill_invalid_log(aligned, torch.isfinite(aligned) & (aligned > 0))

    # 3. Residual in log-depth on the known pixels, extended harmonically
    safe_known = torch.where(known, known_depth, aligned)
    residual = torch.where(known, safe_known.log() - aligned.log(), torch.zeros_like(aligned))
    anchors = known & ~_border_outliers(residual, known)
    residual = harmonic_fill(residual, anchors)
    completed = aligned * residual.exp()
    return torch.where(known, known_depth, completed)


class AlignedCompleter:
    """A :class:`~core.components.DepthCompleter` from any depth estimator: estimate, then :func:`align_depth`.

    Args:
        estimator: gives a depth estimate of the (outpainted) view; its kind selects the alignment space.

    Example:
        >>> class Flat:
        ...     def estimate(self, image, camera):
        ...         return DepthEstimate(torch.ones(image.shape[:2]), "relative")
        >>> completer = AlignedCompleter(Flat())
        >>> known = torch.zeros(4, 4, dtype=torch.bool); known[:, :2] = True
        >>> depth = completer.complete(torch.zeros(4, 4, 3), torch.full((4, 4), 2.0) * known, known, None)
        >>> depth.tolist()[0]
        [2.0, 2.0, 2.0, 2.0]
    """

    def __init__(self, estimator: DepthEstimator):
        if not callable(getattr(estimator, "estimate", None)):
            raise ValueError(f"estimator must have an estimate(image, camera) method, got {type(estimator).__name__}")
        self.estimator = estimator

    def complete(
        self,
        image: Tensor,  # [H, W, 3] in [0, 1]
        known_depth: Tensor,  # [H, W], 0 where unknown
        known_mask: Tensor,  # [H, W] bool
        camera: Camera,
    ) -> Tensor:  # [H, W] z-depth > 0, equal to known_depth on known_mask
        check_completion_inputs(image, known_depth, known_mask)
        estimate = self.estimator.estimate(image, camera)
        return align_depth(estimate, known_depth, known_mask)
