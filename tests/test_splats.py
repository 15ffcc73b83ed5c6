"""Splat initialisation from the fused cloud and fitting against generated frames (CPU, tiny scenes)."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
import torch

from core.cameras import Camera, intrinsics, pose, rotation_yaw_pitch
from core.components import Cancelled, RenderResult
from core.geometry import project
from core.types import PointCloud
from evaluation.splat_scenes import render_room, synthetic_room
from pipeline.job import thin_cloud
from pipeline.splats import (
    SPLAT_PRESETS,
    LearningRates,
    NoStrategy,
    PruneStrategy,
    SplatConfig,
    SplatInitConfig,
    SplatParams,
    Splats,
    StrategyState,
    fit_splats,
    init_from_cloud,
    masked_psnr,
    splat_preset,
    step_budget,
)
from pipeline.splats.colors import solve_colors
from pipeline.splats.losses import SSIM_WINDOW, SsimReference, ssim_map
from pipeline.splats.model import merge_to_resolution
from pipeline.splats.views import frame_target
from renderers.gaussians import GaussianRender, TorchGaussianRasterizer
from renderers.gaussians_numba import NumbaGaussianRasterizer
from renderers.points import TorchPointRenderer

H, W = 48, 64  # tiny frames: every test here runs in seconds on 2 cores


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def stage():
    return synthetic_room("stage", H, W)


@pytest.fixture(scope="module")
def stage_medium():
    """The quality tests need a few pixels per texture stripe: at 64×48 the z-buffer and the splats tie."""
    return synthetic_room("stage", 2 * H, 2 * W)


def _camera(yaw_deg: float, scale: int = 1) -> Camera:
    w2c = pose(rotation_yaw_pitch(yaw_deg, 0.0)).float()
    return Camera(intrinsics(scale * H, scale * W), w2c, scale * H, scale * W)


def test_init_keeps_points_colours_and_footprints(stage):
    _, cloud = stage
    splats = init_from_cloud(cloud, SplatInitConfig(scale_source="radius", sh_degree=2, opacity=0.9))
    assert len(splats) == len(cloud)
    torch.testing.assert_close(splats.means, cloud.points)
    torch.testing.assert_close(splats.rgb, cloud.colors, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.exp(splats.scales), cloud.radii[:, None].expand(-1, 3))
    assert splats.shN.shape == (len(cloud), 8, 3) and splats.sh_degree == 2 and (splats.shN == 0).all()
    assert torch.allclose(torch.sigmoid(splats.opacities), torch.tensor(0.9))
    assert (splats.quats == torch.tensor([1.0, 0, 0, 0])).all()
    thinned = thin_cloud(cloud, len(cloud) // 4)  # every 4th point stands for 4: twice the footprint radius
    torch.testing.assert_close(torch.exp(init_from_cloud(thinned).scales[:, 0]), 2 * cloud.radii[::4])


def test_knn_sizes_are_bounded_and_max_never_shrinks(stage):
    _, cloud = stage
    by_radius = torch.exp(init_from_cloud(cloud, SplatInitConfig(scale_source="radius")).scales[:, 0])
    by_max = torch.exp(init_from_cloud(cloud, SplatInitConfig(scale_source="max")).scales[:, 0])
    by_knn = torch.exp(init_from_cloud(cloud, SplatInitConfig(scale_source="knn")).scales[:, 0])
    assert (by_max >= by_radius - 1e-9).all()
    assert (by_knn <= 4.0 * cloud.radii + 1e-9).all()


def test_init_rejects_bad_clouds():
    bad = PointCloud(
        torch.tensor([[0.0, 0.0, float("nan")]]), torch.zeros(1, 3), torch.ones(1), torch.zeros(1, dtype=torch.long)
    )
    with pytest.raises(ValueError, match="non-finite"):
        init_from_cloud(bad)
    wrong = PointCloud(torch.zeros(3, 3), torch.zeros(2, 3), torch.ones(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"got \(2, 3\)"):
        init_from_cloud(wrong)
    with pytest.raises(ValueError, match="sh_degree"):
        init_from_cloud(
            PointCloud(torch.zeros(1, 3), torch.zeros(1, 3), torch.ones(1), torch.zeros(1, dtype=torch.long)),
            SplatInitConfig(sh_degree=4),
        )


def test_unfitted_splats_already_look_like_the_scene(stage):
    frames, cloud = stage
    splats = init_from_cloud(cloud)
    for frame in frames:
        out = splats.render(frame.camera, "torch")
        assert masked_psnr(out.rgb, frame.rgb) > 23.0
        assert out.alpha.mean() > 0.97


def _held_out_psnr(render_fn) -> float:
    """Mean PSNR against the exact room over four views between and around the stage's (never trained on)."""
    cameras = [_camera(yaw, scale=2) for yaw in (12.5, -12.5, 6.0, -6.0)]
    return sum(masked_psnr(render_fn(c), render_room(c)[0]) for c in cameras) / len(cameras)


def test_colour_solve_sharpens_the_first_render_beyond_the_point_cloud(stage_medium):
    """Init + colour solve: the frames are reproduced much better than with the points' own colours, and views off
    the path look at least as good as the z-buffer render of the cloud."""
    frames, cloud = stage_medium
    points = TorchPointRenderer()
    splats = init_from_cloud(cloud)
    targets = [frame_target(f, i, "all", 0, None) for i, f in enumerate(frames)]
    rasterizer = TorchGaussianRasterizer()
    solved = solve_colors(splats, targets, rasterizer, 5, torch.zeros(3))
    for frame in frames:
        before = masked_psnr(splats.render(frame.camera, "torch").rgb, frame.rgb)
        after = masked_psnr(solved.render(frame.camera, "torch").rgb, frame.rgb)
        assert after > before + 2.0, (before, after)
    cloud_psnr = _held_out_psnr(lambda c: points.render(cloud.points, cloud.colors, c, cloud.radii).rgb)
    assert _held_out_psnr(lambda c: solved.render(c, "torch").rgb) >= cloud_psnr
    torch.testing.assert_close(solved.scales, splats.scales)  # only colours change
    assert solve_colors(splats, targets, rasterizer, 0, torch.zeros(3)) is splats


def test_fit_lowers_loss_and_generalises_to_held_out_views(stage):
    frames, cloud = stage
    g = torch.Generator().manual_seed(0)
    noisy = PointCloud(
        cloud.points,
        (cloud.colors + 0.25 * torch.randn(cloud.colors.shape, generator=g)).clamp(0, 1),
        cloud.radii,
        cloud.source_view,
    )
    held_out = [_camera(12.5), _camera(-12.5)]
    before = init_from_cloud(noisy)
    psnr_before = [masked_psnr(before.render(c, "torch").rgb, render_room(c)[0]) for c in held_out]
    config = SplatConfig(
        iterations=60, iterations_per_view=None, stop_on_plateau=False, color_solve_iterations=0,
        support_views_per_frame=0, rasterizer="torch", lr=LearningRates(sh0=1e-2),
    )  # fmt: skip  # only the frames teach: supporting views would render the noisy cloud
    result = fit_splats(frames, noisy, config)
    assert len(result.losses) == 60 and result.iterations == 60 and result.backend == "torch" and result.seconds > 0
    first, last = sum(result.losses[:6]) / 6, sum(result.losses[-6:]) / 6
    assert last < 0.7 * first
    psnr_after = [masked_psnr(result.splats.render(c, "torch").rgb, render_room(c)[0]) for c in held_out]
    assert min(psnr_after) > 24.0, psnr_after
    assert min(a - b for a, b in zip(psnr_after, psnr_before)) > 4.0
    assert len(result.psnr) == len(frames) and min(result.psnr) > 24.0
    assert all(torch.isfinite(t).all() for t in result.splats.tensors())


def test_default_fit_stops_on_a_held_out_plateau_and_beats_the_point_render(stage_medium):
    frames, cloud = stage_medium
    config = SplatConfig(iterations=10_000, iterations_per_view=None, rasterizer="torch", plateau_every=5)
    seen = []
    result = fit_splats(frames, cloud, config, progress=lambda s, t, loss: seen.append((s, t)))
    assert 0 < result.iterations < 10_000 and len(result.losses) == result.iterations
    assert len(result.holdout_psnr) >= 1 + config.plateau_patience
    best = max(result.holdout_psnr)
    assert result.holdout_psnr[0] <= best and best >= max(result.holdout_psnr[-config.plateau_patience :])
    fractions = [s / t for s, t in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(set(t for _, t in seen)) == 2
    points = TorchPointRenderer()
    cloud_psnr = _held_out_psnr(lambda c: points.render(cloud.points, cloud.colors, c, cloud.radii).rgb)
    assert _held_out_psnr(lambda c: result.splats.render(c, "torch").rgb) >= cloud_psnr


def _seen_by_photo(camera: Camera, photo: Camera) -> torch.Tensor:  # [H, W] bool
    """Pixels of ``camera`` whose room surface lies inside the photo's view (the rest has no truth to fit)."""
    _, _, world = render_room(camera)
    uv, z = project(world.reshape(-1, 3), photo.K.float(), photo.world_to_cam.float())
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < photo.width) & (uv[:, 1] >= 0) & (uv[:, 1] < photo.height)
    return inside.reshape(camera.height, camera.width)


def test_supporting_views_keep_colours_right_when_the_view_turns():
    """One photo: solved against it alone, overlapping splats get colours for its exact depth order, which a turn
    reorders. The default fit also reproduces jittered point-cloud views, so turned views score better."""
    frames, cloud = synthetic_room("single", 2 * H, 2 * W)
    photo = frames[0].camera
    turned = [_camera(yaw, scale=2) for yaw in (-12.5, 6.0, 12.5, 25.0)]
    seen = [_seen_by_photo(c, photo) for c in turned]
    truths = [render_room(c)[0] for c in turned]

    def held_out(config: SplatConfig) -> list[float]:
        splats = fit_splats(frames, cloud, config).splats
        return [masked_psnr(splats.render(c, "numba").rgb, t, m) for c, t, m in zip(turned, truths, seen)]

    default = SplatConfig(rasterizer="numba")
    assert default.support_views_per_frame > 0
    without = held_out(replace(default, support_views_per_frame=0))
    supported = held_out(default)  # measured: +0.5 dB on average, every view better
    assert all(s > w for s, w in zip(supported, without)), (supported, without)
    assert sum(supported) / len(supported) > sum(without) / len(without) + 0.25, (supported, without)


def test_fit_work_follows_the_number_of_views(stage):
    frames, cloud = stage
    config = SplatConfig(iterations=300, iterations_per_view=4, stop_on_plateau=False, rasterizer="torch")
    assert step_budget(config, 1) == 4 and step_budget(config, 3) == 12 and step_budget(config, 100) == 300
    assert fit_splats(frames[:1], cloud, config).iterations == 4
    assert fit_splats(frames, cloud, config).iterations == 12


def test_positions_are_frozen_by_default(stage):
    frames, cloud = stage
    result = fit_splats(frames, cloud, SplatConfig(iterations=3, rasterizer="torch", strategy=NoStrategy()))
    torch.testing.assert_close(result.splats.means, cloud.points)


def test_progress_and_cancel(stage):
    frames, cloud = stage
    seen = []
    fit_splats(
        frames, cloud, SplatConfig(iterations=2, rasterizer="torch"), progress=lambda s, t, loss: seen.append((s, t))
    )
    assert seen == [(1, 2), (2, 2)]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        fit_splats(frames, cloud, SplatConfig(iterations=5, rasterizer="torch"), cancel=cancel)


def test_pose_refinement_and_supporting_views_run(stage):
    frames, cloud = stage
    calls = []

    def render_support(camera: Camera) -> RenderResult:
        calls.append(camera)
        rgb, depth, _ = render_room(camera)
        return RenderResult(rgb, depth, torch.ones(camera.height, camera.width, dtype=torch.bool))

    config = SplatConfig(
        iterations=6, rasterizer="torch", pose_refinement=True, support_views_per_frame=1, fit_max_side=32
    )
    result = fit_splats(frames, cloud, config, support_renderer=render_support)
    assert len(calls) == len(frames) + config.holdout_views  # supporting views, then the held-out ones
    assert not torch.allclose(calls[0].world_to_cam, frames[0].camera.world_to_cam)  # jittered
    assert len(result.psnr) == len(frames) and all(p > 15 for p in result.psnr)
    torch.testing.assert_close(result.world_to_cam[0], frames[0].camera.world_to_cam)  # the anchor stays put
    assert all(m.shape == (4, 4) and torch.isfinite(m).all() for m in result.world_to_cam)


def test_presets():
    assert [SPLAT_PRESETS[k].iterations for k in ("draft", "default", "high")] == [100, 300, 1000]
    assert splat_preset("high", iterations=5).iterations == 5
    with pytest.raises(ValueError, match="unknown splat preset"):
        splat_preset("ultra")


def test_bad_mask_mode_and_empty_inputs(stage):
    frames, cloud = stage
    with pytest.raises(ValueError, match="mask_mode"):
        fit_splats(frames, cloud, SplatConfig(iterations=1, mask_mode="some"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one frame"):
        fit_splats([], cloud)


def test_prune_strategy_removes_transparent_splats():
    n = 10
    splats = Splats(
        torch.randn(n, 3), torch.full((n, 3), -3.0), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        torch.tensor([5.0] * 8 + [-9.0, -9.0]), torch.zeros(n, 1, 3), torch.zeros(n, 0, 3),
    )  # fmt: skip
    params = SplatParams(
        splats, {"means": 0.0, "scales": 1e-3, "quats": 1e-3, "opacities": 1e-2, "sh0": 1e-3, "shN": 0.0}
    )
    render = GaussianRender(
        torch.zeros(4, 4, 3), torch.zeros(4, 4), torch.zeros(4, 4), torch.zeros(n, 2), torch.zeros(n, dtype=torch.long)
    )
    strategy = PruneStrategy(every=10, start_fraction=0.0, stop_fraction=1.0)
    state = StrategyState()
    strategy.step_post_backward(params, state, 5, render, 100)
    assert len(params) == n
    strategy.step_post_backward(params, state, 10, render, 100)
    assert len(params) == 8
    # the optimiser follows the new tensors
    assert all(group["params"][0] is params.params[group["name"]] for group in params.optimizer.param_groups)


def test_merge_to_fit_resolution_keeps_one_splat_per_fit_pixel(stage):
    frames, cloud = stage
    half = {f.index: f.camera.scaled(H // 2, W // 2) for f in frames}
    merged = merge_to_resolution(cloud, half)
    assert len(cloud) / 4 * 0.9 <= len(merged) <= len(cloud) / 4 * 1.1  # one of every 2×2 block of points
    for view, camera in half.items():  # every kept point owns its own pixel of its source view at half size
        points = merged.points[merged.source_view == view]
        uv, z = project(points, camera.K, camera.world_to_cam)
        cells = torch.floor(uv[:, 1]).long() * camera.width + torch.floor(uv[:, 0]).long()
        assert cells.unique().numel() == cells.numel()
    assert (merged.radii >= 2 * cloud.radii.min() * 0.99).all()  # half a pixel at half the resolution
    assert merge_to_resolution(cloud, {f.index: f.camera for f in frames}) is cloud  # already one per pixel
    only_first = merge_to_resolution(cloud, {0: half[0]})  # views without a camera keep all their points
    assert (only_first.source_view > 0).sum() == (cloud.source_view > 0).sum()
    assert (only_first.source_view == 0).sum() == (merged.source_view == 0).sum()


class _WithoutColorOperator:
    """A rasteriser seen through its ``render`` only, so that solve_colors takes the generic autograd path."""

    def __init__(self, rasterizer):
        self.render = rasterizer.render


def test_colour_solve_with_binned_operators_matches_the_autograd_path(stage_medium):
    frames, cloud = stage_medium
    splats = init_from_cloud(cloud)
    targets = [frame_target(f, i, "all", 0, None) for i, f in enumerate(frames)]
    rasterizer = NumbaGaussianRasterizer()
    background = torch.tensor([0.2, 0.3, 0.4])
    fast = solve_colors(splats, targets, rasterizer, 5, background)
    generic = solve_colors(splats, targets, _WithoutColorOperator(rasterizer), 5, background)
    torch.testing.assert_close(fast.sh0, generic.sh0, atol=2e-3, rtol=0)


@pytest.mark.parametrize("size", [(6, 9), (96, 128), (192, 256)])
def test_ssim_map_and_its_gradient_match_kornia(size):
    """Our SSIM (target statistics kept, blur as two matrix products) is kornia's map and gradient, crops included."""
    import kornia.metrics

    generator = torch.Generator().manual_seed(3)
    target = torch.rand(*size, 3, generator=generator, dtype=torch.float64)
    render = (target + 0.2 * torch.randn(*size, 3, generator=generator, dtype=torch.float64)).clamp(0, 1)
    ours_in = render.clone().requires_grad_()
    theirs_in = render.clone().requires_grad_()
    reference = SsimReference(target)
    ours = reference.map(ours_in)
    theirs = kornia.metrics.ssim(theirs_in.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None], SSIM_WINDOW)
    theirs = theirs[0].mean(dim=0)
    assert ours.shape == size
    assert torch.allclose(ours, theirs, atol=1e-6)  # kornia builds its window in float32
    weights = torch.rand(size, generator=generator, dtype=torch.float64)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    assert torch.allclose(ours_in.grad, theirs_in.grad, atol=1e-5)
    assert torch.allclose(ssim_map(render, target), ours)  # the one-off form
    assert float(reference.map(target).min()) > 1 - 1e-9  # an image is identical to itself


def test_ssim_rejects_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="larger than 5 px"):
        SsimReference(torch.rand(5, 40, 3))
    with pytest.raises(ValueError, match="reference's shape"):
        SsimReference(torch.rand(20, 40, 3)).map(torch.rand(40, 20, 3))
