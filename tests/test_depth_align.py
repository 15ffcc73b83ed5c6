"""Training-free depth completion (models/depth_align.py)."""

from __future__ import annotations

import pytest
import torch

from core.cameras import Camera, intrinsics
from core.components import DepthCompleter, DepthEstimate
from core.masks import dilate
from models.depth_align import (
    AlignedCompleter,
    ScaleShift,
    align_depth,
    apply_scale_shift,
    fit_scale_shift,
    harmonic_fill,
)

HEIGHT, WIDTH = 96, 128  # not square, so a swapped axis shows
SEAM_BAND_PX = 8
KNOWN_FRACTION = 0.6


def _grid() -> tuple[torch.Tensor, torch.Tensor]:  # [H, W] x in [0, 1), [H, W] y in [0, 1)
    v, u = torch.meshgrid(torch.arange(HEIGHT) + 0.5, torch.arange(WIDTH) + 0.5, indexing="ij")
    return u / WIDTH, v / HEIGHT


def _truth() -> torch.Tensor:  # [H, W]: a tilted plane plus a bump
    x, y = _grid()
    bump = 0.6 * torch.exp(-((x - 0.55) ** 2 + (y - 0.45) ** 2) / (2 * 0.12**2))
    return 2.0 + 1.5 * x + 0.8 * y + bump


def _warp() -> torch.Tensor:  # [H, W] smooth low-frequency field in [-1, 1]
    x, y = _grid()
    return torch.sin(2.2 * x + 0.7) * torch.cos(1.7 * y)


def _known_mask() -> torch.Tensor:  # [H, W] bool: the left 60 %
    mask = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    mask[:, : int(KNOWN_FRACTION * WIDTH)] = True
    return mask


def _seam_band(known: torch.Tensor) -> torch.Tensor:  # [H, W] bool: unknown pixels within 8 px of the known
    return dilate(known, SEAM_BAND_PX) & ~known


def _abs_rel(depth: torch.Tensor, truth: torch.Tensor, where: torch.Tensor) -> float:
    return float(((depth - truth).abs() / truth)[where].mean())


def _sparse(depth: torch.Tensor, known: torch.Tensor) -> torch.Tensor:  # [H, W], 0 where unknown
    return torch.where(known, depth, torch.zeros_like(depth))


def _relative_estimate() -> torch.Tensor:  # depth-space: truth * scale + shift + warp
    return 0.5 * _truth() + 0.3 + 0.12 * _warp()


def _inverse_estimate() -> torch.Tensor:  # disparity-like: a / truth + b + warp
    return 3.0 / _truth() + 0.2 + 0.03 * _warp()


# ---------------------------------------------------------------- align_depth


@pytest.mark.parametrize(
    ("kind", "make_estimate", "space"),
    [
        ("relative", _relative_estimate, "depth"),
        ("metric", lambda: 1.2 * _truth() + 0.25 * _warp(), "depth"),
        ("relative_inverse", _inverse_estimate, "inverse"),
    ],
)
def test_harmonic_alignment_is_seamless(kind, make_estimate, space):
    truth, known = _truth(), _known_mask()
    estimate = make_estimate()
    completed = align_depth(DepthEstimate(estimate, kind), _sparse(truth, known), known)
    seam = _seam_band(known)
    harmonic_error = _abs_rel(completed, truth, seam)
    global_only = apply_scale_shift(estimate, fit_scale_shift(estimate, _sparse(truth, known), known, space), space)
    global_error = _abs_rel(global_only, truth, seam)
    assert harmonic_error <= 0.01
    assert global_error >= 5 * harmonic_error
    assert torch.equal(completed[known], truth[known])  # known pixels preserved exactly
    assert bool(torch.isfinite(completed).all()) and bool((completed > 0).all())


def test_seam_is_continuous():
    truth, known = _truth(), _known_mask()
    completed = align_depth(DepthEstimate(_relative_estimate(), "relative"), _sparse(truth, known), known)
    first_unknown = int(KNOWN_FRACTION * WIDTH)
    step = (completed[:, first_unknown] - completed[:, first_unknown - 1]).abs()
    true_step = (truth[:, first_unknown] - truth[:, first_unknown - 1]).abs()
    assert float((step - true_step).abs().max()) < 0.01 * float(truth.min())


def test_robust_to_outliers_in_known_depth():
    truth, known = _truth(), _known_mask()
    generator = torch.Generator().manual_seed(0)
    corrupt = known & (torch.rand(HEIGHT, WIDTH, generator=generator) < 0.1)
    factor = 0.3 + 2.0 * torch.rand(HEIGHT, WIDTH, generator=generator)  # up to 3x off either way
    known_depth = torch.where(corrupt, truth * factor, _sparse(truth, known))
    completed = align_depth(DepthEstimate(_relative_estimate(), "relative"), known_depth, known)
    assert _abs_rel(completed, truth, _seam_band(known)) <= 0.01
    assert torch.equal(completed[known], known_depth[known])  # the contract: known in, known out


def test_fit_recovers_scale_and_shift_despite_outliers():
    truth, known = _truth(), _known_mask()
    generator = torch.Generator().manual_seed(1)
    corrupt = torch.rand(HEIGHT, WIDTH, generator=generator) < 0.1
    known_depth = torch.where(corrupt, truth * 2.5, truth)
    fit = fit_scale_shift((truth - 0.4) / 3.0, known_depth, known, "depth")
    assert fit == pytest.approx(ScaleShift(3.0, 0.4), rel=1e-4)
    inverse_fit = fit_scale_shift(0.5 / truth - 0.1, known_depth, known, "inverse")
    assert inverse_fit == pytest.approx(ScaleShift(2.0, 0.2), rel=1e-4)


def test_relative_inverse_sky_stays_positive_and_finite():
    truth, known = _truth(), _known_mask()
    estimate = _inverse_estimate()
    estimate[:20, 90:] = 0.0  # "sky": zero disparity, which an affine fit maps to negative inverse depth
    estimate[30, 100] = float("nan")  # and a broken pixel
    completed = align_depth(DepthEstimate(estimate, "relative_inverse"), _sparse(truth, known), known)
    assert bool(torch.isfinite(completed).all()) and bool((completed > 0).all())
    assert torch.equal(completed[known], truth[known])


def test_degenerate_cases():
    truth, known = _truth(), _known_mask()
    metric = DepthEstimate(1.1 * truth, "metric")
    nothing = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    assert torch.equal(align_depth(metric, torch.zeros_like(truth), nothing), metric.values)
    everything = torch.ones_like(nothing)
    assert torch.equal(align_depth(metric, truth, everything), truth)
    # known_mask pixels without a usable depth count as unknown and are filled
    holes = truth.clone()
    holes[5:9, 5:9] = 0.0
    completed = align_depth(metric, holes, everything)
    assert bool((completed[5:9, 5:9] > 0).all())
    assert torch.allclose(completed[5:9, 5:9], truth[5:9, 5:9], rtol=0.01)
    # a constant estimate on the known pixels falls back to a scale-only fit
    flat = align_depth(DepthEstimate(torch.ones_like(truth), "relative"), _sparse(truth, known), known)
    assert bool(torch.isfinite(flat).all()) and torch.equal(flat[known], truth[known])


def test_dtype_follows_known_depth():
    truth, known = _truth(), _known_mask()
    completed = align_depth(DepthEstimate(_relative_estimate(), "relative"), _sparse(truth, known).double(), known)
    assert completed.dtype == torch.float64


def test_error_messages():
    truth, known = _truth(), _known_mask()
    nothing = torch.zeros_like(known)
    with pytest.raises(ValueError, match="metric anchor"):
        align_depth(DepthEstimate(truth, "relative"), torch.zeros_like(truth), nothing)
    with pytest.raises(ValueError, match="metric anchor"):
        align_depth(DepthEstimate(truth, "relative_inverse"), torch.zeros_like(truth), nothing)
    with pytest.raises(ValueError, match="'stereo'"):
        align_depth(DepthEstimate(truth, "stereo"), truth, known)
    with pytest.raises(ValueError, match=r"\(96, 128\).*\(10, 10\)|\(10, 10\).*\(96, 128\)"):
        align_depth(DepthEstimate(torch.ones(10, 10), "metric"), truth, known)
    with pytest.raises(ValueError, match="bool"):
        align_depth(DepthEstimate(truth, "metric"), truth, known.float())
    with pytest.raises(ValueError, match="'disparity'"):
        fit_scale_shift(truth, truth, known, "disparity")
    with pytest.raises(ValueError, match="no known pixel"):
        fit_scale_shift(truth, truth, nothing)


# ---------------------------------------------------------------- harmonic_fill


def _reference_harmonic(values: torch.Tensor, known: torch.Tensor, sweeps: int) -> torch.Tensor:
    """Gauss-Seidel on the same five-point stencil with a zero-flux border: slow and obviously correct."""
    height, width = values.shape
    field = torch.where(known, values, torch.zeros_like(values)).double().tolist()
    unknown = [(v, u) for v in range(height) for u in range(width) if not known[v, u]]
    for _ in range(sweeps):
        for v, u in unknown:
            neighbours = [
                field[y][x]
                for y, x in ((v - 1, u), (v + 1, u), (v, u - 1), (v, u + 1))
                if 0 <= y < height and 0 <= x < width
            ]
            field[v][u] = sum(neighbours) / len(neighbours)
    return torch.tensor(field, dtype=torch.float64)


def test_harmonic_fill_matches_reference():
    generator = torch.Generator().manual_seed(2)
    values = torch.rand(9, 11, generator=generator, dtype=torch.float64)
    known = torch.rand(9, 11, generator=generator) < 0.3
    known[0, 0] = True
    filled = harmonic_fill(values, known)
    assert torch.allclose(filled, _reference_harmonic(values, known, sweeps=2000), atol=1e-9)
    assert torch.equal(filled[known], values[known])


def test_harmonic_fill_reproduces_linear_fields_and_has_no_overshoot():
    x, y = _grid()
    linear = (1.0 + 2.0 * x - 3.0 * y).double()
    frame = torch.ones(HEIGHT, WIDTH, dtype=torch.bool)
    frame[1:-1, 1:-1] = False  # Dirichlet all round: a linear field is exactly harmonic
    assert torch.allclose(harmonic_fill(linear, frame), linear, atol=1e-9)
    generator = torch.Generator().manual_seed(4)
    noise = torch.rand(HEIGHT, WIDTH, generator=generator)
    known = _known_mask()
    filled = harmonic_fill(noise, known)
    assert float(filled.min()) >= float(noise[known].min()) - 1e-6
    assert float(filled.max()) <= float(noise[known].max()) + 1e-6


def test_harmonic_fill_edge_cases():
    values = torch.rand(5, 6)
    everything = torch.ones(5, 6, dtype=torch.bool)
    assert torch.equal(harmonic_fill(values, everything), values)
    assert torch.equal(harmonic_fill(values, ~everything, isolated_value=2.0), torch.full((5, 6), 2.0))
    broken = values.clone()
    broken[0, 0] = float("inf")
    with pytest.raises(ValueError, match="finite"):
        harmonic_fill(broken, everything)
    with pytest.raises(ValueError, match=r"\(5, 6\)"):
        harmonic_fill(values, torch.ones(6, 5, dtype=torch.bool))


# ---------------------------------------------------------------- AlignedCompleter


class _RecordingEstimator:
    def __init__(self, estimate: DepthEstimate):
        self.result = estimate
        self.calls = []

    def estimate(self, image, camera):
        self.calls.append((image, camera))
        return self.result


def test_aligned_completer_is_a_depth_completer():
    truth, known = _truth(), _known_mask()
    estimator = _RecordingEstimator(DepthEstimate(_inverse_estimate(), "relative_inverse"))
    completer = AlignedCompleter(estimator)
    assert isinstance(completer, DepthCompleter)
    image = torch.rand(HEIGHT, WIDTH, 3)
    camera = Camera(intrinsics(HEIGHT, WIDTH), torch.eye(4), HEIGHT, WIDTH)
    depth = completer.complete(image, _sparse(truth, known), known, camera)
    assert estimator.calls[0][0] is image and estimator.calls[0][1] is camera
    assert torch.equal(depth[known], truth[known])
    assert _abs_rel(depth, truth, _seam_band(known)) <= 0.01
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        completer.complete(torch.rand(HEIGHT, WIDTH), _sparse(truth, known), known, camera)
    with pytest.raises(ValueError, match="estimate"):
        AlignedCompleter(object())
