"""What each fitting step renders and compares against: frame targets, jittered supporting / held-out views, and
the per-frame pose correction.

Masks: each frame supervises the pixels it generated (``Frame.fill_mask``) dilated by ``mask_dilate_px``, so the
overlap band with earlier frames is shared; the rest of a later frame is a re-projection of earlier frames (blurrier
than the frame that made it), so it is not allowed to pull the splats. ``mask_mode="all"`` supervises every pixel
(Invisible Stitch's choice). A target is cropped to its mask's bounding box (plus the SSIM window): pixels outside
never enter the loss, so rendering them would be wasted work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from kornia.geometry.conversions import axis_angle_to_rotation_matrix
from torch import Tensor

from core.cameras import Camera, rigid_inverse, rotation_yaw_pitch
from core.components import RenderResult
from core.masks import dilate
from core.types import Frame
from pipeline.splats.losses import SSIM_WINDOW

SupportRenderer = Callable[[Camera], RenderResult]
"""Renders a supporting or held-out view's target (e.g. the point cloud through a PointRenderer)."""


@dataclass
class Target:
    """One view the fit renders, with what it should look like."""

    camera: Camera
    rgb: Tensor  # [H, W, 3]
    depth: Tensor  # [H, W], 0 = unknown
    mask: Tensor  # [H, W] bool, supervised pixels
    weight: float
    frame: int  # index into frames for pose refinement; -1 for supporting and held-out views


def frame_target(
    frame: Frame,
    index: int,
    mask_mode: Literal["generated", "all"],
    mask_dilate_px: int,
    fit_max_side: int | None,
    weight: float = 1.0,
) -> Target:
    """A frame as a fitting target: its supervised mask, downscaled to ``fit_max_side``, cropped to the mask.

    Raises:
        ValueError: on mismatched shapes or an unknown ``mask_mode``.
    """
    rgb, depth, fill = frame.rgb, frame.depth, frame.fill_mask
    H, W = rgb.shape[:2]
    if rgb.shape != (H, W, 3) or depth.shape != (H, W) or fill.shape != (H, W):
        raise ValueError(
            f"frame {frame.index}: rgb/depth/fill_mask must be [H, W, 3]/[H, W]/[H, W], got "
            f"{tuple(rgb.shape)}/{tuple(depth.shape)}/{tuple(fill.shape)}"
        )
    if mask_mode == "all":
        mask = torch.ones(H, W, dtype=torch.bool, device=rgb.device)
    elif mask_mode == "generated":
        mask = dilate(fill.bool(), mask_dilate_px)
    else:
        raise ValueError(f"mask_mode must be 'generated' or 'all', got {mask_mode!r}")
    camera = frame.camera
    if fit_max_side is not None and max(H, W) > fit_max_side:
        factor = fit_max_side / max(H, W)
        h, w = max(1, round(H * factor)), max(1, round(W * factor))
        rgb = F.interpolate(rgb.permute(2, 0, 1)[None], size=(h, w), mode="area")[0].permute(1, 2, 0)
        depth = F.interpolate(depth[None, None], size=(h, w), mode="nearest")[0, 0]
        mask = F.interpolate(mask[None, None].float(), size=(h, w), mode="nearest")[0, 0] > 0.5
        camera = camera.scaled(h, w)
    return crop_to_mask(Target(camera, rgb, depth, mask, weight, index))


def crop_to_mask(target: Target) -> Target:
    """Restrict a target to the bounding box of its mask plus the SSIM window (the loss is unchanged)."""
    grown = dilate(target.mask, SSIM_WINDOW // 2)
    rows = torch.nonzero(grown.any(dim=1)).squeeze(1)
    cols = torch.nonzero(grown.any(dim=0)).squeeze(1)
    if rows.numel() == 0:
        return target
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    cam = target.camera
    if (r0, r1, c0, c1) == (0, cam.height, 0, cam.width):
        return target
    K = cam.K.clone()
    K[0, 2] -= c0
    K[1, 2] -= r0
    return Target(
        Camera(K, cam.world_to_cam, r1 - r0, c1 - c0),
        target.rgb[r0:r1, c0:c1],
        target.depth[r0:r1, c0:c1],
        target.mask[r0:r1, c0:c1],
        target.weight,
        target.frame,
    )


def jittered_camera(camera: Camera, depth: Tensor, jitter_deg: float, jitter_fraction: float, generator) -> Camera:
    """``camera`` turned by up to ``jitter_deg`` in yaw and pitch and moved by up to ``jitter_fraction`` of the
    median known ``depth`` along each camera axis (uniform draws from ``generator``)."""
    draws = torch.rand(5, generator=generator, dtype=torch.float64) * 2 - 1
    valid = depth[depth > 0]
    scene_depth = float(valid.median()) if valid.numel() else 1.0
    delta = torch.eye(4, dtype=torch.float64)  # camera-frame motion: turn (yaw, then pitch), then shift
    delta[:3, :3] = rotation_yaw_pitch(jitter_deg * float(draws[0]), jitter_deg * float(draws[1]))
    delta[:3, 3] = draws[2:] * jitter_fraction * scene_depth
    w2c = (rigid_inverse(delta) @ camera.world_to_cam.double()).to(camera.world_to_cam.dtype)
    return Camera(camera.K, w2c, camera.height, camera.width)


def rendered_target(camera: Camera, render_fn: SupportRenderer, weight: float, fit_max_side: int | None) -> Target:
    """A target rendered by ``render_fn`` (supervising its known pixels), at the fitting resolution."""
    result = render_fn(camera)
    fake = Frame(-1, camera, result.rgb, result.depth, result.known_mask.bool())
    return frame_target(fake, -1, "generated", 0, fit_max_side, weight)


def refined_camera(target: Target, pose_delta: Tensor) -> Camera:  # pose_delta: [F, 6] (axis-angle, shift)
    """The target's camera after its frame's learned rigid correction (differentiable in ``pose_delta``)."""
    if target.frame < 0:
        return target.camera
    d = pose_delta[target.frame]
    w2c = target.camera.world_to_cam.to(d)
    rotation = axis_angle_to_rotation_matrix(d[None, :3])[0]
    correction = torch.cat([torch.cat([rotation, d[3:, None]], dim=1), w2c[3:]], dim=0)
    return Camera(target.camera.K, correction @ w2c, target.camera.height, target.camera.width)
