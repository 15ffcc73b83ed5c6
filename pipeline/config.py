"""Configuration dataclasses with a docstring per field, and named presets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from core.masks import KNOWN_ERODE_PX, OUTPAINT_DILATE_PX, SNAP_REL_THRESHOLD, SPARSE_DEPTH_ERODE_PX

MODES = ("single", "stage", "360", "sphere")


@dataclass(frozen=True)
class GrowConfig:
    """Settings of the grow loop (render → outpaint → complete depth → snap → fuse)."""

    known_erode_px: int = KNOWN_ERODE_PX
    """Shrink the rendered known region by this many pixels: its border pixels are partly covered and blend
    foreground with background, so they are regenerated rather than trusted (Invisible Stitch uses 2)."""

    outpaint_dilate_px: int = OUTPAINT_DILATE_PX
    """Grow the inpainter's mask by this many pixels so it repaints across the seam instead of up to it."""

    sparse_erode_px: int = SPARSE_DEPTH_ERODE_PX
    """Erode the known depth handed to the depth completer by this many pixels (edge depths are least reliable)."""

    dedupe_rel_tol: float = 0.03
    """A new pixel whose depth is within this fraction of the existing geometry's rendered depth is a duplicate
    of a point already in the cloud and is not added (revisiting an area adds nothing)."""

    snap_rel_threshold: float = SNAP_REL_THRESHOLD
    """Depth jump, relative to the pixel's depth, above which a pixel straddles a discontinuity and is snapped
    onto the far surface before lifting (no stretched "noodle" points between foreground and background)."""

    point_footprint_px: float = 0.5
    """Each lifted point's world radius is this many pixels at its depth (half a pixel tiles the image)."""

    renderer: str = "torch"
    """Point renderer for reprojection: "torch" (z-buffer, fast on CPU and CUDA) or "pytorch3d"."""


@dataclass(frozen=True)
class SceneConfig:
    """What to generate."""

    mode: str = "360"
    """Camera path: single, stage, 360, sphere, or a path to a JSON file (see README "Custom paths")."""

    size: tuple[int, int] | None = (512, 384)
    """Working size (width, height); sides are rounded to multiples of 8. None keeps the photo's size (≤ 512)."""

    hfov_deg: float | None = None
    """Horizontal field of view of every view; None uses focal = image width (≈ 53.13°, as Invisible Stitch)."""

    seed: int = 0
    """Seed for every random choice; the same seed gives the same output bytes."""

    prompt: str = ""
    """What the scene should contain (used by generative outpainters)."""

    negative_prompt: str = "blurry, distorted, text, watermark, people"
    """What the outpainter should avoid."""

    grow: GrowConfig = field(default_factory=GrowConfig)
    """Settings of the grow loop."""


@dataclass(frozen=True)
class QualityPreset:
    """A named bundle of the settings people trade for speed."""

    size: tuple[int, int]
    splat_iters: int
    steps: int  # diffusion denoising steps (generative profile)


PRESETS: dict[str, QualityPreset] = {
    "draft": QualityPreset(size=(256, 192), splat_iters=100, steps=15),
    "default": QualityPreset(size=(512, 384), splat_iters=300, steps=30),
    "high": QualityPreset(size=(768, 576), splat_iters=1000, steps=50),
}


def with_overrides(config: SceneConfig, **changes) -> SceneConfig:
    """A copy of ``config`` with the given fields replaced (None values are ignored)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})
