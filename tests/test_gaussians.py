"""The pure-torch Gaussian rasteriser against a dense reference (images and gradients), and backend selection."""

from __future__ import annotations

import pytest
import torch

from core.cameras import Camera, intrinsics, look_at
from renderers.gaussians import (
    RasterSettings,
    TorchGaussianRasterizer,
    get_gaussian_rasterizer,
    gsplat_available,
    project_gaussians,
    rasterize_reference,
    sh_basis,
)

EXACT = RasterSettings(max_per_pixel=10_000)  # every overlapping Gaussian composited: equals the reference


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _scene(n: int = 30, sh_degree: int | None = 1, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * torch.tensor([0.6, 0.4, 0.5], dtype=dtype)
    means = means + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.15 + 0.03
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.9 + 0.05
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g, dtype=dtype)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g, dtype=dtype) * 0.4
    return [means, quats, scales, opacities, colors]


def _camera(height=20, width=28, dtype=torch.float64, yaw_target=(0.3, -0.2, 3.0), eye=(0.1, 0.05, -0.2)) -> Camera:
    w2c = look_at(torch.tensor(eye), torch.tensor(yaw_target)).to(dtype)
    return Camera(intrinsics(height, width, 60.0).to(dtype), w2c, height, width)


@pytest.mark.parametrize("sh_degree", [None, 0, 1, 3])
def test_torch_rasterizer_matches_dense_reference_images_and_gradients(sh_degree):
    params = [t.requires_grad_() for t in _scene(sh_degree=sh_degree)]
    camera = _camera()
    background = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64)
    ref = rasterize_reference(*params, camera, sh_degree, background, EXACT)
    fast = TorchGaussianRasterizer(EXACT).render(*params, camera, sh_degree, background)
    assert ref.alpha.max() > 0.5, "scene should cover part of the image"
    for name in ("rgb", "alpha", "depth_accum"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), atol=1e-10, rtol=1e-8)
    weights = torch.randn(
        camera.height, camera.width, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )

    def objective(out):
        return (out.rgb * weights).sum() + 0.1 * out.depth_accum.sum() + out.alpha.sum()

    g_ref = torch.autograd.grad(objective(ref), params)
    g_fast = torch.autograd.grad(objective(fast), params)
    for name, a, b in zip(("means", "quats", "scales", "opacities", "colors"), g_fast, g_ref):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7, msg=f"gradient of {name}")


def test_frustum_cull_keeps_everything_that_reaches_the_image():
    """Gaussians scattered well beyond the image borders (and behind): still identical to the dense reference."""
    means, quats, scales, opacities, colors = _scene(n=120, sh_degree=None, seed=11)
    means = means * torch.tensor([12.0, 12.0, 3.0], dtype=means.dtype) - torch.tensor(
        [0.0, 0.0, 4.0], dtype=means.dtype
    )
    scales = scales * 3
    camera = _camera()
    ref = rasterize_reference(means, quats, scales, opacities, colors, camera, None, None, EXACT)
    fast = TorchGaussianRasterizer(EXACT).render(means, quats, scales, opacities, colors, camera)
    assert ref.alpha.max() > 0.5
    torch.testing.assert_close(fast.rgb, ref.rgb, atol=1e-10, rtol=1e-8)


def test_reused_binning_gives_the_same_image_and_is_refused_when_stale():
    params = _scene(n=60, seed=4)
    camera = _camera()
    rasterizer = TorchGaussianRasterizer()
    first = rasterizer.render(*params, camera, 1)
    again = rasterizer.render(*params, camera, 1, reuse=first.cache)
    assert again.cache is first.cache
    torch.testing.assert_close(again.rgb, first.rgb)
    fewer = [t[:50] for t in params]
    stale = rasterizer.render(*fewer, camera, 1, reuse=first.cache)  # different count: bins again
    assert stale.cache is not first.cache
    torch.testing.assert_close(stale.rgb, rasterizer.render(*fewer, camera, 1).rgb)


def test_torch_rasterizer_float32_close_to_reference():
    params = [t.float() for t in _scene(n=60, seed=3)]
    camera = _camera(dtype=torch.float32)
    ref = rasterize_reference(*params, camera, 1, None, EXACT)
    fast = TorchGaussianRasterizer(EXACT).render(*params, camera, 1)
    torch.testing.assert_close(fast.rgb, ref.rgb, atol=1e-5, rtol=1e-4)


def test_per_pixel_cap_only_drops_hidden_contributions():
    """A surface (a grid of overlapping opaque splats) in front of another: compositing at most 32 Gaussians per
    pixel gives the same image, because early termination ends every pixel within the front layer."""
    v, u = torch.meshgrid(torch.linspace(-1.7, 1.7, 30), torch.linspace(-2.2, 2.2, 40), indexing="ij")
    front = torch.stack([u, v, torch.full_like(u, 3.0)], dim=-1).reshape(-1, 3)
    means = torch.cat([front, front + torch.tensor([0.05, 0.05, 1.0])]).double()
    n = means.shape[0]
    quats = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).repeat(n, 1)
    scales = torch.full((n, 3), 0.08, dtype=torch.float64)
    opacities = torch.full((n,), 0.95, dtype=torch.float64)
    colors = torch.rand(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    camera = _camera(eye=(0.0, 0.0, 0.0), yaw_target=(0.0, 0.0, 3.0))
    full = TorchGaussianRasterizer(EXACT).render(means, quats, scales, opacities, colors, camera)
    capped = TorchGaussianRasterizer(RasterSettings(max_per_pixel=32)).render(
        means, quats, scales, opacities, colors, camera
    )
    assert full.alpha.min() > 0.99
    assert (full.rgb - capped.rgb).abs().max() < 1e-3


def test_culls_gaussians_behind_camera_without_nan():
    means, quats, scales, opacities, colors = _scene(n=20, sh_degree=0)
    means = means.clone()
    means[:10, 2] = -means[:10, 2]  # behind the camera
    means[10, 2] = 0.0  # exactly on the camera plane
    params = [t.requires_grad_() for t in (means, quats, scales, opacities, colors)]
    out = TorchGaussianRasterizer(EXACT).render(*params, _camera(), 0)
    out.rgb.sum().backward()
    assert torch.isfinite(out.rgb).all() and all(torch.isfinite(p.grad).all() for p in params)
    assert (out.radii[:11] == 0).all()


def test_empty_view_is_background():
    means, quats, scales, opacities, colors = _scene(n=5, sh_degree=None)
    means = means - torch.tensor([0.0, 0.0, 10.0], dtype=means.dtype)  # all behind
    background = torch.tensor([0.1, 0.2, 0.3], dtype=means.dtype)
    out = TorchGaussianRasterizer().render(means, quats, scales, opacities, colors, _camera(), None, background)
    assert torch.allclose(out.rgb, background.expand_as(out.rgb))
    assert (out.alpha == 0).all() and (out.depth == 0).all()


def test_projection_matches_gsplat_torch_reference():
    """Same camera model and pixel-centre convention as gsplat (its pure-torch projection runs on CPU)."""
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    means, quats, scales, _, _ = _scene(n=40)
    camera = _camera()
    ours = project_gaussians(means, quats, scales, camera, RasterSettings())
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=False, triu=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, camera.world_to_cam[None], camera.K[None], camera.width, camera.height, eps2d=0.3
    )
    drawn = radii[0].max(dim=-1).values > 0
    torch.testing.assert_close(ours.means2d[drawn], means2d[0][drawn])
    torch.testing.assert_close(ours.conics[drawn], conics[0][drawn])
    torch.testing.assert_close(ours.depths, depths[0])


def test_sh_basis_matches_gsplat():
    from gsplat.cuda._torch_impl import _eval_sh_bases_fast

    dirs = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(sh_basis(3, dirs), _eval_sh_bases_fast(16, dirs))
    with pytest.raises(ValueError, match="sh degree"):
        sh_basis(4, dirs)


def test_bad_shapes_are_reported_with_actual_shapes():
    means, quats, scales, opacities, colors = _scene(n=4, sh_degree=None)
    with pytest.raises(ValueError, match=r"quats must have shape \(4, 4\), got \(3, 4\)"):
        TorchGaussianRasterizer().render(means, quats[:3], scales, opacities, colors, _camera())


def test_backend_selection_is_lazy_and_explicit():
    assert get_gaussian_rasterizer("torch").name == "torch"
    with pytest.raises(ValueError, match="unknown gaussian rasterizer"):
        get_gaussian_rasterizer("vulkan")  # type: ignore[arg-type]
    if not torch.cuda.is_available():
        # CPU data gets the compiled numba rasteriser (tests/test_gaussians_numba.py checks it against this one)
        assert get_gaussian_rasterizer("auto").name == "numba"
        assert get_gaussian_rasterizer("auto", device="cpu").name == "numba"
        with pytest.raises(ValueError, match="needs CUDA"):
            get_gaussian_rasterizer("gsplat")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat's rasteriser needs CUDA")
def test_gsplat_backend_matches_torch_backend():
    if not gsplat_available():
        pytest.skip("gsplat kernels did not compile (no nvcc)")
    params = [t.float().cuda() for t in _scene(n=200, seed=7)]
    camera = _camera(64, 96, dtype=torch.float32).to("cuda")
    ours = get_gaussian_rasterizer("torch", EXACT).render(*params, camera, 1)
    theirs = get_gaussian_rasterizer("gsplat").render(*params, camera, 1)
    assert (ours.rgb - theirs.rgb).abs().mean() < 1e-3
