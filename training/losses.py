"""Losses of the depth completers: log-depth L1, gradient matching, SC-Depth's geometry consistency.

All take batched maps ``[B, H, W]`` (0 = no target) and return a scalar mean over the pixels that count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

GRADIENT_SCALES = 3
"""Gradient matching at full, 1/2 and 1/4 resolution (MiDaS's multi-scale gradient loss, 4 scales there; 3 are
enough at 128 x 96)."""

MIN_DEPTH = 1e-3
"""Depths are clamped to this before a log."""


def log_l1(
    pred_log: Tensor,  # [B, H, W] predicted log-depth
    target: Tensor,  # [B, H, W], 0 = no target
    weight: Tensor,  # [B, H, W] per-pixel weight
) -> Tensor:  # []
    """Weighted mean of ``|log pred - log target|`` over pixels with a target (the error is relative: a 5 % miss
    costs the same at 2 m and at 50 m)."""
    valid = (target > 0) & torch.isfinite(target)
    diff = (pred_log - target.clamp_min(MIN_DEPTH).log()).abs()
    w = weight * valid
    return (diff * w).sum() / w.sum().clamp_min(1.0)


def gradient_matching(
    pred_log: Tensor,  # [B, H, W]
    target: Tensor,  # [B, H, W], 0 = no target
) -> Tensor:  # []
    """Multi-scale gradient matching of the log-depth error (sharp, correctly placed depth edges)."""
    valid = ((target > 0) & torch.isfinite(target)).float()
    error = (pred_log - target.clamp_min(MIN_DEPTH).log()) * valid
    total, count = pred_log.new_zeros(()), pred_log.new_zeros(())
    for scale in range(GRADIENT_SCALES):
        if scale:
            error = F.avg_pool2d(error[:, None], 2)[:, 0]
            valid = (F.avg_pool2d(valid[:, None], 2)[:, 0] > 0.999).float()
            error = error * valid
        gx = (error[..., :, 1:] - error[..., :, :-1]).abs() * valid[..., :, 1:] * valid[..., :, :-1]
        gy = (error[..., 1:, :] - error[..., :-1, :]).abs() * valid[..., 1:, :] * valid[..., :-1, :]
        total = total + gx.sum() + gy.sum()
        count = count + valid.sum()
    return total / count.clamp_min(1.0)


def geometry_consistency(
    depth_b: Tensor,  # [B, H, W] predicted depth of view B
    K_b: Tensor,  # [B, 3, 3]
    depth_a: Tensor,  # [B, H, W] depth of view A, 0 = unknown
    K_a: Tensor,  # [B, 3, 3]
    b_to_a: Tensor,  # [B, 4, 4] B's camera frame -> A's
    has_pair: Tensor,  # [B] bool
) -> Tensor:  # []
    """SC-Depth's geometry-consistency loss (Bian et al. 2019, "Unsupervised Scale-consistent Depth").

    Every pixel of B is lifted with its predicted depth, moved into A's frame, and projected into A; its depth
    there ``z_ab`` is compared with A's depth interpolated at the projection ``z_a``:
    ``|z_ab - z_a| / (z_ab + z_a)``, averaged over pixels that land inside A on a pixel with known depth. A's depth
    here is given (true depth, or the depth of a grown view) rather than predicted as in SC-Depth, so the loss ties
    B's prediction to the other view's geometry wherever A sees it.
    """
    batch, height, width = depth_b.shape
    v, u = torch.meshgrid(
        torch.arange(height, device=depth_b.device, dtype=depth_b.dtype) + 0.5,
        torch.arange(width, device=depth_b.device, dtype=depth_b.dtype) + 0.5,
        indexing="ij",
    )
    K_b, K_a, b_to_a = K_b.to(depth_b), K_a.to(depth_b), b_to_a.to(depth_b)
    x = (u[None] - K_b[:, 0, 2, None, None]) / K_b[:, 0, 0, None, None] * depth_b
    y = (v[None] - K_b[:, 1, 2, None, None]) / K_b[:, 1, 1, None, None] * depth_b
    points = torch.stack([x, y, depth_b], dim=-1).reshape(batch, -1, 3)  # [B, HW, 3]
    moved = points @ b_to_a[:, :3, :3].transpose(1, 2) + b_to_a[:, None, :3, 3]  # [B, HW, 3] in A's frame
    z_ab = moved[..., 2]
    safe = torch.where(z_ab > MIN_DEPTH, z_ab, torch.full_like(z_ab, MIN_DEPTH))
    u_a = K_a[:, 0, 0, None] * moved[..., 0] / safe + K_a[:, 0, 2, None]
    v_a = K_a[:, 1, 1, None] * moved[..., 1] / safe + K_a[:, 1, 2, None]
    height_a, width_a = depth_a.shape[-2:]
    grid = torch.stack([u_a / width_a * 2 - 1, v_a / height_a * 2 - 1], dim=-1)[:, None]  # [B, 1, HW, 2]
    known_a = (depth_a > 0).to(depth_b)[:, None]
    sampled = F.grid_sample(depth_a[:, None].to(depth_b), grid, mode="bilinear", align_corners=False)[:, 0, 0]
    coverage = F.grid_sample(known_a, grid, mode="bilinear", align_corners=False)[:, 0, 0]  # [B, HW]
    inside = (grid.abs() < 1).all(dim=-1)[:, 0] & (z_ab > MIN_DEPTH) & (coverage > 0.999)
    inside = inside & has_pair[:, None] & (depth_b.reshape(batch, -1) > 0)
    diff = (z_ab - sampled).abs() / (z_ab + sampled).clamp_min(MIN_DEPTH)
    mask = inside.to(diff)
    return (diff * mask).sum() / mask.sum().clamp_min(1.0)
