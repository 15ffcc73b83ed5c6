"""Differentiable Gaussian-splat rasterisers behind one small interface.

Backends (chosen by :func:`get_gaussian_rasterizer`):

* ``"torch"``: pure PyTorch, differentiable through autograd, runs on CPU and on CUDA without nvcc.
  Each Gaussian is evaluated only in a bounded pixel window (its alpha >= 1/255 ellipse); the resulting
  (Gaussian, pixel) pairs are sorted by pixel then depth, cut at early termination, and composited with a
  segmented cumulative product. It equals the dense reference (tests check images and gradients).
* ``"gsplat"``: ``gsplat.rasterization`` (CUDA only; JIT-compiles its kernels, needs nvcc). Imported lazily.
* :func:`rasterize_reference`: a slow, dense, obviously-correct evaluator (every pixel × every Gaussian),
  for tests only.

Conventions are the project's (see :mod:`core.cameras`): OpenCV axes, ``world_to_cam`` 4×4, ``K`` in pixels,
pixel centres at +0.5, z-depth. The image model is gsplat's "classic" one, so both backends agree:

* 2D covariance = J W Σ Wᵀ Jᵀ + ``eps2d``·I (a low-pass filter of ``eps2d`` px², gsplat's default 0.3);
* alpha = min(0.99, opacity · exp(-½ dᵀ Σ₂⁻¹ d)), contributions with alpha < 1/255 are skipped;
* a pixel stops before the Gaussian that would take its transmittance to 1e-4 or below (gsplat's termination);
* colour = Σᵢ cᵢ αᵢ Πⱼ<ᵢ (1 - αⱼ) in depth order, plus background · (1 - total alpha);
* SH colours: c = max(0, SH(dir) + 0.5) with dir = mean - camera centre (gsplat / 3DGS convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

from core.cameras import Camera

# --- the image model (gsplat "classic" rasterisation) ------------------------------------------------------------
ALPHA_MAX = 0.99
"""Alpha is clamped below 1 so transmittance never reaches exactly 0 (keeps gradients alive; 3DGS/gsplat value)."""
ALPHA_MIN = 1.0 / 255.0
"""Contributions below one 8-bit level are skipped (3DGS/gsplat value); this bounds each Gaussian's footprint."""
TRANSMITTANCE_MIN = 1e-4
"""A pixel stops compositing before the Gaussian that would bring its transmittance to this or below (gsplat's
early termination): what lies behind is invisible, and it bounds the per-pixel work."""
FOV_CLAMP_MARGIN = 0.3
"""The Jacobian is evaluated with x/z, y/z clamped to 1.3× the half field of view (gsplat): Gaussians far outside
the frustum would otherwise get huge, unstable screen-space covariances."""
SH_C0 = 0.28209479177387814
"""Zeroth-order real spherical-harmonic basis value, 1 / (2 √π): colour = 0.5 + SH_C0 · f_dc."""
WINDOW_CLASSES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
"""Half-widths (px) of the square windows Gaussians are bucketed into; one vectorised pass per class."""
MAX_CANDIDATES_PER_CHUNK = 4_000_000
"""Gaussian-pixel candidates evaluated at once while building the per-pixel lists (bounds peak memory)."""


@dataclass(frozen=True)
class RasterSettings:
    """How Gaussians are rasterised (shared by every backend where it applies)."""

    eps2d: float = 0.3
    """Screen-space low-pass filter added to every 2D covariance, in px² (gsplat's default)."""

    near: float = 0.01
    """Gaussians whose centre is nearer than this z-depth (scene units) are not drawn."""

    max_per_pixel: int = 256
    """torch backend: at most this many Gaussians (front to back, after early termination) are composited per
    pixel; later ones are dropped. A guard against pathological stacks of faint splats; surfaces terminate far
    earlier, so the image is exact in practice."""

    max_radius_px: int = 64
    """torch backend: a Gaussian's footprint is cut at this many pixels from its centre (bounds the work one huge
    splat can cause); must be one of WINDOW_CLASSES' values or larger."""


@dataclass
class RasterCache:
    """The torch backend's per-view bookkeeping (which Gaussians touch which pixels, in which order), reusable for
    a few steps of a fit: alphas are recomputed exactly for the cached pairs, so only Gaussians that grew past their
    old footprint (or moved) are clipped until the cache is rebuilt."""

    n_gaussians: int
    size: tuple[int, int]  # (height, width)
    near_set: Tensor  # [N'] long, Gaussians kept by the frustum cull
    visible: Tensor  # [M] long, indices into near_set, front to back
    radii: Tensor  # [N'] long
    hits: _Intersections


@dataclass
class GaussianRender:
    """What a rasteriser returns for one camera."""

    rgb: Tensor  # [H, W, 3] composited colour (background blended in)
    alpha: Tensor  # [H, W] accumulated opacity in [0, 1)
    depth_accum: Tensor  # [H, W] Σ wᵢ zᵢ (alpha-weighted z-depth, not normalised)
    means2d: Tensor  # [N, 2] ([1, N, 2] from gsplat) projected centres (u, v) in pixels, in the autograd graph
    radii: Tensor  # [N] long, footprint half-width in pixels; 0 = not drawn in this view
    cache: RasterCache | None = None  # torch backend: pass back as ``reuse`` to skip the binning next time

    @property
    def depth(self) -> Tensor:  # [H, W]
        """Expected z-depth (depth_accum / alpha); 0 where nothing was drawn (the project's 'unknown')."""
        covered = self.alpha > 1e-6
        return torch.where(covered, self.depth_accum / self.alpha.clamp_min(1e-6), torch.zeros_like(self.alpha))


class GaussianRasterizer(Protocol):
    """One backend. ``colors`` are SH coefficients ``[N, K, 3]`` when ``sh_degree`` is given, else RGB ``[N, 3]``."""

    name: str

    def render(
        self,
        means: Tensor,  # [N, 3] world
        quats: Tensor,  # [N, 4] wxyz, need not be normalised
        scales: Tensor,  # [N, 3] standard deviations (activated, > 0)
        opacities: Tensor,  # [N] in [0, 1] (activated)
        colors: Tensor,  # [N, K, 3] SH coefficients or [N, 3] RGB
        camera: Camera,
        sh_degree: int | None = None,
        background: Tensor | None = None,  # [3]
        reuse: RasterCache | None = None,
    ) -> GaussianRender: ...


# --- shared differentiable pieces ----------------------------------------------------------------------------------


def quat_to_rotmat(quats: Tensor) -> Tensor:  # [N, 4] wxyz -> [N, 3, 3]
    """Rotation matrices from (not necessarily unit) quaternions in w, x, y, z order."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(quats.shape[:-1] + (3, 3))  # fmt: skip


def sh_basis(degree: int, dirs: Tensor) -> Tensor:  # [..., 3] unit -> [..., (degree + 1)²]
    """Real spherical-harmonic basis up to ``degree`` (0-3) in the 3DGS/gsplat ordering and signs."""
    if not 0 <= degree <= 3:
        raise ValueError(f"sh degree must be in 0..3, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        c1 = 0.4886025119029199
        out += [-c1 * y, c1 * z, -c1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [
            1.0925484305920792 * xy,
            -1.0925484305920792 * yz,
            0.31539156525252005 * (2 * zz - xx - yy),
            -1.0925484305920792 * xz,
            0.5462742152960396 * (xx - yy),
        ]
    if degree >= 3:
        out += [
            -0.5900435899266435 * y * (3 * xx - yy),
            2.890611442640554 * xy * z,
            -0.4570457994644658 * y * (4 * zz - xx - yy),
            0.3731763325901154 * z * (2 * zz - 3 * xx - 3 * yy),
            -0.4570457994644658 * x * (4 * zz - xx - yy),
            1.445305721320277 * z * (xx - yy),
            -0.5900435899266435 * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def gaussian_colors(
    means: Tensor,  # [N, 3]
    colors: Tensor,  # [N, K, 3] SH or [N, 3] RGB
    camera_center: Tensor,  # [3]
    sh_degree: int | None,
) -> Tensor:  # [N, 3]
    """Per-Gaussian RGB seen from ``camera_center`` (SH evaluated, offset by 0.5 and clamped at 0 like gsplat)."""
    if sh_degree is None:
        if colors.ndim != 2 or colors.shape[-1] != 3:
            raise ValueError(f"RGB colors must be [N, 3] when sh_degree is None, got {tuple(colors.shape)}")
        return colors
    if colors.ndim != 3 or colors.shape[-1] != 3 or colors.shape[1] < (sh_degree + 1) ** 2:
        raise ValueError(
            f"SH colors must be [N, K>={(sh_degree + 1) ** 2}, 3] for degree {sh_degree}, got {tuple(colors.shape)}"
        )
    if sh_degree == 0:  # view-independent: the directions are not needed (6 ms + 2 ms backward at 100k Gaussians)
        return torch.clamp_min(colors[:, 0] * SH_C0 + 0.5, 0.0)
    count = (sh_degree + 1) ** 2
    dirs = torch.nn.functional.normalize(means - camera_center.to(means), dim=-1)
    basis = sh_basis(sh_degree, dirs)  # [N, count]
    return torch.clamp_min((basis[..., None] * colors[:, :count]).sum(dim=1) + 0.5, 0.0)


@dataclass
class ProjectedGaussians:
    """Gaussians in screen space for one camera (differentiable)."""

    means2d: Tensor  # [N, 2] (u, v) pixels
    conics: Tensor  # [N, 3] upper triangle (a, b, c) of the inverse 2D covariance
    cov2d: Tensor  # [N, 2, 2] 2D covariance including the low-pass filter
    depths: Tensor  # [N] camera z
    valid: Tensor  # [N] bool, in front of the near plane with a positive-definite 2D covariance


def project_gaussians(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    camera: Camera,
    settings: RasterSettings,
) -> ProjectedGaussians:
    """EWA splatting: project each 3D Gaussian to a 2D one (first-order, Jacobian at the centre)."""
    w2c = camera.world_to_cam.to(means)
    K = camera.K.to(means)
    rot_w = w2c[:3, :3]
    means_c = means @ rot_w.T + w2c[:3, 3]  # [N, 3]
    z = means_c[:, 2]
    valid = z > settings.near
    z_safe = torch.where(valid, z, torch.ones_like(z))  # keeps the graph finite for culled Gaussians

    M = quat_to_rotmat(quats) * scales[:, None, :]  # [N, 3, 3]  R S
    cov_c = rot_w @ (M @ M.transpose(1, 2)) @ rot_w.T  # [N, 3, 3]

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    lim_x_pos = (camera.width - cx) / fx + FOV_CLAMP_MARGIN * 0.5 * camera.width / fx
    lim_x_neg = cx / fx + FOV_CLAMP_MARGIN * 0.5 * camera.width / fx
    lim_y_pos = (camera.height - cy) / fy + FOV_CLAMP_MARGIN * 0.5 * camera.height / fy
    lim_y_neg = cy / fy + FOV_CLAMP_MARGIN * 0.5 * camera.height / fy
    tx = z_safe * torch.clamp(means_c[:, 0] / z_safe, -lim_x_neg, lim_x_pos)
    ty = z_safe * torch.clamp(means_c[:, 1] / z_safe, -lim_y_neg, lim_y_pos)
    zero = torch.zeros_like(z_safe)
    J = torch.stack([fx / z_safe, zero, -fx * tx / z_safe**2, zero, fy / z_safe, -fy * ty / z_safe**2], dim=-1).reshape(
        -1, 2, 3
    )
    cov2d = J @ cov_c @ J.transpose(1, 2) + settings.eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    a, b, c = cov2d[:, 0, 0], 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0]), cov2d[:, 1, 1]
    det = a * c - b * b
    valid = valid & (det > 0)
    det_safe = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    means2d = torch.stack([fx * means_c[:, 0] / z_safe + cx, fy * means_c[:, 1] / z_safe + cy], dim=-1)
    return ProjectedGaussians(means2d, conics, cov2d, z, valid)


def _alpha(
    conics: Tensor,  # [..., 3]
    delta: Tensor,  # [..., 2] pixel centre - mean
    opacities: Tensor,  # [...]
) -> Tensor:  # [...]
    power = 0.5 * (conics[..., 0] * delta[..., 0] ** 2 + conics[..., 2] * delta[..., 1] ** 2)
    power = power + conics[..., 1] * delta[..., 0] * delta[..., 1]
    alpha = torch.clamp_max(opacities * torch.exp(-power), ALPHA_MAX)
    return torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))


def _check_inputs(means, quats, scales, opacities, colors) -> None:
    n = means.shape[0]
    expected = {"means": (n, 3), "quats": (n, 4), "scales": (n, 3), "opacities": (n,)}
    for name, tensor in (("means", means), ("quats", quats), ("scales", scales), ("opacities", opacities)):
        if tuple(tensor.shape) != expected[name]:
            raise ValueError(f"{name} must have shape {expected[name]}, got {tuple(tensor.shape)}")
    if colors.shape[0] != n:
        raise ValueError(f"colors must have {n} rows like means, got {tuple(colors.shape)}")


# --- reference ----------------------------------------------------------------------------------------------------


def rasterize_reference(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, K, 3] or [N, 3]
    camera: Camera,
    sh_degree: int | None = None,
    background: Tensor | None = None,  # [3]
    settings: RasterSettings = RasterSettings(),
) -> GaussianRender:
    """Slow and obviously correct: every pixel against every Gaussian, full sort, full compositing.

    Memory is O(H·W·N); use it on tiny scenes only (tests).
    """
    _check_inputs(means, quats, scales, opacities, colors)
    # 1. Projection, written out plainly: Σ = R S Sᵀ Rᵀ, Σ_cam = W Σ Wᵀ, Σ₂ = J Σ_cam Jᵀ + eps·I.
    H, W = camera.height, camera.width
    w2c = camera.world_to_cam.to(means)
    K = camera.K.to(means)
    rgb_g = gaussian_colors(means, colors, camera.cam_to_world[:3, 3], sh_degree)  # [N, 3]
    cam = means @ w2c[:3, :3].T + w2c[:3, 3]
    order = torch.argsort(cam[:, 2])  # front to back
    pixels_v, pixels_u = torch.meshgrid(
        torch.arange(H, dtype=means.dtype, device=means.device) + 0.5,
        torch.arange(W, dtype=means.dtype, device=means.device) + 0.5,
        indexing="ij",
    )
    transmittance = torch.ones(H, W, dtype=means.dtype, device=means.device)
    out_rgb = torch.zeros(H, W, 3, dtype=means.dtype, device=means.device)
    out_depth = torch.zeros(H, W, dtype=means.dtype, device=means.device)
    done = torch.zeros(H, W, dtype=torch.bool, device=means.device)
    for i in order.tolist():
        x, y, z = cam[i]
        if float(z.detach()) <= settings.near:
            continue
        R = quat_to_rotmat(quats[i : i + 1])[0]
        S = torch.diag(scales[i])
        sigma_cam = w2c[:3, :3] @ R @ S @ S @ R.T @ w2c[:3, :3].T
        fx, fy = K[0, 0], K[1, 1]
        half_w, half_h = 0.5 * W / fx, 0.5 * H / fy
        xc = z * torch.clamp(
            x / z, -(K[0, 2] / fx + FOV_CLAMP_MARGIN * half_w), (W - K[0, 2]) / fx + FOV_CLAMP_MARGIN * half_w
        )
        yc = z * torch.clamp(
            y / z, -(K[1, 2] / fy + FOV_CLAMP_MARGIN * half_h), (H - K[1, 2]) / fy + FOV_CLAMP_MARGIN * half_h
        )
        J = torch.stack([torch.stack([fx / z, 0 * z, -fx * xc / z**2]), torch.stack([0 * z, fy / z, -fy * yc / z**2])])
        sigma2d = J @ sigma_cam @ J.T + settings.eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
        if float(torch.linalg.det(sigma2d.detach())) <= 0:
            continue
        inv = torch.linalg.inv(sigma2d)
        u = fx * x / z + K[0, 2]
        v = fy * y / z + K[1, 2]
        d = torch.stack([pixels_u - u, pixels_v - v], dim=-1)  # [H, W, 2]
        power = 0.5 * torch.einsum("hwi,ij,hwj->hw", d, inv, d)
        # 2. Alpha and front-to-back compositing, one Gaussian at a time.
        alpha = torch.clamp_max(opacities[i] * torch.exp(-power), ALPHA_MAX)
        alpha = torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))
        done = done | (transmittance * (1 - alpha) <= TRANSMITTANCE_MIN)
        alpha = torch.where(done, torch.zeros_like(alpha), alpha)
        weight = alpha * transmittance
        out_rgb = out_rgb + weight[..., None] * rgb_g[i]
        out_depth = out_depth + weight * z
        transmittance = transmittance * (1 - alpha)
    alpha_total = 1 - transmittance
    if background is not None:
        out_rgb = out_rgb + transmittance[..., None] * background.to(out_rgb)
    z_all = cam[:, 2].where(cam[:, 2] > settings.near, torch.ones_like(cam[:, 2]))
    means2d = torch.stack([K[0, 0] * cam[:, 0] / z_all + K[0, 2], K[1, 1] * cam[:, 1] / z_all + K[1, 2]], dim=-1)
    radii = torch.zeros(means.shape[0], dtype=torch.long, device=means.device)
    return GaussianRender(out_rgb, alpha_total, out_depth, means2d, radii)


# --- fast pure-torch backend -------------------------------------------------------------------------------------


def _window_class(radius: Tensor) -> Tensor:  # [N] long -> [N] long (smallest class >= radius)
    classes = torch.tensor(WINDOW_CLASSES, device=radius.device)
    idx = torch.searchsorted(classes, radius.clamp(1, WINDOW_CLASSES[-1]))
    return classes[idx.clamp_max(len(WINDOW_CLASSES) - 1)]


@dataclass
class _Intersections:
    """Gaussian-pixel pairs that contribute, sorted by pixel and, within a pixel, front to back."""

    gauss: Tensor  # [P] long, index into the depth-sorted visible Gaussians
    pixel: Tensor  # [P] long, row-major pixel id
    first: Tensor  # [P] long, position in these lists of the first pair of the same pixel


@torch.no_grad()
def _intersect(
    means2d: Tensor,  # [M, 2] visible Gaussians sorted front to back
    conics: Tensor,  # [M, 3]
    opacities: Tensor,  # [M]
    radii: Tensor,  # [M] long
    height: int,
    width: int,
    max_per_pixel: int,
) -> _Intersections:
    """Every (Gaussian, pixel) pair with alpha >= ALPHA_MIN, in compositing order, after early termination."""
    device = means2d.device
    M = means2d.shape[0]
    classes = _window_class(radii)
    power_max = torch.log(opacities.clamp_min(ALPHA_MIN) / ALPHA_MIN)  # [M]
    gauss_ids, pixel_ids, alphas = [], [], []
    for r in torch.unique(classes).tolist():
        members = torch.nonzero(classes == r).squeeze(1)
        offsets = torch.arange(-r, r + 1, device=device)
        oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
        ox, oy = ox.reshape(-1), oy.reshape(-1)  # [(2r+1)²]
        per_chunk = max(1, MAX_CANDIDATES_PER_CHUNK // ox.numel())
        for start in range(0, members.numel(), per_chunk):
            g = members[start : start + per_chunk]
            base = torch.floor(means2d[g]).long()  # [G, 2]
            px = base[:, 0:1] + ox  # [G, w]
            py = base[:, 1:2] + oy
            dx = px + 0.5 - means2d[g, 0:1]
            dy = py + 0.5 - means2d[g, 1:2]
            con = conics[g]
            power = 0.5 * (con[:, 0:1] * dx * dx + con[:, 2:3] * dy * dy) + con[:, 1:2] * dx * dy
            # alpha >= ALPHA_MIN  <=>  power <= log(opacity / ALPHA_MIN): no exp over all candidates
            keep = (power <= power_max[g][:, None]) & (px >= 0) & (px < width) & (py >= 0) & (py < height)
            rows, cols = torch.nonzero(keep, as_tuple=True)
            gg = g[rows]
            gauss_ids.append(gg)
            pixel_ids.append(py[rows, cols] * width + px[rows, cols])
            alphas.append(torch.clamp_max(opacities[gg] * torch.exp(-power[rows, cols]), ALPHA_MAX))
    empty = torch.zeros(0, dtype=torch.long, device=device)
    if not gauss_ids:
        return _Intersections(empty, empty, empty)
    gauss, pixel = torch.cat(gauss_ids), torch.cat(pixel_ids)
    # Sort by (pixel, depth rank): the Gaussians are already in depth order, so the rank is the index.
    order = torch.argsort(pixel * (M + 1) + gauss)
    gauss, pixel, alpha = gauss[order], pixel[order], torch.cat(alphas)[order]
    if gauss.numel() == 0:
        return _Intersections(empty, empty, empty)
    first = _segment_first(pixel)
    slot = torch.arange(pixel.numel(), device=device) - first
    # Early termination: keep a pair only while the transmittance after it stays above TRANSMITTANCE_MIN.
    log_after = _segment_cumsum(torch.log1p(-alpha.double()), first)
    keep = (log_after > math.log(TRANSMITTANCE_MIN)) & (slot < max_per_pixel)
    gauss, pixel = gauss[keep], pixel[keep]
    return _Intersections(gauss, pixel, _segment_first(pixel))


def _segment_first(sorted_ids: Tensor) -> Tensor:  # [P] sorted -> [P] index of the first equal element
    _, counts = torch.unique_consecutive(sorted_ids, return_counts=True)
    return torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)


def _segment_cumsum(values: Tensor, first: Tensor) -> Tensor:  # [P], [P] -> [P] inclusive sum within segments
    """Inclusive cumulative sum restarting at every segment (differentiable; use float64 for long lists)."""
    total = torch.cumsum(values, 0)
    before = total - values  # exclusive, global
    return total - before[first]


CULL_SIGMAS = 4.0
"""A Gaussian is kept for a view when its sphere of this many (largest) standard deviations reaches the image
frustum widened by CULL_MARGIN_PX; beyond that its alpha inside the image is below ALPHA_MIN even after the eps2d
low-pass filter (checked: (4σ + 3.5 px)² / 2(σ² + 0.3) > ln 255 for every σ)."""
CULL_MARGIN_PX = 3.0


@torch.no_grad()
def _frustum_candidates(
    means: Tensor,  # [N, 3]
    scales: Tensor,  # [N, 3]
    camera: Camera,
    settings: RasterSettings,
) -> Tensor:  # [N'] long indices of Gaussians that may touch the image
    w2c = camera.world_to_cam.to(means)
    K = camera.K.to(means)
    cam = means @ w2c[:3, :3].T + w2c[:3, 3]
    reach = CULL_SIGMAS * scales.max(dim=-1).values
    x, y, z = cam.unbind(-1)
    keep = z + reach > settings.near
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    margin = CULL_MARGIN_PX
    for slope, coord in (
        ((camera.width - cx + margin) / fx, x),
        ((cx + margin) / fx, -x),
        ((camera.height - cy + margin) / fy, y),
        ((cy + margin) / fy, -y),
    ):  # signed distance outside each side plane (through the camera centre) must be below the reach
        keep &= (coord - slope * z) / torch.sqrt(1 + slope * slope) < reach
    return torch.nonzero(keep).squeeze(1)


class TorchGaussianRasterizer:
    """Pure-PyTorch rasteriser (CPU, or CUDA without nvcc); gradients by autograd."""

    name = "torch"

    def __init__(self, settings: RasterSettings = RasterSettings()):
        self.settings = settings

    def render(
        self,
        means: Tensor,  # [N, 3]
        quats: Tensor,  # [N, 4]
        scales: Tensor,  # [N, 3]
        opacities: Tensor,  # [N]
        colors: Tensor,  # [N, K, 3] or [N, 3]
        camera: Camera,
        sh_degree: int | None = None,
        background: Tensor | None = None,  # [3]
        reuse: RasterCache | None = None,
    ) -> GaussianRender:
        """Render one view. ``reuse`` (a previous render's ``cache`` for the same camera and Gaussians) skips the
        culling and binning; it is ignored when the number of Gaussians or the image size changed."""
        _check_inputs(means, quats, scales, opacities, colors)
        s = self.settings
        H, W = camera.height, camera.width
        n_all = means.shape[0]
        fresh = reuse is None or reuse.n_gaussians != n_all or reuse.size != (H, W)
        # 0. Cull Gaussians that cannot reach the image (cheap, on centres; most of a 360° scene is behind).
        near_set = _frustum_candidates(means, scales, camera, s) if fresh else reuse.near_set  # [N'] long
        means, quats, scales = means[near_set], quats[near_set], scales[near_set]
        opacities, colors = opacities[near_set], colors[near_set]
        # 1. Project (differentiable) and work out each footprint (not differentiable).
        proj = project_gaussians(means, quats, scales, camera, s)
        rgb_g = gaussian_colors(means, colors, camera.cam_to_world[:3, 3], sh_degree)  # [N', 3]
        means2d_all = proj.means2d.new_zeros(n_all, 2).index_copy(0, near_set, proj.means2d)  # [N, 2]
        training = torch.is_grad_enabled() and any(t.requires_grad for t in (quats, scales, opacities, colors))
        if training and not means2d_all.requires_grad:
            # Frozen positions: still expose d(loss)/d(means2d) (densification strategies read it, as in gsplat).
            means2d_all = means2d_all.detach().requires_grad_(True)
        proj.means2d = means2d_all.index_select(0, near_set)
        if fresh:
            cache = self._bin(proj, opacities, near_set, n_all, H, W)
        else:
            cache = reuse
        visible, radii, hits = cache.visible, cache.radii, cache.hits
        # 3. Alpha per pair (differentiable) and front-to-back compositing with a segmented product.
        #    Per-Gaussian values are packed so each pair needs one gather (and one scatter in backward).
        packed = torch.cat(
            [
                proj.means2d,
                proj.conics,
                opacities[:, None],
                rgb_g,
                proj.depths[:, None],
                torch.ones_like(opacities)[:, None],
            ],
            dim=-1,
        )[visible]  # [M, 11]: u, v, conic a b c, opacity, r g b, z, 1
        # torch.split (not indexing) so backward assembles one gradient instead of zero-filling [P, 11] per slice
        pair_uv, pair_conic, pair_opacity, pair_values = packed.index_select(0, hits.gauss).split([2, 3, 1, 5], dim=-1)
        pixel_uv = torch.stack([hits.pixel % W, torch.div(hits.pixel, W, rounding_mode="floor")], dim=-1)
        delta = (pixel_uv.to(means.dtype) + 0.5) - pair_uv  # [P, 2]
        alpha = _alpha(pair_conic, delta, pair_opacity[:, 0])  # [P]
        log_keep = torch.log1p(-alpha.double())  # float64: the global running sum spans the whole image
        trans_before = torch.exp(_segment_cumsum(log_keep, hits.first) - log_keep).to(alpha.dtype)
        weight = alpha * trans_before  # [P]
        # 4. Accumulate r, g, b, z and alpha (the trailing 1) into images in one scatter.
        accum = torch.zeros(H * W, 5, dtype=means.dtype, device=means.device).index_add(
            0, hits.pixel, weight[:, None] * pair_values
        )
        flat_rgb, flat_depth, flat_alpha = accum[:, :3], accum[:, 3], accum[:, 4]
        rgb = flat_rgb.reshape(H, W, 3)
        alpha_img = flat_alpha.reshape(H, W)
        if background is not None:
            rgb = rgb + (1 - alpha_img)[..., None] * background.to(rgb)
        radii_all = radii.new_zeros(n_all).index_copy(0, near_set, radii)
        return GaussianRender(rgb, alpha_img, flat_depth.reshape(H, W), means2d_all, radii_all, cache)

    @torch.no_grad()
    def _bin(
        self, proj: ProjectedGaussians, opacities: Tensor, near_set: Tensor, n_all: int, H: int, W: int
    ) -> RasterCache:
        """Footprints, depth order and the (Gaussian, pixel) pairs of one view (no gradients)."""
        s = self.settings
        # alpha >= ALPHA_MIN  <=>  power <= ln(opacity / ALPHA_MIN); extent along x is sqrt(2 t Σxx).
        thresh = torch.log(torch.clamp_min(opacities.detach(), ALPHA_MIN) / ALPHA_MIN)
        extent = torch.sqrt(2 * thresh[:, None] * torch.stack([proj.cov2d[:, 0, 0], proj.cov2d[:, 1, 1]], -1))
        radius_xy = torch.ceil(torch.nan_to_num(extent, nan=0.0)).clamp_max(s.max_radius_px)
        radius = radius_xy.max(dim=-1).values.long()
        m2d = proj.means2d.detach()
        on_screen = (
            (m2d[:, 0] + radius_xy[:, 0] > 0)
            & (m2d[:, 0] - radius_xy[:, 0] < W)
            & (m2d[:, 1] + radius_xy[:, 1] > 0)
            & (m2d[:, 1] - radius_xy[:, 1] < H)
        )
        drawn = proj.valid & (opacities.detach() >= ALPHA_MIN) & (radius > 0) & on_screen
        radii = torch.where(drawn, radius, torch.zeros_like(radius))
        visible = torch.nonzero(drawn).squeeze(1)
        visible = visible[torch.argsort(proj.depths.detach()[visible], stable=True)]
        # 2. Which Gaussians touch which pixel, in compositing order (indices only).
        conics, opac = proj.conics.detach(), opacities.detach()
        hits = _intersect(m2d[visible], conics[visible], opac[visible], radii[visible], H, W, s.max_per_pixel)
        return RasterCache(n_all, (H, W), near_set, visible, radii, hits)


# --- gsplat backend ------------------------------------------------------------------------------------------------


def gsplat_available() -> bool:
    """True when CUDA is present and gsplat's kernels compile/load (first call may take minutes to JIT)."""
    if not torch.cuda.is_available():
        return False
    try:
        from gsplat.cuda._backend import _C  # noqa: PLC0415 - lazy: importing triggers the JIT build
    except Exception:  # noqa: BLE001 - any build/import failure means "not available"
        return False
    return _C is not None


class GsplatRasterizer:
    """``gsplat.rasterization`` on CUDA (classic mode, the same image model as the torch backend)."""

    name = "gsplat"

    def __init__(self, settings: RasterSettings = RasterSettings()):
        self.settings = settings

    def render(
        self,
        means: Tensor,  # [N, 3]
        quats: Tensor,  # [N, 4]
        scales: Tensor,  # [N, 3]
        opacities: Tensor,  # [N]
        colors: Tensor,  # [N, K, 3] or [N, 3]
        camera: Camera,
        sh_degree: int | None = None,
        background: Tensor | None = None,  # [3]
        reuse: RasterCache | None = None,  # unused: gsplat bins on the GPU every call
    ) -> GaussianRender:
        import gsplat  # noqa: PLC0415 - lazy: CUDA-only dependency

        _check_inputs(means, quats, scales, opacities, colors)
        if sh_degree is not None:
            colors = colors[:, : (sh_degree + 1) ** 2]
        out, alphas, info = gsplat.rasterization(
            means,
            quats,
            scales,
            opacities,
            colors,
            camera.world_to_cam.to(means)[None],
            camera.K.to(means)[None],
            camera.width,
            camera.height,
            near_plane=self.settings.near,
            eps2d=self.settings.eps2d,
            sh_degree=sh_degree,
            packed=False,
            render_mode="RGB+D",
            backgrounds=None,
        )
        rgb = out[0, ..., :3]
        alpha = alphas[0, ..., 0]
        if background is not None:
            rgb = rgb + (1 - alpha)[..., None] * background.to(rgb)
        means2d = info["means2d"]  # [1, N, 2]: the tensor in the graph, so retain_grad() on it works
        radii = info["radii"][0]
        radii = radii.max(dim=-1).values.long() if radii.ndim == 2 else radii.long()
        return GaussianRender(rgb, alpha, out[0, ..., 3], means2d, radii)


def get_gaussian_rasterizer(
    name: Literal["auto", "torch", "numba", "gsplat"] = "auto",
    settings: RasterSettings = RasterSettings(),
    device: torch.device | str | None = None,
) -> GaussianRasterizer:
    """A rasteriser by name. ``auto`` picks gsplat when the data lives on CUDA (``device``) and gsplat's kernels
    are available; for CPU data it picks the compiled backend (numba) when numba imports, else the torch one."""
    if name == "torch":
        return TorchGaussianRasterizer(settings)
    if name in ("numba", "auto") and (device is None or torch.device(device).type == "cpu"):
        try:
            from renderers.gaussians_numba import NumbaGaussianRasterizer  # noqa: PLC0415 - lazy: optional numba
        except ImportError:
            if name == "numba":
                raise ValueError("gaussian rasterizer 'numba' needs the numba package; use 'torch' or 'auto'") from None
            return TorchGaussianRasterizer(settings)
        return NumbaGaussianRasterizer(settings)
    if name == "numba":
        raise ValueError(f"gaussian rasterizer 'numba' runs on CPU data, got device {device}; use 'gsplat' or 'auto'")
    if name == "gsplat":
        if not gsplat_available():
            raise ValueError("gaussian rasterizer 'gsplat' needs CUDA and a working nvcc; use 'torch' or 'auto'")
        return GsplatRasterizer(settings)
    if name == "auto":
        on_cuda = torch.device(device).type == "cuda"
        return GsplatRasterizer(settings) if on_cuda and gsplat_available() else TorchGaussianRasterizer(settings)
    raise ValueError(f"unknown gaussian rasterizer {name!r}: expected 'auto', 'torch', 'numba' or 'gsplat'")
