"""The splats themselves, and how they are made from the fused point cloud.

Parameters are stored raw (pre-activation), the way 3DGS/gsplat store and export them:
scale = exp(scales), opacity = sigmoid(opacities), quaternion = normalise(quats) in w, x, y, z order,
colour = max(0, 0.5 + SH(dir) · [sh0, shN]) with SH_C0 · sh0 the view-independent part.

Initialisation follows the point renderer (:class:`renderers.points.TorchPointRenderer`): each point becomes an
isotropic splat whose standard deviation is the point's footprint radius (``cloud.radii``: half a pixel at the
depth it was lifted from, grown by sqrt(stride) when :func:`pipeline.job.thin_cloud` thins the cloud), nearly
opaque. A splat is a soft footprint, though: its 2D variance also holds the rasteriser's 0.3 px² low-pass filter,
so with the points' own colours each pixel blends its neighbours. :func:`pipeline.splats.colors.solve_colors`
then solves for the colours that reproduce the frames through that blur (the fit does it before its first step).

Measured on the synthetic room (``evaluation.splat_scenes``, stage, 128×96, CGLS 5 iterations), PSNR on the
training views / on three held-out views against the exact scene, dB:

==========================  =====================  =====================
initial splats               training views         held-out views
==========================  =====================  =====================
point cloud (z-buffer)       100 / 31.8 / 43.0      29.9 / 31.4 / 17.4
σ = radius, own colours      30.3 / 28.4 / 32.3     28.6 / 30.6 / 17.8
σ = radius, solved colours   38.5 / 35.2 / 35.1     33.5 / 31.8 / 17.8
σ = radius / 2, solved       40.4 / 32.3 / 33.6     29.5 / 29.4 / 17.5
σ = 1.5 radius / 2, solved   39.0 / 34.7 / 36.4     32.3 / 31.8 / 17.7
==========================  =====================  =====================

Narrower splats match the lifting view better but leave gaps from any other view, so σ = radius stays.
(View 0 re-renders its own points exactly through the z-buffer; the third held-out view looks up past what the
path saw.) Opacity 0.8-0.97 and σ × 0.8-1.25 move these by ≤ 0.5 dB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from core.cameras import Camera
from core.types import PointCloud
from renderers.gaussians import SH_C0, GaussianRender, RasterSettings, get_gaussian_rasterizer

INIT_OPACITY = 0.9
"""Initial opacity: nearly opaque so an unfitted scene already looks like the point cloud (neighbouring
footprints overlap, so coverage is ~1), yet below ALPHA_MAX so gradients still flow through transmittance."""
RADIUS_GROWTH_TOLERANCE = 1.0 + 1e-4
"""merge_to_resolution grows a radius only when half a fitting pixel beats it by more than rounding (a cloud
lifted at the fitting resolution keeps its radii exactly)."""
KNN_SCALE_RATIO_CAP = 4.0
"""With ``scale_source`` "knn"/"max", a splat is at most this many footprint radii wide: isolated points at depth
edges have far neighbours and would otherwise become huge smears."""


@dataclass
class Splats:
    """A set of 3D Gaussians, stored raw (pre-activation) as in 3DGS PLY files and gsplat."""

    means: Tensor  # [N, 3] world (OpenCV axes)
    scales: Tensor  # [N, 3] log standard deviations
    quats: Tensor  # [N, 4] w, x, y, z (need not be unit; normalised when used)
    opacities: Tensor  # [N] logits
    sh0: Tensor  # [N, 1, 3] DC SH coefficient
    shN: Tensor  # [N, (d + 1)² - 1, 3] higher-order SH coefficients (d = sh_degree)

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return math.isqrt(self.shN.shape[1] + 1) - 1

    @property
    def colors(self) -> Tensor:  # [N, (d + 1)², 3]
        return torch.cat([self.sh0, self.shN], dim=1)

    @property
    def rgb(self) -> Tensor:  # [N, 3] the view-independent colour
        return (0.5 + SH_C0 * self.sh0[:, 0]).clamp(0, 1)

    def detach(self) -> Splats:
        return Splats(*(t.detach().clone() for t in self.tensors()))

    def to(self, device: torch.device | str) -> Splats:
        return Splats(*(t.to(device) for t in self.tensors()))

    def select(self, keep: Tensor) -> Splats:  # keep: [N] bool or long indices
        return Splats(*(t[keep] for t in self.tensors()))

    def tensors(self) -> tuple[Tensor, ...]:
        """The six raw tensors in field order (means, scales, quats, opacities, sh0, shN)."""
        return (self.means, self.scales, self.quats, self.opacities, self.sh0, self.shN)

    def render(
        self,
        camera: Camera,
        rasterizer: str = "auto",
        settings: RasterSettings = RasterSettings(),
        background: Tensor | None = None,  # [3]
    ) -> GaussianRender:
        """Render with the named backend (see :func:`renderers.gaussians.get_gaussian_rasterizer`)."""
        return get_gaussian_rasterizer(rasterizer, settings, self.means.device).render(
            self.means,
            self.quats,
            torch.exp(self.scales),
            torch.sigmoid(self.opacities),
            self.colors,
            camera,
            sh_degree=self.sh_degree,
            background=background,
        )


@dataclass(frozen=True)
class SplatInitConfig:
    """How splats are made from the fused point cloud."""

    sh_degree: int = 0
    """Spherical-harmonic degree 0-3. 0 = view-independent colour (what Gradio's viewer shows anyway; generated
    frames rarely constrain view dependence). Higher degrees start at zero and are fitted."""

    scale_source: Literal["radius", "knn", "max"] = "radius"
    """Splat size: "radius" = each point's footprint radius (tiles the view it came from; the best held-out PSNR
    measured, see the module docstring); "knn" = half the mean distance to the nearest neighbours (closes gaps on
    surfaces seen at a grazing angle); "max" = the larger of "radius" and "knn" (fewest holes from off-path views,
    blurriest), knn capped at KNN_SCALE_RATIO_CAP radii."""

    scale_multiplier: float = 1.0
    """Multiplies every initial standard deviation."""

    knn_neighbors: int = 3
    """Neighbours averaged for the "knn" size (3DGS uses 3)."""

    opacity: float = INIT_OPACITY
    """Initial opacity of every splat, in (0, 1)."""


def init_from_cloud(cloud: PointCloud, config: SplatInitConfig = SplatInitConfig()) -> Splats:
    """Splats that look like the point cloud: one isotropic, nearly opaque Gaussian per point.

    Args:
        cloud: the fused cloud; ``radii`` are world-space footprint radii (half a pixel at the lifting depth,
            larger after thinning).
        config: size rule, opacity and SH degree.

    Returns:
        One splat per point, colours from the cloud, identity rotations.

    Raises:
        ValueError: on mismatched shapes, non-finite points, radii <= 0 or settings out of range.

    Example:
        >>> from core.types import PointCloud
        >>> ids = torch.zeros(5, dtype=torch.long)
        >>> cloud = PointCloud(torch.rand(5, 3), torch.rand(5, 3), torch.full((5,), 0.01), ids)
        >>> init_from_cloud(cloud).scales.shape
        torch.Size([5, 3])
    """
    n = len(cloud)
    if cloud.points.ndim != 2 or cloud.points.shape[-1] != 3:
        raise ValueError(f"cloud.points must be [N, 3], got {tuple(cloud.points.shape)}")
    if cloud.colors.shape != cloud.points.shape or cloud.radii.shape != (n,):
        raise ValueError(
            f"cloud colors/radii must be [N, 3]/[N] with N={n}, "
            f"got {tuple(cloud.colors.shape)}/{tuple(cloud.radii.shape)}"
        )
    if not 0 <= config.sh_degree <= 3:
        raise ValueError(f"sh_degree must be in 0..3, got {config.sh_degree}")
    if not 0.0 < config.opacity < 1.0:
        raise ValueError(f"initial opacity must be in (0, 1), got {config.opacity}")
    if config.scale_source not in ("radius", "knn", "max"):
        raise ValueError(f"scale_source must be 'radius', 'knn' or 'max', got {config.scale_source!r}")
    if not config.scale_multiplier > 0:
        raise ValueError(f"scale_multiplier must be > 0, got {config.scale_multiplier}")
    points = cloud.points
    finite = torch.isfinite(points).all(dim=-1) & torch.isfinite(cloud.radii) & (cloud.radii > 0)
    if not bool(finite.all()):
        raise ValueError(f"cloud has {int((~finite).sum())} points with non-finite position or radius <= 0")
    radius = cloud.radii.to(points.dtype)
    if config.scale_source in ("knn", "max") and n > config.knn_neighbors:
        knn = _knn_half_distance(points, config.knn_neighbors)
        knn = torch.minimum(knn, KNN_SCALE_RATIO_CAP * radius)
        sigma = knn if config.scale_source == "knn" else torch.maximum(knn, radius)
    else:
        sigma = radius
    sigma = sigma * config.scale_multiplier
    colors = cloud.colors.to(points.dtype).clamp(0, 1)
    extra = (config.sh_degree + 1) ** 2 - 1
    return Splats(
        means=points.clone(),
        scales=torch.log(sigma)[:, None].repeat(1, 3),
        quats=torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=points.dtype, device=points.device).repeat(n, 1),
        opacities=torch.full(
            (n,), math.log(config.opacity / (1 - config.opacity)), dtype=points.dtype, device=points.device
        ),
        sh0=((colors - 0.5) / SH_C0)[:, None, :],
        shN=torch.zeros(n, extra, 3, dtype=points.dtype, device=points.device),
    )


def _knn_half_distance(points: Tensor, k: int) -> Tensor:  # [N, 3] -> [N]
    """Half the mean distance to the k nearest other points (scipy cKDTree, on CPU)."""
    from scipy.spatial import cKDTree  # noqa: PLC0415 - only needed for knn sizing

    xyz = points.detach().cpu().double().numpy()
    dist, _ = cKDTree(xyz).query(xyz, k=k + 1)
    mean = torch.from_numpy(dist[:, 1:].mean(axis=1)).to(points)
    return 0.5 * mean.clamp_min(1e-12)


def merge_to_resolution(
    cloud: PointCloud,
    cameras: dict[int, Camera],
) -> PointCloud:
    """At most one point per pixel of its source view at the given cameras' resolution, sized to that pixel.

    The grow loop lifts one point per generated pixel at the working size; the fit sees the frames at a lower
    resolution (``SplatConfig.fit_max_side``). Splats denser than the fit's pixels cannot be told apart by it, and
    each pixel then composites 20-30 of them (their footprints are at least the 0.55 px low-pass filter wide).
    Keeping the first point of every (view, fit pixel) cell and growing its radius to half a fit pixel at its depth
    tiles each view once at the fit's resolution; the colour solve then gives each splat the area's colour.

    Args:
        cloud: the fused (possibly already thinned) cloud; ``source_view`` names the frame that lifted each point.
        cameras: the camera of each source view at the fitting resolution, keyed by frame index.

    Returns:
        The merged cloud (the input itself when no cell holds more than one point). Points whose source view has
        no camera are kept as they are.
    """
    if len(cloud) == 0:
        return cloud
    views = [v for v in torch.unique(cloud.source_view).tolist() if v in cameras]
    radius = cloud.radii.clone()
    offset = len(cloud)  # keys below this are the kept-as-they-are points' own indices
    keys = torch.arange(len(cloud), device=cloud.points.device)
    for view in views:
        members = torch.nonzero(cloud.source_view == view).squeeze(1)
        camera = cameras[view]
        w2c, K = camera.world_to_cam.to(cloud.points), camera.K.to(cloud.points)
        cam = cloud.points[members] @ w2c[:3, :3].T + w2c[:3, 3]  # [M, 3]
        z = cam[:, 2].clamp_min(1e-6)
        col = torch.floor(K[0, 0] * cam[:, 0] / z + K[0, 2]).long().clamp(0, camera.width - 1)
        row = torch.floor(K[1, 1] * cam[:, 1] / z + K[1, 2]).long().clamp(0, camera.height - 1)
        keys[members] = offset + row * camera.width + col
        pixel_radius = 0.5 * z / K[0, 0]  # half a fitting pixel at the point's depth
        grow = pixel_radius > radius[members] * RADIUS_GROWTH_TOLERANCE
        radius[members] = torch.where(grow, pixel_radius, radius[members])
        offset += camera.height * camera.width
    _, first = _first_of_each(keys)
    if first.numel() == len(cloud) and torch.equal(radius, cloud.radii):
        return cloud
    return PointCloud(cloud.points[first], cloud.colors[first], radius[first], cloud.source_view[first])


def _first_of_each(keys: Tensor) -> tuple[Tensor, Tensor]:  # [N] long -> unique keys [U], first index of each [U]
    unique, inverse = torch.unique(keys, return_inverse=True)
    positions = torch.arange(keys.numel(), device=keys.device)
    first = torch.full((unique.numel(),), keys.numel(), dtype=torch.long, device=keys.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    return unique, first
