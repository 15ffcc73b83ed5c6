"""Rasterisers behind small interfaces: point renderers (torch z-buffer; PyTorch3D optional).

Example:
    >>> renderer = get_point_renderer("torch")
    >>> type(renderer).__name__
    'TorchPointRenderer'
"""

from __future__ import annotations

from core.components import PointRenderer
from renderers.points import PointRenderConfig, TorchPointRenderer

POINT_RENDERERS = ("torch", "pytorch3d")


def get_point_renderer(name: str = "torch", config: PointRenderConfig | None = None) -> PointRenderer:
    """Build a point renderer by name.

    Args:
        name: "torch" (z-buffer in plain torch, fast on CPU and CUDA) or "pytorch3d" (PyTorch3D's
            ``PointsRasterizer``; imported only when rendering, very slow on CPU).
        config: footprint, near plane and pinhole-filling settings; None uses the defaults.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
    """
    if name == "torch":
        return TorchPointRenderer(config)
    if name == "pytorch3d":
        from renderers.pytorch3d_points import PyTorch3DPointRenderer

        return PyTorch3DPointRenderer(config)
    raise ValueError(f"unknown point renderer {name!r}: expected one of {', '.join(POINT_RENDERERS)}")


__all__ = ["POINT_RENDERERS", "PointRenderConfig", "TorchPointRenderer", "get_point_renderer"]
