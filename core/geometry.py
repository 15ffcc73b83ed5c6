"""Functional geometry core: pure tensor functions, no state.

Conventions are the ones in :mod:`core.cameras`: OpenCV axes, pixel centres at +0.5, z-depth, 0 = unknown.
Device and dtype follow the inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pixel_centers(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:  # [H, W, 2] (u, v)
    """Pixel-centre coordinates (u = column + 0.5, v = row + 0.5)."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype) + 0.5,
        torch.arange(width, device=device, dtype=dtype) + 0.5,
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def transform_points(T: Tensor, points: Tensor) -> Tensor:  # [4, 4], [..., 3] -> [..., 3]
    return points @ T[:3, :3].transpose(0, 1).to(points.dtype) + T[:3, 3].to(points.dtype)


def unproject(depth: Tensor, K: Tensor, cam_to_world: Tensor) -> Tensor:  # [H, W], [3, 3], [4, 4] -> [H, W, 3]
    """Lift every pixel centre to a world point at its z-depth.

    Example:
        >>> K = torch.tensor([[2.0, 0, 1], [0, 2.0, 1], [0, 0, 1]])
        >>> unproject(torch.ones(2, 2), K, torch.eye(4))[0, 0].tolist()
        [-0.25, -0.25, 1.0]
    """
    height, width = depth.shape
    uv = pixel_centers(height, width, device=depth.device, dtype=depth.dtype)
    K = K.to(depth)
    x = (uv[..., 0] - K[0, 2]) / K[0, 0] * depth
    y = (uv[..., 1] - K[1, 2]) / K[1, 1] * depth
    cam = torch.stack([x, y, depth], dim=-1)
    return transform_points(cam_to_world.to(depth), cam)


def project(points: Tensor, K: Tensor, world_to_cam: Tensor) -> tuple[Tensor, Tensor]:  # [N, 3] -> [N, 2], [N]
    """World points to pixel coordinates (u, v) and z-depth. Points behind the camera get z <= 0."""
    cam = transform_points(world_to_cam.to(points), points)
    z = cam[:, 2]
    safe = torch.where(z.abs() > 1e-12, z, torch.full_like(z, 1e-12))
    K = K.to(points)
    u = K[0, 0] * cam[:, 0] / safe + K[0, 2]
    v = K[1, 1] * cam[:, 1] / safe + K[1, 2]
    return torch.stack([u, v], dim=-1), z


def ray_directions(height: int, width: int, K: Tensor) -> Tensor:  # -> [H, W, 3] camera-frame, z = 1
    uv = pixel_centers(height, width, device=K.device, dtype=K.dtype)
    x = (uv[..., 0] - K[0, 2]) / K[0, 0]
    y = (uv[..., 1] - K[1, 2]) / K[1, 1]
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)
