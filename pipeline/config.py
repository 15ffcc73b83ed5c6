"""The run configuration: typed dataclasses with a docstring per field, named presets, and the ONE function that
builds a run from a user's choices.

The command line (:mod:`pipeline.__main__`), the web app (``app.py`` / :mod:`webui`) and the Python API all call
:func:`build_run_config`; every setting has one default, decided here (or in the dataclass that owns it:
:class:`models.registry.ModelOptions` for the models, :class:`pipeline.splats.SplatConfig` for splat fitting).

Example:
    >>> config = build_run_config("draft", mode="stage", seed=3)
    >>> config.scene.size, config.splats.iterations, config.splats.seed, config.models.options.diffusion.steps
    ((256, 192), 100, 3, 15)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from core.images import SIZE_MULTIPLE, target_size
from core.masks import KNOWN_ERODE_PX, OUTPAINT_DILATE_PX, SNAP_REL_THRESHOLD, SPARSE_DEPTH_ERODE_PX
from models.registry import PROFILES, ModelOptions
from pipeline.splats import SplatConfig, splat_preset

MODES = ("single", "stage", "360", "sphere")
RENDERERS = ("torch", "pytorch3d")
ASPECTS = ("keep", "crop")
DEFAULT_PRESET = "default"
DEFAULT_NEGATIVE_PROMPT = "blurry, distorted, text, watermark, people"
FIT_MAX_SIDE = 256  # splats are fitted against views downscaled to this side: CPU fitting time grows with pixels
MIN_SIDE = 64  # smaller views leave too little context for outpainting and depth
MAX_SIDE = 1536  # bounded work and memory per view

Preset = Literal["draft", "default", "high"]
Aspect = Literal["keep", "crop"]
Profile = Literal["offline", "generative", "auto"]
Renderer = Literal["torch", "pytorch3d"]


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

    close_ring: bool = True
    """On a level 360° ring, measure each view's depth scale against the metric estimator and spread the drift the
    two chains collected over the ring (pipeline/ring.py) instead of leaving it in the last views."""


@dataclass(frozen=True)
class QualityPreset:
    """A named bundle of the settings people trade for speed."""

    size: tuple[int, int]
    """Working size (width, height); with aspect "keep" its longest side is the photo's longest side."""

    steps: int
    """Diffusion denoising steps (generative outpainters)."""

    splats: str
    """Name of the splat-fitting preset (:data:`pipeline.splats.SPLAT_PRESETS`) that sets the iterations."""


PRESETS: dict[str, QualityPreset] = {
    "draft": QualityPreset(size=(256, 192), steps=15, splats="draft"),
    "default": QualityPreset(size=(512, 384), steps=30, splats="default"),
    "high": QualityPreset(size=(768, 576), steps=50, splats="high"),
}


@dataclass(frozen=True)
class SceneConfig:
    """What to generate."""

    mode: str = "360"
    """Camera path: single, stage, 360, sphere, or a path to a JSON file (see README "Custom paths")."""

    size: tuple[int, int] = PRESETS[DEFAULT_PRESET].size
    """Working size (width, height) in pixels, each side a multiple of 8 (see :func:`working_size`)."""

    aspect: Aspect = "keep"
    """"keep": the photo's aspect ratio, longest side = the longest side of ``size``; "crop": exactly ``size``,
    the photo scaled to cover it and centre-cropped. Never stretched."""

    hfov_deg: float | None = None
    """Horizontal field of view of every view; None uses focal = image width (≈ 53.13°, as Invisible Stitch)."""

    seed: int = 0
    """Seed for every random choice (outpainting, view order and jitter of splat fitting); the same seed gives the
    same output bytes."""

    prompt: str = ""
    """What the scene should contain (used by generative outpainters)."""

    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    """What the outpainter should avoid."""

    grow: GrowConfig = field(default_factory=GrowConfig)
    """Settings of the grow loop."""


@dataclass(frozen=True)
class ModelConfig:
    """Which models a run uses, and their options (see :func:`models.registry.build_components`)."""

    profile: Profile = "auto"
    """"offline" (no weights), "generative" (diffusion + learned depth) or "auto" (generative when the weights
    are in the local Hugging Face cache, else offline)."""

    outpainter: str | None = None
    """Override the profile's outpainter: "patchmatch", "telea", "sd2", "sdxl", a diffusers folder or a Hub id."""

    depth_model: str | None = None
    """Override the profile's depth model: "prior", an alias (da2-metric-indoor, ...), a folder or a Hub id."""

    completer: str | None = None
    """Override the depth completer: "aligned", a 5-channel ZoeDepth folder / Hub id, or an Invisible Stitch .pt."""

    options: ModelOptions = field(default_factory=ModelOptions)
    """Model options (diffusion steps/guidance/strength/feather/offload/dtype, depth and completer options)."""


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs besides the photo (and its optional depth map). Build it with
    :func:`build_run_config`."""

    preset: str = DEFAULT_PRESET
    """The quality preset the run started from (draft / default / high)."""

    scene: SceneConfig = field(default_factory=SceneConfig)
    """Mode, size, aspect handling, field of view, seed, prompts and the grow loop."""

    splats: SplatConfig = field(default_factory=SplatConfig)
    """Splat fitting (iterations 0 = export the splats initialised from the cloud, unfitted)."""

    video: bool = True
    """Render the fly-through MP4."""

    models: ModelConfig = field(default_factory=ModelConfig)
    """Model choice and options."""


@dataclass(frozen=True)
class RunChoices:
    """What a user chooses for one run (the CLI's flags and the app's form map onto these names one to one).

    A None means "the preset's value" (size, steps, splat iterations) or "the model options' value" (guidance).
    """

    preset: Preset = DEFAULT_PRESET
    """Quality preset: working size, diffusion steps and splat iterations."""

    mode: str = SceneConfig.mode
    """Camera path: single, stage, 360, sphere, or a path .json file."""

    prompt: str = SceneConfig.prompt
    """What the scene should contain."""

    negative_prompt: str = SceneConfig.negative_prompt
    """What the outpainter should avoid."""

    seed: int = SceneConfig.seed
    """Seed for every random choice; the same seed gives the same output bytes."""

    size: tuple[int, int] | None = None
    """Working size (width, height), rounded down to multiples of 8; None = the preset's."""

    aspect: Aspect = SceneConfig.aspect
    """"keep" the photo's aspect (longest side from the size) or "crop" to exactly the size."""

    fov: float | None = SceneConfig.hfov_deg
    """Horizontal field of view in degrees; None = focal length equal to the image width (≈ 53.13°)."""

    steps: int | None = None
    """Diffusion steps (generative outpainters); None = the preset's."""

    guidance: float | None = None
    """Classifier-free guidance scale (generative outpainters); None = the model options' value."""

    splat_iters: int | None = None
    """Splat fitting iterations (0 = export the initialised splats unfitted); None = the preset's."""

    video: bool = RunConfig.video
    """Render the fly-through MP4."""

    renderer: Renderer = GrowConfig.renderer
    """Point renderer for reprojection."""

    profile: Profile = ModelConfig.profile
    """Model profile: offline, generative or auto."""

    outpainter: str | None = None
    """Outpainter override (offline name, alias, local folder or Hub id)."""

    depth_model: str | None = None
    """Depth model override (offline name, alias, local folder or Hub id)."""

    completer: str | None = None
    """Depth completer override (offline name, local folder, Hub id or .pt file)."""

    model_options: ModelOptions = field(default_factory=ModelOptions)
    """Model options; steps and guidance above, when given, replace the diffusion ones."""


CHOICE_NAMES = tuple(f.name for f in fields(RunChoices))


def build_run_config(preset: str = DEFAULT_PRESET, **choices) -> RunConfig:
    """The run configuration for a preset and a user's choices: the one place settings are combined.

    Args:
        preset: "draft", "default" or "high".
        **choices: any field of :class:`RunChoices` except ``preset`` (e.g. ``mode="stage"``, ``seed=3``,
            ``size=(128, 96)``, ``aspect="crop"``, ``steps=10``); None values mean "not chosen".

    Returns:
        The :class:`RunConfig`; the seed reaches the outpainter and splat fitting, the steps the diffusion options.

    Raises:
        ValueError: an unknown choice name, preset, aspect, renderer, profile or mode, or a size that is not two
            positive integers.
    """
    unknown = sorted(set(choices) - set(CHOICE_NAMES) | ({"preset"} & set(choices)))
    if unknown:
        raise ValueError(f"unknown run choice(s) {', '.join(unknown)}: expected {', '.join(CHOICE_NAMES[1:])}")
    picked = RunChoices(preset=preset, **{name: value for name, value in choices.items() if value is not None})
    _check_choice("preset", picked.preset, tuple(PRESETS))
    _check_choice("aspect", picked.aspect, ASPECTS)
    _check_choice("renderer", picked.renderer, RENDERERS)
    _check_choice("profile", picked.profile, PROFILES)
    if picked.mode not in MODES and not str(picked.mode).endswith(".json"):
        raise ValueError(f"unknown mode {picked.mode!r}: expected {', '.join(MODES)} or a path .json file")
    quality = PRESETS[picked.preset]
    size = quality.size if picked.size is None else _size(picked.size)

    diffusion = picked.model_options.diffusion
    diffusion = replace(
        diffusion,
        steps=quality.steps if picked.steps is None else picked.steps,
        guidance=diffusion.guidance if picked.guidance is None else picked.guidance,
    )
    splats = splat_preset(quality.splats, seed=picked.seed, fit_max_side=FIT_MAX_SIDE)
    if picked.splat_iters is not None:
        splats = replace(splats, iterations=picked.splat_iters)
    return RunConfig(
        preset=picked.preset,
        scene=SceneConfig(
            mode=str(picked.mode),
            size=size,
            aspect=picked.aspect,
            hfov_deg=picked.fov,
            seed=picked.seed,
            prompt=picked.prompt,
            negative_prompt=picked.negative_prompt,
            grow=replace(GrowConfig(), renderer=picked.renderer),
        ),
        splats=splats,
        video=picked.video,
        models=ModelConfig(
            profile=picked.profile,
            outpainter=picked.outpainter,
            depth_model=picked.depth_model,
            completer=picked.completer,
            options=replace(picked.model_options, diffusion=diffusion),
        ),
    )


def working_size(photo_width: int, photo_height: int, scene: SceneConfig) -> tuple[int, int]:
    """The (width, height) a photo is worked at: the one sizing rule of the project.

    Sides are rounded DOWN to multiples of 8 (latent diffusion needs them). With ``scene.aspect == "keep"`` the
    photo's aspect ratio is kept and its longest side becomes the longest side of ``scene.size`` (scaled up or
    down); with "crop" the size is ``scene.size`` itself (the photo is then scaled to cover it and centre-cropped
    by :func:`core.images.fit_size`).

    Args:
        photo_width: the decoded photo's width in pixels.
        photo_height: its height.
        scene: the scene settings (size and aspect handling).

    Returns:
        (width, height), each a multiple of 8 within [MIN_SIDE, MAX_SIDE].

    Raises:
        ValueError: the result falls outside [MIN_SIDE, MAX_SIDE] (a very thin photo or a tiny size).
    """
    width, height = _size(scene.size)
    if scene.aspect == "keep":
        width, height = target_size(photo_width, photo_height, None, max(width, height), upscale=True)
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise ValueError(
            f"working size {width}x{height} must have sides between {MIN_SIDE} and {MAX_SIDE} pixels "
            f"(photo {photo_width}x{photo_height}, size {scene.size[0]}x{scene.size[1]}, aspect {scene.aspect})"
        )
    return width, height


def parse_size(text: str) -> tuple[int, int]:
    """``"512x384"`` → ``(512, 384)``.

    Raises:
        ValueError: the text is not two positive integers joined by "x".
    """
    try:
        width, height = (int(part) for part in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like 512x384 (width x height), got {text!r}") from None
    return _size((width, height))


def _size(size) -> tuple[int, int]:
    """(width, height) rounded down to multiples of 8, checked to be positive integers."""
    try:
        width, height = (int(side) for side in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if width < SIZE_MULTIPLE or height < SIZE_MULTIPLE:
        raise ValueError(f"size must be at least {SIZE_MULTIPLE}x{SIZE_MULTIPLE} pixels, got {width}x{height}")
    return width // SIZE_MULTIPLE * SIZE_MULTIPLE, height // SIZE_MULTIPLE * SIZE_MULTIPLE


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}: expected one of {', '.join(map(str, allowed))}")


def is_path_file(mode: str) -> bool:
    """Whether a mode names a JSON path file rather than one of :data:`MODES`."""
    return mode not in MODES and Path(mode).suffix == ".json"


def preset_values(preset: str) -> tuple[tuple[int, int], int, int]:
    """(size, diffusion steps, splat iterations) a preset sets, read from the config it builds (for forms)."""
    config = build_run_config(preset)
    return config.scene.size, config.models.options.diffusion.steps, config.splats.iterations
