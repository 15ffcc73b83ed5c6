"""Point-cloud reprojection with PyTorch3D's ``PointsRasterizer`` (fast on CUDA, very slow on CPU).

PyTorch3D is imported lazily inside :meth:`PyTorch3DPointRenderer.render`, so ``renderers`` imports without it.
Each point is a disc whose pixel radius is the same footprint the torch renderer uses (see
:class:`renderers.points.PointRenderConfig`); the rasterised z-buffer gives depth (the nearest covering point's z,
not interpolated like the torch renderer's), the nearest point's index gives colour, and pinholes / see-through
pixels are filled by the same :func:`renderers.points.fill_pinholes`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from core.cameras import Camera
from core.components import RenderResult
from core.geometry import project
from renderers.points import PointRenderConfig, check_render_inputs, empty_render, fill_pinholes, footprint_px

# PyTorch3D's NDC spans [-1, 1] across the shorter image side, so one pixel is 2 / min(H, W) NDC units.
NDC_SPAN = 2.0


class PyTorch3DPointRenderer:
    """:class:`core.components.PointRenderer` backed by ``pytorch3d.renderer.PointsRasterizer``.

    Args:
        config: footprint, near plane and pinhole-filling settings shared with the torch renderer.
        bin_size: PyTorch3D's coarse-to-fine bin size; None lets PyTorch3D choose (naive rasterisation on CPU,
            binned on CUDA), 0 forces naive rasterisation.
    """

    def __init__(self, config: PointRenderConfig | None = None, bin_size: int | None = None) -> None:
        self.config = config if config is not None else PointRenderConfig()
        self.bin_size = bin_size

    def render(
        self,
        points: Tensor,  # [N, 3] world
        colors: Tensor,  # [N, 3] in [0, 1]
        camera: Camera,
        radii: Tensor | None = None,  # [N] world-space footprint radius; None = the smallest footprint
    ) -> RenderResult:
        """Render the cloud into ``camera`` (same contract as :meth:`renderers.points.TorchPointRenderer.render`).

        Raises:
            ValueError: if the shapes do not fit together (the message shows them).
            ImportError: if PyTorch3D is not installed.
        """
        # 1. Check inputs, import PyTorch3D
        check_render_inputs(points, colors, camera, radii)
        from pytorch3d.renderer import PointsRasterizationSettings, PointsRasterizer
        from pytorch3d.structures import Pointclouds
        from pytorch3d.utils import cameras_from_opencv_projection

        height, width = int(camera.height), int(camera.width)
        config = self.config

        # 2. Keep points in front of the near plane (PyTorch3D itself only drops z < 0)
        uv, z = project(points, camera.K, camera.world_to_cam)
        visible = (z > config.near) & torch.isfinite(uv).all(dim=1) & torch.isfinite(z)
        if radii is not None:
            visible &= torch.isfinite(radii)
        kept = visible.nonzero().squeeze(1)  # [K]
        if kept.numel() == 0:
            return empty_render(camera, points, colors)

        # 3. Disc radius in NDC from the shared pixel footprint (mean focal: PyTorch3D discs are round)
        K = camera.K.to(points)
        focal = 0.5 * float(K[0, 0] + K[1, 1])
        radius_px = footprint_px(None if radii is None else radii[kept], z[kept], focal, config)  # [K]
        radius_ndc = (radius_px * NDC_SPAN / min(height, width)).float()

        # 4. Rasterise (PyTorch3D's kernels are float32); our K already puts the image centre at W/2, H/2,
        #    which is the convention cameras_from_opencv_projection expects
        device = points.device
        w2c = camera.world_to_cam.to(device=device, dtype=torch.float32)
        cameras = cameras_from_opencv_projection(
            R=w2c[None, :3, :3],
            tvec=w2c[None, :3, 3],
            camera_matrix=camera.K.to(device=device, dtype=torch.float32)[None],
            image_size=torch.tensor([[height, width]], device=device),
        )
        settings = PointsRasterizationSettings(
            image_size=(height, width), radius=radius_ndc[None], points_per_pixel=1, bin_size=self.bin_size
        )
        cloud = Pointclouds(points=[points[kept].float()])
        fragments = PointsRasterizer(cameras=cameras, raster_settings=settings)(cloud)
        nearest = fragments.idx[0, ..., 0]  # [H, W] index into the kept points, -1 = none
        zbuf = fragments.zbuf[0, ..., 0]  # [H, W] camera z of the nearest point

        # 5. Images, then pinhole / see-through filling
        known = nearest >= 0
        winner = kept[nearest.clamp_min(0)]  # [H, W] input indices
        depth = torch.where(known, zbuf.to(points.dtype), torch.zeros((), device=device, dtype=points.dtype))
        rgb = torch.where(known[..., None], colors[winner], torch.zeros((), device=device, dtype=colors.dtype))
        return fill_pinholes(rgb, depth, known, config)
