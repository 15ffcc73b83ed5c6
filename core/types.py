"""Typed values the scene loop produces (frames, the fused cloud, progress events, the result)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from core.cameras import Camera


@dataclass
class PointCloud:
    """The fused scene geometry."""

    points: Tensor  # [N, 3] world
    colors: Tensor  # [N, 3] in [0, 1]
    radii: Tensor  # [N] world-space footprint radius (half a pixel at the depth it was lifted from)
    source_view: Tensor  # [N] long, index of the frame that created the point

    @staticmethod
    def empty(device=None) -> PointCloud:
        return PointCloud(
            torch.zeros(0, 3, device=device),
            torch.zeros(0, 3, device=device),
            torch.zeros(0, device=device),
            torch.zeros(0, dtype=torch.long, device=device),
        )

    def __len__(self) -> int:
        return self.points.shape[0]

    def cat(self, other: PointCloud) -> PointCloud:
        return PointCloud(
            torch.cat([self.points, other.points]),
            torch.cat([self.colors, other.colors]),
            torch.cat([self.radii, other.radii]),
            torch.cat([self.source_view, other.source_view]),
        )


@dataclass
class Frame:
    """One generated view: what the loop saw of the existing scene, what it made, and what it added to the cloud."""

    index: int
    camera: Camera
    rgb: Tensor  # [H, W, 3] in [0, 1]
    depth: Tensor  # [H, W] z-depth, > 0 everywhere
    fill_mask: Tensor  # [H, W] bool, True = generated in this view (not seen before)
    points_added: int = 0
    known_depth: Tensor | None = None  # [H, W] the cloud rendered into this view before it grew, 0 = unknown
    known_mask: Tensor | None = None  # [H, W] bool, True where the rendered cloud covered the pixel
    lifted_mask: Tensor | None = None  # [H, W] bool, True = pixels lifted into the cloud as new points


@dataclass
class ProgressEvent:
    """Reported through the pipeline's progress callback."""

    stage: str  # "depth", "render", "outpaint", "complete", "snap", "fuse", "splats", "export"
    view: int  # index of the view being worked on (-1 for whole-scene stages)
    num_views: int
    fraction: float  # overall progress in [0, 1]
    message: str = ""


@dataclass
class SceneResult:
    """Everything one run of the loop made."""

    frames: list[Frame]
    cloud: PointCloud
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, summed over views
    points_per_view: list[int] = field(default_factory=list)
