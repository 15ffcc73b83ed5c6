"""Offline backends: PatchMatch outpainting, geometric-prior depth, user depth files."""

from __future__ import annotations

import math
import threading

import pytest
import torch

from core.cameras import Camera, intrinsics, pose, rotation_yaw_pitch
from core.components import Cancelled, DepthEstimate, DepthEstimator, Outpainter, OutpaintRequest, ParallelOutpainter
from core.images import DepthFile
from models.offline import FileDepth, GeometricPriorDepth, PatchMatchOutpainter
from models.patchmatch_worker import WorkerError

HEIGHT, WIDTH = 96, 128
STRIPE = 8
PALETTE = torch.tensor([[0.8, 0.2, 0.1], [0.1, 0.4, 0.9]])


def stripes() -> torch.Tensor:  # [H, W, 3], vertical stripes in the two palette colours
    columns = torch.arange(WIDTH)
    return PALETTE[(columns // STRIPE) % 2][None].expand(HEIGHT, WIDTH, 3).clone()


def right_half() -> torch.Tensor:  # [H, W] bool
    mask = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    mask[:, WIDTH // 2 :] = True
    return mask


def textured(seed: int = 0) -> torch.Tensor:  # [H, W, 3] smooth random texture
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, HEIGHT // 8, WIDTH // 8, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(HEIGHT, WIDTH), mode="bilinear")[0].permute(1, 2, 0)


def level_camera(pitch_deg: float = 0.0, height: int = HEIGHT, width: int = WIDTH) -> Camera:
    return Camera(intrinsics(height, width), pose(rotation_yaw_pitch(0.0, pitch_deg)).float(), height, width)


# --- PatchMatch ---------------------------------------------------------------------------------------------------


@pytest.fixture(params=["patchmatch", "telea"])
def outpainter(request) -> PatchMatchOutpainter:
    painter = PatchMatchOutpainter(use_patchmatch=request.param == "patchmatch")
    if painter.backend != request.param:
        pytest.skip("pypatchmatch's native library is not available here")
    return painter


def test_outpainter_follows_the_protocol(outpainter):
    assert isinstance(outpainter, Outpainter)


def test_outpainter_preserves_known_pixels_exactly(outpainter):
    image = textured()
    image[right_half()] = 0.0  # what the renderer leaves where nothing is known
    result = outpainter.outpaint(image, right_half(), "a prompt", "", seed=1)
    assert result.shape == image.shape and result.dtype == image.dtype
    assert torch.equal(result[~right_half()], image[~right_half()])
    assert float(result[right_half()].mean()) > 0.2  # the hole was filled, not left black


def test_outpainter_is_deterministic_for_a_seed(outpainter):
    image = textured(3)
    first = outpainter.outpaint(image, right_half(), "", "", seed=7)
    second = outpainter.outpaint(image, right_half(), "", "", seed=7)
    assert torch.equal(first, second)


def test_patchmatch_ignores_the_values_under_the_hole():
    painter = PatchMatchOutpainter()
    if painter.backend != "patchmatch":
        pytest.skip("pypatchmatch's native library is not available here")
    black, white = stripes(), stripes()
    black[right_half()] = 0.0
    white[right_half()] = 1.0
    assert torch.equal(painter.outpaint(black, right_half(), seed=5), painter.outpaint(white, right_half(), seed=5))


def test_patchmatch_continues_stripes_with_palette_colours():
    painter = PatchMatchOutpainter()
    if painter.backend != "patchmatch":
        pytest.skip("pypatchmatch's native library is not available here")
    image = stripes()
    image[right_half()] = 0.0
    filled = painter.outpaint(image, right_half(), seed=0)[:, WIDTH // 2 :]  # [H, W/2, 3]
    # Every filled pixel lies on the segment between the two palette colours (patch votes may blend at edges) ...
    direction = PALETTE[1] - PALETTE[0]
    t = ((filled - PALETTE[0]) @ direction / direction.dot(direction)).clamp(0, 1)
    off_segment = (filled - (PALETTE[0] + t[..., None] * direction)).norm(dim=-1)
    assert float(off_segment.max()) < 0.1
    # ... mostly one of the two colours, both of them used, and the stripes stay vertical.
    assert float(((t < 0.1) | (t > 0.9)).float().mean()) > 0.9
    assert 0.3 < float((t > 0.5).float().mean()) < 0.7
    assert float(filled.std(dim=0).mean()) < 0.02


def test_large_hole_from_a_rotated_view_is_filled():
    painter = PatchMatchOutpainter()
    image = textured(5)
    mask = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    mask[:, int(WIDTH * 0.45) :] = True  # ~55 % unknown on one side, as after a 25° turn
    mask[: HEIGHT // 4] = True  # and a band above
    result = painter.outpaint(image, mask, seed=2)
    assert bool(torch.isfinite(result).all()) and torch.equal(result[~mask], image[~mask])
    assert float(result[mask].min()) >= 0.0 and float(result[mask].max()) <= 1.0


def test_outpainter_checks_cancel_and_inputs():
    painter = PatchMatchOutpainter()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        painter.outpaint(textured(), right_half(), "", "", seed=0, cancel=cancel)
    with pytest.raises(ValueError, match="bool"):
        painter.outpaint(textured(), right_half().float(), "", "", seed=0)
    with pytest.raises(ValueError, match="nothing to copy"):
        painter.outpaint(textured(), torch.ones(HEIGHT, WIDTH, dtype=torch.bool), "", "", seed=0)
    image = textured()
    assert torch.equal(painter.outpaint(image, torch.zeros(HEIGHT, WIDTH, dtype=torch.bool), seed=0), image)


def _patchmatch(**options) -> PatchMatchOutpainter:
    painter = PatchMatchOutpainter(**options)
    if painter.backend != "patchmatch":
        pytest.skip("pypatchmatch's native library is not available here")
    return painter


def _requests() -> list[OutpaintRequest]:
    left = ~right_half()
    nothing = torch.zeros_like(left)
    return [
        OutpaintRequest(textured(1), right_half(), seed=11),
        OutpaintRequest(textured(2), left, seed=12),
        OutpaintRequest(textured(3), right_half(), seed=13),
        OutpaintRequest(textured(4), nothing, seed=14),  # nothing to fill: returned as given
    ]


def test_patchmatch_fills_views_in_parallel_with_the_same_bytes_as_one_by_one():
    painter = _patchmatch(parallel_views=2)
    assert isinstance(painter, ParallelOutpainter) and painter.parallel_views == 2
    requests = _requests()
    together = painter.outpaint_many(requests)
    one_by_one = [painter.outpaint(r.image, r.fill_mask, seed=r.seed) for r in requests]
    assert all(torch.equal(a, b) for a, b in zip(together, one_by_one, strict=True))
    assert torch.equal(together[3], requests[3].image)
    assert painter._worker._process is not None  # the second lane really ran in the worker process
    painter._worker.close()


def test_patchmatch_fills_here_when_the_worker_dies():
    painter = _patchmatch(parallel_views=2)
    requests = _requests()[:2]
    expected = [painter.outpaint(r.image, r.fill_mask, seed=r.seed) for r in requests]
    painter.outpaint_many(requests)  # starts the worker
    painter._worker._process.kill()  # it dies between two waves
    painter._worker._process.wait()
    again = painter.outpaint_many(requests)  # the next send starts a new one
    assert all(torch.equal(a, b) for a, b in zip(again, expected, strict=True))

    def broken(*args, **kwargs):
        raise WorkerError("could not start")

    painter._worker.send = broken
    assert all(torch.equal(a, b) for a, b in zip(painter.outpaint_many(requests), expected, strict=True))
    painter._worker.close()


def test_patchmatch_parallel_views_checks_its_argument_and_cancel():
    with pytest.raises(ValueError, match="parallel_views"):
        PatchMatchOutpainter(parallel_views=3)
    assert PatchMatchOutpainter(use_patchmatch=False).parallel_views == 1  # Telea: nothing to gain
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        _patchmatch(parallel_views=2).outpaint_many(_requests(), cancel)
    with pytest.raises(ValueError, match="whole image"):
        everything = torch.ones(HEIGHT, WIDTH, dtype=torch.bool)
        _patchmatch(parallel_views=2).outpaint_many([OutpaintRequest(textured(), everything)] * 2)


# --- geometric prior ----------------------------------------------------------------------------------------------


def test_geometric_prior_level_camera_matches_ground_plane_formula():
    estimator = GeometricPriorDepth(camera_height=1.6, far_distance=20.0)
    assert isinstance(estimator, DepthEstimator)
    camera = level_camera()
    estimate = estimator.estimate(torch.zeros(HEIGHT, WIDTH, 3), camera)
    assert estimate.kind == "metric" and estimate.values.shape == (HEIGHT, WIDTH)
    focal, cy = float(camera.K[1, 1]), float(camera.K[1, 2])
    v_bottom = HEIGHT - 0.5  # centre of the last row
    expected = 1.6 * focal / (v_bottom - cy)
    torch.testing.assert_close(estimate.values[-1], torch.full((WIDTH,), expected), rtol=0.01, atol=0)
    # The top row sees the backdrop: horizontal range = far_distance, so z-depth * sqrt(1 + x²) = 20 m.
    x = (torch.arange(WIDTH) + 0.5 - float(camera.K[0, 2])) / float(camera.K[0, 0])
    torch.testing.assert_close(estimate.values[0] * torch.sqrt(1 + x**2), torch.full((WIDTH,), 20.0), rtol=0.01, atol=0)
    assert bool(torch.isfinite(estimate.values).all()) and float(estimate.values.min()) > 0


def horizon_row(estimate: torch.Tensor) -> int:  # [H, W] with a huge far distance -> first ground row
    centre_column = estimate[:, estimate.shape[1] // 2]
    return int((centre_column < 1e4).nonzero()[0])


def test_geometric_prior_pitch_moves_the_horizon():
    estimator = GeometricPriorDepth(far_distance=1e6)  # sky at 1e6 m, every ground pixel far below that
    image = torch.zeros(HEIGHT, WIDTH, 3)
    focal, cy = float(level_camera().K[1, 1]), float(level_camera().K[1, 2])
    for pitch in (0.0, -10.0, 10.0):
        row = horizon_row(estimator.estimate(image, level_camera(pitch)).values)
        expected = cy + focal * math.tan(math.radians(pitch))  # looking down (pitch < 0) lifts the horizon
        assert abs(row - expected) <= 1.0, (pitch, row, expected)
    down = horizon_row(estimator.estimate(image, level_camera(-10.0)).values)
    assert down < horizon_row(estimator.estimate(image, level_camera(0.0)).values)


def test_geometric_prior_horizon_row_override_and_resolution():
    estimator = GeometricPriorDepth(horizon_row=30.0, far_distance=1e6)
    values = estimator.estimate(torch.zeros(HEIGHT, WIDTH, 3), level_camera()).values
    assert abs(horizon_row(values) - 30) <= 1
    # A camera given at another resolution is rescaled to the image.
    big = GeometricPriorDepth().estimate(
        torch.zeros(HEIGHT, WIDTH, 3), level_camera(height=HEIGHT * 2, width=WIDTH * 2)
    )
    torch.testing.assert_close(
        big.values, GeometricPriorDepth().estimate(torch.zeros(HEIGHT, WIDTH, 3), level_camera()).values
    )


def test_geometric_prior_rejects_bad_parameters():
    with pytest.raises(ValueError, match="camera_height"):
        GeometricPriorDepth(camera_height=0.0)
    with pytest.raises(ValueError, match="far_distance"):
        GeometricPriorDepth(camera_height=2.0, far_distance=1.0)


# --- file depth ---------------------------------------------------------------------------------------------------


class ConstantDepth:
    """A fallback estimator returning a fixed map of the given kind."""

    def __init__(self, values: torch.Tensor, kind: str = "metric"):
        self.values, self.kind = values, kind

    def estimate(self, image: torch.Tensor, camera: Camera) -> DepthEstimate:
        return DepthEstimate(self.values.clone(), self.kind)


def test_file_depth_uses_file_where_valid_and_scaled_fallback_elsewhere():
    truth = 1.0 + torch.rand(HEIGHT, WIDTH)
    valid = torch.ones(HEIGHT, WIDTH, dtype=torch.bool)
    valid[:, : WIDTH // 4] = False
    user = DepthFile(torch.where(valid, truth, torch.zeros(())), valid, [])
    for kind, fallback_values in (
        ("metric", truth / 3.0),
        ("relative", truth * 5.0),
        ("relative_inverse", 2.0 / truth),
    ):
        estimator = FileDepth(user, ConstantDepth(fallback_values, kind))
        result = estimator.estimate(torch.zeros(HEIGHT, WIDTH, 3), level_camera())
        assert result.kind == "metric"
        assert torch.equal(result.values[valid], truth[valid])
        torch.testing.assert_close(result.values, truth, rtol=1e-4, atol=1e-4)


def test_file_depth_resizes_to_the_image():
    truth = torch.full((HEIGHT * 2, WIDTH * 2), 3.0)
    user = DepthFile(truth, truth > 0, [])
    result = FileDepth(user, GeometricPriorDepth()).estimate(torch.zeros(HEIGHT, WIDTH, 3), level_camera())
    torch.testing.assert_close(result.values, torch.full((HEIGHT, WIDTH), 3.0))


def test_file_depth_without_overlap_matches_medians_and_survives_bad_fallback_pixels():
    valid = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    valid[:2, :2] = True  # 4 pixels: too few to calibrate per pixel
    user = DepthFile(torch.where(valid, torch.tensor(4.0), torch.tensor(0.0)), valid, [])
    fallback = torch.full((HEIGHT, WIDTH), 2.0)
    fallback[-1, -1] = float("nan")
    result = FileDepth(user, ConstantDepth(fallback)).estimate(torch.zeros(HEIGHT, WIDTH, 3), level_camera())
    torch.testing.assert_close(result.values, torch.full((HEIGHT, WIDTH), 4.0))


def test_patchmatch_solved_at_reduced_resolution_keeps_known_pixels_and_palette():
    painter = PatchMatchOutpainter(solve_max_side=WIDTH // 2)
    if painter.backend != "patchmatch":
        pytest.skip("pypatchmatch's native library is not available here")
    image = stripes()
    image[right_half()] = 0.0
    result = painter.outpaint(image, right_half(), seed=0)  # [H, W, 3]
    assert torch.equal(result[~right_half()], image[~right_half()])
    filled = result[:, WIDTH // 2 :]  # [H, W/2, 3]
    # Stripes continue: vertical, and each filled column is nearer one palette colour, both colours used.
    assert float(filled.std(dim=0).mean()) < 0.02
    nearer_second = (filled - PALETTE[1]).norm(dim=-1) < (filled - PALETTE[0]).norm(dim=-1)  # [H, W/2]
    assert 0.3 < float(nearer_second.float().mean()) < 0.7
    assert torch.equal(result, painter.outpaint(image, right_half(), seed=0))


def test_patchmatch_rejects_a_bad_solve_size():
    with pytest.raises(ValueError, match="solve_max_side"):
        PatchMatchOutpainter(solve_max_side=4)
