"""The numba Gaussian rasteriser against the dense reference and the torch backend (images and gradients).

The numba 2D stage runs in float32 while the reference runs in float64, so the tolerances are float32 ones:
images to 2e-5 absolute (values are O(1); depth_accum O(5) gets 1e-4 relative), gradients to 1e-3 of the largest
reference gradient of the same parameter plus 1e-3 relative. The projection kernel runs in float64 and is checked
against ``project_gaussians`` to 1e-9.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from core.cameras import Camera, intrinsics, look_at
from renderers.gaussians import (
    RasterSettings,
    TorchGaussianRasterizer,
    get_gaussian_rasterizer,
    project_gaussians,
    rasterize_reference,
)

pytest.importorskip("numba")
from renderers.gaussians_numba import (  # noqa: E402
    POWER_CLAMP,
    NumbaGaussianRasterizer,
    _camera_arrays,
    _exp_neg,
    _Project,
)

EXACT = RasterSettings(max_per_pixel=10_000, max_radius_px=10_000)  # torch backend without its guards
IMAGE_ATOL, DEPTH_RTOL = 2e-5, 1e-4
GRAD_REL_TO_MAX, GRAD_RTOL = 1e-3, 1e-3
HARD_CASES = 14  # scenes with at least this many Gaussians get the special ones of _scene
NAMES = ("means", "quats", "scales", "opacities", "colors")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _camera(height=20, width=28, eye=(0.1, 0.05, -0.2), target=(0.3, -0.2, 3.0), dtype=torch.float64) -> Camera:
    w2c = look_at(torch.tensor(eye), torch.tensor(target)).to(dtype)
    return Camera(intrinsics(height, width, 60.0).to(dtype), w2c, height, width)


CAMERAS = {
    "front": _camera(),
    "turned": _camera(eye=(-0.6, 0.3, 0.4), target=(0.4, 0.1, 3.2)),
    "wide-low": _camera(height=18, width=32, eye=(0.2, -0.5, 0.8), target=(-0.2, 0.2, 3.0)),
}


def _scene(n: int = 40, sh_degree: int | None = 1, seed: int = 0, dtype=torch.float64) -> list[torch.Tensor]:
    """Random anisotropic, overlapping Gaussians around z = 3, plus the hard cases: a few behind the camera, a few
    far off-screen (in front, beyond the Jacobian's clamp), one large, some tiny, and a stack of nearly opaque
    ones in the middle so that early termination happens."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * torch.tensor([0.6, 0.4, 0.5], dtype=dtype)
    means = means + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.15 + 0.03
    scales[:, 0] *= 0.3  # anisotropic
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.9 + 0.05
    if n >= HARD_CASES:
        means[0:3, 2] = -means[0:3, 2]  # behind the camera
        means[3:5, 0] = torch.tensor([9.0, -9.0], dtype=dtype)  # far off-screen, in front
        scales[5] = torch.tensor([0.9, 0.7, 0.8], dtype=dtype)  # large: covers most of the image
        scales[6:9] = 0.002  # tiny: footprint set by the eps2d low-pass filter
        # a stack of five equal, nearly opaque Gaussians one behind the other: near its centre the transmittance
        # is about 0.04² after two, so compositing stops before the third, which would take it to ~5e-5
        # (0.97 < ALPHA_MAX: no exact ties with the clamp)
        means[9:14] = torch.tensor([0.2, -0.05, 2.0], dtype=dtype)
        means[9:14, 2] += 0.05 * torch.arange(5, dtype=dtype)
        quats[9:14] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=dtype)  # flat, facing the camera
        scales[9:14], opacities[9:14] = torch.tensor([0.3, 0.25, 0.05], dtype=dtype), 0.97
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g, dtype=dtype)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g, dtype=dtype) * 0.4
    return [means, quats, scales, opacities, colors]


def _objective(out, camera: Camera, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    weights = torch.randn(camera.height, camera.width, 3, generator=g, dtype=torch.float64).to(out.rgb.dtype)
    return (out.rgb * weights).sum() + 0.1 * out.depth_accum.sum() + out.alpha.sum()


def _assert_images_close(ours, theirs) -> None:
    torch.testing.assert_close(ours.rgb, theirs.rgb.to(ours.rgb), atol=IMAGE_ATOL, rtol=0)
    torch.testing.assert_close(ours.alpha, theirs.alpha.to(ours.alpha), atol=IMAGE_ATOL, rtol=0)
    torch.testing.assert_close(
        ours.depth_accum, theirs.depth_accum.to(ours.depth_accum), atol=IMAGE_ATOL, rtol=DEPTH_RTOL
    )


def _assert_grads_close(ours, theirs, names=NAMES) -> None:
    for name, a, b in zip(names, ours, theirs):
        scale = b.abs().max()
        assert scale > 0, f"gradient of {name} is all zero: the test does not exercise it"
        torch.testing.assert_close(
            a, b.to(a), atol=float(GRAD_REL_TO_MAX * scale), rtol=GRAD_RTOL, msg=f"gradient of {name}"
        )


@pytest.mark.parametrize("camera_name", sorted(CAMERAS))
@pytest.mark.parametrize("sh_degree", [None, 0, 1])  # 0: the colour path that skips view directions
def test_numba_matches_dense_reference_images_and_gradients(camera_name, sh_degree):
    camera = CAMERAS[camera_name]
    params = [t.requires_grad_() for t in _scene(sh_degree=sh_degree, seed=hash(camera_name) % 100)]
    background = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64)
    ref = rasterize_reference(*params, camera, sh_degree, background, EXACT)
    ours = NumbaGaussianRasterizer(EXACT).render(*params, camera, sh_degree, background)
    assert ref.alpha.max() > 0.5, "scene should cover part of the image"
    assert ours.rgb.dtype == torch.float64 and ours.rgb.shape == (camera.height, camera.width, 3)
    _assert_images_close(ours, ref)
    _assert_grads_close(
        torch.autograd.grad(_objective(ours, camera), params), torch.autograd.grad(_objective(ref, camera), params)
    )


def test_scene_exercises_the_hard_cases():
    """The scene above really has Gaussians behind and off-screen (not drawn), and pixels that terminate early."""
    camera = CAMERAS["front"]
    params = _scene()
    out = NumbaGaussianRasterizer().render(*params, camera, 1)
    assert (out.radii[:5] == 0).all(), "behind / off-screen Gaussians must not be drawn"
    assert out.radii[5] > 10, "the large Gaussian covers much of the image"
    assert (out.radii > 0).sum() > 20
    u, v = out.means2d[9].detach().long().tolist()
    assert out.alpha[v, u] > 0.998
    hidden = torch.ones(40, dtype=torch.bool)
    hidden[12:14] = False  # the stack's 4th and 5th: behind the 3rd, before which compositing stops there
    without = NumbaGaussianRasterizer().render(*[t[hidden] for t in params], camera, 1)
    assert torch.equal(without.rgb[v, u], out.rgb[v, u]) and torch.equal(without.alpha[v, u], out.alpha[v, u])
    first = torch.ones(40, dtype=torch.bool)
    first[9] = False
    assert not torch.equal(
        NumbaGaussianRasterizer().render(*[t[first] for t in params], camera, 1).rgb[v, u], out.rgb[v, u]
    )


def test_numba_matches_torch_backend_float32_with_means2d_and_radii():
    """A denser float32 scene against the torch backend: images, parameter gradients, d loss / d means2d (what
    densification reads) and footprint radii."""
    params = [t.float().requires_grad_() for t in _scene(n=300, sh_degree=1, seed=5)]
    camera = _camera(48, 64, dtype=torch.float32)
    theirs = TorchGaussianRasterizer(EXACT).render(*params, camera, 1)
    ours = NumbaGaussianRasterizer(EXACT).render(*params, camera, 1)
    _assert_images_close(ours, theirs)
    for out in (ours, theirs):
        out.means2d.retain_grad()
    grads_ours = torch.autograd.grad(_objective(ours, camera), params + [ours.means2d])
    grads_theirs = torch.autograd.grad(_objective(theirs, camera), params + [theirs.means2d])
    _assert_grads_close(grads_ours, grads_theirs, NAMES + ("means2d",))
    assert ours.means2d.shape == (300, 2)
    drawn_ours, drawn_theirs = ours.radii > 0, theirs.radii > 0
    assert torch.equal(drawn_ours, drawn_theirs)
    assert (ours.radii[drawn_ours] - theirs.radii[drawn_ours]).abs().max() <= 1  # same ellipse, own rounding


def test_means2d_gradient_with_frozen_positions():
    """Densification reads d loss / d means2d even when the positions are not optimised (as the torch backend)."""
    means, quats, scales, opacities, colors = _scene(n=30)
    opacities.requires_grad_()
    out = NumbaGaussianRasterizer().render(means, quats, scales, opacities, colors, CAMERAS["front"], 1)
    assert out.means2d.requires_grad
    out.means2d.retain_grad()
    out.rgb.sum().backward()
    assert out.means2d.grad is not None and out.means2d.grad.abs().sum() > 0
    assert opacities.grad is not None


def test_projection_kernel_matches_project_gaussians_float64():
    """The fused projection (values and gradients) equals the torch one, including Gaussians beyond the
    Jacobian's field-of-view clamp."""
    means, quats, scales, _, _ = _scene(n=60, seed=3)
    means[20:26, 0] = torch.linspace(-4.0, 4.0, 6, dtype=means.dtype)  # x/z beyond ±1.3 × half the FOV
    params = [t.requires_grad_() for t in (means, quats, scales)]
    camera = CAMERAS["turned"]
    settings = RasterSettings()
    ref = project_gaussians(*params, camera, settings)
    view, intr = _camera_arrays(camera)
    geometry, valid = _Project.apply(*params, view, intr, settings.eps2d, settings.near)
    assert torch.equal(valid, ref.valid) and (~valid).sum() >= 3
    ours = torch.cat([geometry[:, :5], geometry[:, 5:]], dim=-1)[valid]
    theirs = torch.cat([ref.means2d, ref.conics, ref.depths[:, None]], dim=-1)[valid]
    torch.testing.assert_close(ours, theirs, atol=1e-9, rtol=1e-9)
    weights = torch.randn(valid.sum(), 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    g_ours = torch.autograd.grad((ours * weights).sum(), params)
    g_ref = torch.autograd.grad((theirs * weights).sum(), params)
    for name, a, b in zip(("means", "quats", "scales"), g_ours, g_ref):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-7, msg=f"gradient of {name}")


def test_optimised_camera_gets_gradients_like_the_torch_backend():
    """With a differentiable world_to_cam (pose refinement) the torch projection is used, so the pose gets a
    gradient; it matches the torch backend's."""
    params = [t.float() for t in _scene(n=50, seed=8)]
    base = _camera(dtype=torch.float32)
    grads = []
    for rasterizer in (NumbaGaussianRasterizer(EXACT), TorchGaussianRasterizer(EXACT)):
        w2c = base.world_to_cam.clone().requires_grad_()
        out = rasterizer.render(*params, Camera(base.K, w2c, base.height, base.width), 1)
        grads.append(torch.autograd.grad(_objective(out, base), w2c)[0])
    assert grads[1].abs().max() > 0
    torch.testing.assert_close(grads[0], grads[1], atol=float(1e-3 * grads[1].abs().max()), rtol=1e-3)


def test_empty_view_is_background_and_gradients_are_zero():
    params = [t.requires_grad_() for t in _scene(n=6, sh_degree=None)]
    with torch.no_grad():
        params[0][:, 2] -= 10.0  # all behind the camera
    background = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    out = NumbaGaussianRasterizer().render(*params, CAMERAS["front"], None, background)
    assert torch.allclose(out.rgb, background.expand_as(out.rgb))
    assert (out.alpha == 0).all() and (out.depth == 0).all() and (out.radii == 0).all()
    out.rgb.sum().backward()
    assert all(torch.isfinite(p.grad).all() and (p.grad == 0).all() for p in params)


def test_deterministic_and_safe_from_two_python_threads():
    """Gradients are summed per (tile, Gaussian) entry, never racing: identical bits every time, also when two
    Python threads render at once (the kernels are serialised by a lock)."""
    params = [t.float().requires_grad_() for t in _scene(n=200, seed=9)]
    camera = _camera(40, 56, dtype=torch.float32)
    rasterizer = NumbaGaussianRasterizer()

    def grads():
        return torch.autograd.grad(_objective(rasterizer.render(*params, camera, 1), camera), params)

    first = grads()
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(grads())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    for other in results:
        assert all(torch.equal(a, b) for a, b in zip(first, other))


def test_same_bits_whatever_the_thread_count(monkeypatch):
    """Images and gradients do not depend on how many threads the kernels run on (tiles and Gaussians are summed
    in a fixed order; the vectorised lane sums too)."""
    import renderers.gaussians_numba as backend  # noqa: PLC0415 - patched below

    params = [t.float().requires_grad_() for t in _scene(n=200, seed=4)]
    camera = _camera(40, 56, dtype=torch.float32)
    results = []
    for threads in (1, 2):
        monkeypatch.setattr(backend, "available_cpus", lambda threads=threads: threads)
        out = NumbaGaussianRasterizer().render(*params, camera, 1)
        results.append((out.rgb.detach(), *torch.autograd.grad(_objective(out, camera), params)))
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_color_operator_matches_render_and_its_colour_gradient():
    """The colour solve's linear operator (binned once, colours rewritten per apply) gives the image render() gives
    for the same colours, and its adjoint is render()'s gradient w.r.t. RGB."""
    means, quats, scales, opacities, colors = [t.float() for t in _scene(n=150, sh_degree=None, seed=6)]
    camera = _camera(40, 56, dtype=torch.float32)
    rasterizer = NumbaGaussianRasterizer()
    operator = rasterizer.color_operator(means, quats, scales, opacities, colors, camera)
    g = torch.Generator().manual_seed(3)
    new_colors = torch.rand(colors.shape, generator=g).requires_grad_()
    out = rasterizer.render(means, quats, scales, opacities, new_colors, camera, None)
    torch.testing.assert_close(operator.apply(new_colors), out.rgb.detach(), atol=IMAGE_ATOL, rtol=0)
    residual = torch.randn(camera.height, camera.width, 3, generator=g)
    expected = torch.autograd.grad((out.rgb * residual).sum(), new_colors)[0]
    assert expected.abs().max() > 0
    torch.testing.assert_close(operator.adjoint(residual), expected, atol=1e-5 * float(expected.abs().max()), rtol=1e-5)


def test_rejects_non_cpu_and_bad_shapes():
    means, quats, scales, opacities, colors = _scene(n=4, sh_degree=None)
    with pytest.raises(ValueError, match=r"quats must have shape \(4, 4\), got \(3, 4\)"):
        NumbaGaussianRasterizer().render(means, quats[:3], scales, opacities, colors, CAMERAS["front"])
    with pytest.raises(ValueError, match="runs on CPU data"):
        get_gaussian_rasterizer("numba", device="cuda")


def test_auto_factory_picks_numba_on_cpu():
    assert get_gaussian_rasterizer("auto").name == "numba"
    assert get_gaussian_rasterizer("auto", device="cpu").name == "numba"
    assert get_gaussian_rasterizer("numba", EXACT).settings is EXACT
    assert get_gaussian_rasterizer("torch").name == "torch"


def test_kernel_exp_matches_exp_over_the_range_it_is_used():
    """The kernels' polynomial exp(-power), for every power they can hand it (a tiny negative power from rounding
    at a footprint's centre up to the clamp), within a few float32 ulps of exp; alphas >= ALPHA_MIN need only
    power <= ln 255 ~ 5.5, where it matters most."""
    import numba  # noqa: PLC0415 - the module is skipped without numba

    @numba.njit
    def kernel_exp(powers, out):
        for j in range(powers.shape[0]):
            out[j] = _exp_neg(powers[j])

    powers = np.concatenate([np.linspace(-1e-3, 6.0, 600_001), np.linspace(6.0, POWER_CLAMP, 100_001)])
    powers = powers.astype(np.float32)
    ours = np.empty_like(powers)
    kernel_exp(powers, ours)
    exact = np.exp(-powers.astype(np.float64))
    relative = np.abs(ours.astype(np.float64) - exact) / exact
    assert relative.max() < 4e-7, f"max relative error {relative.max():.2e} at power {powers[relative.argmax()]}"
    assert np.all(np.diff(ours[powers <= 6.0]) <= 0), "exp(-power) must not increase with power"
