"""The Generate form, declared once.

Each input is one :class:`FormField`: its widget, label, default, bounds and server-side check live together, and
the page (:mod:`webui.layout`), the handler's argument order and the checks all read the same declaration
(:func:`form_fields`). The checked values map onto :class:`pipeline.config.RunChoices` names and become a
:class:`pipeline.config.RunConfig` through :func:`pipeline.config.build_run_config`, the function the command line
uses too.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

import gradio as gr

from models.diffusion import DiffusionOptions
from pipeline.config import (
    ASPECTS,
    DEFAULT_PRESET,
    MODES,
    PRESETS,
    ModelConfig,
    RunChoices,
    RunConfig,
    build_run_config,
    preset_values,
)

CUSTOM_QUALITY = "custom"  # quality choice that takes size / steps / splat iterations from the advanced settings
PHOTO_TYPES = (".png", ".jpg", ".jpeg", ".webp")
DEPTH_TYPES = (".png", ".npy", ".npz")
_DEFAULT_SIZE, _DEFAULT_STEPS, _DEFAULT_SPLAT_ITERS = preset_values(DEFAULT_PRESET)


@dataclass(frozen=True)
class Limits:
    """What the server accepts, whatever the browser sends (API callers skip the browser's widgets)."""

    max_prompt_chars: int = 500
    """Longest prompt / negative prompt; the text encoders read ~77 tokens anyway."""

    max_upload: str = "25mb"
    """Largest upload (Gradio answers 413 above it); a 24-megapixel JPEG is ~10 MB."""

    max_pixels: int = 40_000_000
    """Largest decoded photo, checked from the file header before decoding (decompression bombs)."""

    min_side: int = 64
    """Smallest photo side; smaller leaves too little context for outpainting and depth."""

    seed_max: int = 2**32 - 1
    """Seeds are unsigned 32-bit (what numpy and diffusers generators accept everywhere)."""

    steps: tuple[int, int] = (1, 100)
    """Diffusion steps; beyond 100 the images stop improving and the GPU time runs out."""

    guidance: tuple[float, float] = (0.0, 20.0)
    """Classifier-free guidance scale; above 20 images saturate."""

    side: tuple[int, int] = (64, 1024)
    """Working width/height in pixels; rounded down to a multiple of 8. 1024 keeps a 360 run inside GPU memory."""

    fov_deg: tuple[float, float] = (30.0, 120.0)
    """Horizontal field of view; outside this range the views barely overlap or distort badly."""

    splat_iters: tuple[int, int] = (0, 3000)
    """Splat fitting iterations (0 = export the initialised splats)."""


@dataclass(frozen=True)
class FormDefaults:
    """What the form shows when the page opens; every value defaults to the run configuration's own default."""

    mode: str = RunChoices.mode
    quality: str = DEFAULT_PRESET
    aspect: str = RunChoices.aspect
    negative_prompt: str = RunChoices.negative_prompt
    seed: int = RunChoices.seed
    size: tuple[int, int] = _DEFAULT_SIZE
    """(W, H) in the advanced settings (used when the quality is custom)."""
    steps: int = _DEFAULT_STEPS
    guidance: float = DiffusionOptions.guidance
    fov_deg: float | None = RunChoices.fov
    """None (blank) = focal length equal to the image width (≈ 53.13°)."""
    splat_iters: int = _DEFAULT_SPLAT_ITERS
    video: bool = RunChoices.video
    renderer: str = RunChoices.renderer

    @classmethod
    def for_preset(cls, preset: str, **changes) -> FormDefaults:
        """Defaults that open the form at ``preset`` (its size, steps and splat iterations in the sliders)."""
        size, steps, splat_iters = preset_values(preset)
        return cls(**{"quality": preset, "size": size, "steps": steps, "splat_iters": splat_iters, **changes})


Kind = Literal["file", "text", "choice", "int", "float", "flag"]
Widget = Literal["file", "textbox", "dropdown", "radio", "number", "slider", "checkbox"]


@dataclass(frozen=True)
class FormField:
    """One input of the Generate form: how it looks and what the server accepts."""

    name: str
    """Argument name of the handler (and of the API); a :class:`RunChoices` name where one exists."""

    label: str
    kind: Kind
    """What the server accepts: file path, text, one of ``choices``, a bounded integer/float, or a flag."""

    widget: Widget
    default: Any = None
    bounds: tuple[float, float] | None = None
    """Inclusive range for numbers; for text, (0, maximum length)."""

    choices: tuple[str, ...] = ()
    optional: bool = False
    """None (blank) is accepted and means "the run configuration's default"."""

    advanced: bool = False
    """Shown inside the "Advanced settings" accordion."""

    step: float | None = None
    info: str | None = None
    file_types: tuple[str, ...] = ()
    missing: str = ""
    """Message when a required value is missing."""

    diffusion_only: bool = False
    """Only the diffusion outpainter reads it: hidden on a page serving the offline profile (the server still
    checks it, so API callers keep the same argument list)."""

    extra: dict = field(default_factory=dict)
    """Further keyword arguments of the Gradio component (placeholder, lines, elem_id, ...)."""

    def component(self, visible: bool = True, render: bool = True) -> gr.components.Component:
        """The Gradio input for this field.

        Args:
            visible: False hides the widget (its value still reaches the handler).
            render: False creates it outside the page layout, to be placed later with ``.render()``.
        """
        common = dict(label=self.label, visible=visible, render=render, **self.extra)
        if self.info:
            common["info"] = self.info
        if self.widget == "file":
            return gr.File(file_types=list(self.file_types), **common)
        if self.widget == "textbox":
            return gr.Textbox(value=self.default, max_length=int(self.bounds[1]), **common)
        if self.widget == "dropdown":
            return gr.Dropdown(choices=list(self.choices), value=self.default, **common)
        if self.widget == "radio":
            return gr.Radio(choices=list(self.choices), value=self.default, **common)
        if self.widget == "checkbox":
            return gr.Checkbox(value=self.default, **common)
        low, high = self.bounds
        if self.widget == "slider":
            return gr.Slider(low, high, value=self.default, step=self.step, **common)
        precision = 0 if self.kind == "int" else None
        return gr.Number(value=self.default, minimum=low, maximum=high, precision=precision, **common)

    def check(self, value):
        """The value the server uses. Raises ``gr.Error`` naming the field and what it accepts."""
        if self.kind == "flag":
            return bool(value)
        if value is None or (self.kind == "file" and not value):
            if self.kind == "text":
                return ""
            if self.optional:
                return None
            raise gr.Error(self.missing or f"{self.label} is required.")
        if self.kind == "file":
            if not isinstance(value, str):
                raise gr.Error(f"{self.label} must be an uploaded file.")
            return value
        if self.kind == "text":
            if not isinstance(value, str):
                raise gr.Error(f"{self.label} must be text.")
            limit = int(self.bounds[1])
            if len(value) > limit:
                raise gr.Error(f"{self.label} is {len(value)} characters long; at most {limit} are allowed.")
            return value.strip()
        if self.kind == "choice":
            if value not in self.choices:
                raise gr.Error(f"{self.label} must be one of: {', '.join(self.choices)}.")
            return value
        return check_number(value, self.label, self.bounds, integer=self.kind == "int")


def check_number(value, name: str, bounds: tuple[float, float], *, integer: bool) -> float | int:
    """``value`` as a finite number within ``bounds``, else a ``gr.Error`` naming the field and the range."""
    low, high = bounds
    if isinstance(value, bool):
        raise gr.Error(f"{name} must be a number between {low:g} and {high:g}.")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise gr.Error(f"{name} must be a number between {low:g} and {high:g}.") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise gr.Error(f"{name} must be between {low:g} and {high:g}.")
    if integer:
        if number != int(number):
            raise gr.Error(f"{name} must be a whole number.")
        return int(number)
    return number


def form_fields(limits: Limits, defaults: FormDefaults, renderers: tuple[str, ...]) -> tuple[FormField, ...]:
    """Every input of the Generate form, in the handler's (and the API's) argument order."""
    text = (0, limits.max_prompt_chars)
    return (
        FormField(
            "image",
            "Photo (PNG, JPEG or WEBP)",
            "file",
            "file",
            file_types=PHOTO_TYPES,
            missing="Upload a photo first (PNG, JPEG or WEBP), or pick one of the examples.",
            extra={"elem_id": "photo"},
        ),
        FormField(
            "prompt",
            "Prompt",
            "text",
            "textbox",
            default="",
            bounds=text,
            extra={"placeholder": "what the rest of the scene should contain", "lines": 2},
        ),
        FormField("negative_prompt", "Negative prompt", "text", "textbox", defaults.negative_prompt, bounds=text),
        # Only the named camera paths: a JSON path would make the server open a file the user names.
        FormField(
            "mode",
            "Mode",
            "choice",
            "dropdown",
            defaults.mode,
            choices=MODES,
            info="single view · stage (a few views in front) · 360 (all around) · sphere (+ up/down)",
        ),
        FormField("seed", "Seed", "int", "number", defaults.seed, bounds=(0, limits.seed_max)),
        FormField("randomize_seed", "Random seed", "flag", "checkbox", False),
        FormField("quality", "Quality", "choice", "dropdown", defaults.quality, choices=(*PRESETS, CUSTOM_QUALITY)),
        FormField(
            "aspect",
            "Aspect ratio",
            "choice",
            "radio",
            defaults.aspect,
            choices=ASPECTS,
            info="keep the photo's aspect (longest side from the size) or crop to exactly width × height",
        ),
        FormField(
            "depth",
            "Depth map for the photo (optional: 16-bit PNG in mm, .npy/.npz in m)",
            "file",
            "file",
            optional=True,
            advanced=True,
            file_types=DEPTH_TYPES,
        ),
        FormField(
            "steps",
            "Diffusion steps",
            "int",
            "slider",
            defaults.steps,
            limits.steps,
            step=1,
            advanced=True,
            diffusion_only=True,
        ),
        FormField(
            "guidance",
            "Guidance",
            "float",
            "slider",
            defaults.guidance,
            limits.guidance,
            0.5,
            advanced=True,
            diffusion_only=True,
        ),
        FormField("width", "Width", "int", "slider", defaults.size[0], limits.side, step=8, advanced=True),
        FormField("height", "Height", "int", "slider", defaults.size[1], limits.side, step=8, advanced=True),
        FormField(
            "fov_deg",
            "Field of view (°; blank = focal length equal to the width, ≈ 53.13°)",
            "float",
            "number",
            defaults.fov_deg,
            limits.fov_deg,
            optional=True,
            advanced=True,
        ),
        FormField(
            "splat_iters",
            "Splat iterations (0 = no fit)",
            "int",
            "slider",
            defaults.splat_iters,
            limits.splat_iters,
            step=1,
            advanced=True,
        ),
        FormField(
            "video",
            "Render a fly-through video",
            "flag",
            "checkbox",
            defaults.video,
            info="an MP4 orbit in the downloads; adds a few seconds (see the estimate)",
        ),
        FormField(
            "renderer",
            "Point renderer (reprojection)",
            "choice",
            "dropdown",
            defaults.renderer if defaults.renderer in renderers else renderers[0],
            choices=renderers,
            advanced=True,
        ),
    )


PRESET_FIELDS = ("width", "height", "steps", "splat_iters")
"""The advanced inputs a quality preset sets (and that switch the quality to custom when moved)."""


@dataclass(frozen=True)
class JobInputs:
    """The Generate form after checking: the photo and depth paths, and the run configuration."""

    image_path: str
    depth_path: str | None
    config: RunConfig

    @property
    def seed(self) -> int:
        return self.config.scene.seed


def check_form(fields_: tuple[FormField, ...], values: tuple, models: ModelConfig = ModelConfig()) -> JobInputs:
    """Check every Generate input on the server and build the run configuration.

    Args:
        fields_: the form declaration (:func:`form_fields`).
        values: the handler's arguments, in the declaration's order.
        models: the model choice the server was started with (the form does not change it).

    Raises:
        gr.Error: a value the user can fix, with a message naming the field.
    """
    if len(values) != len(fields_):
        raise gr.Error(f"/generate takes {len(fields_)} inputs ({', '.join(f.name for f in fields_)}).")
    checked = {spec.name: spec.check(value) for spec, value in zip(fields_, values)}
    seed_bounds = next(spec.bounds for spec in fields_ if spec.name == "seed")
    if checked.pop("randomize_seed"):
        checked["seed"] = secrets.randbelow(int(seed_bounds[1]) + 1)
    return JobInputs(checked.pop("image"), checked.pop("depth"), form_run_config(checked, models))


def form_run_config(checked: dict, models: ModelConfig = ModelConfig()) -> RunConfig:
    """The run configuration for checked form values (through :func:`pipeline.config.build_run_config`).

    A preset quality takes size, steps and splat iterations from the preset; "custom" takes them from the form.
    """
    quality = checked["quality"]
    choices = dict(
        mode=checked["mode"],
        prompt=checked["prompt"],
        negative_prompt=checked["negative_prompt"],
        seed=checked["seed"],
        aspect=checked["aspect"],
        fov=checked["fov_deg"],
        guidance=checked["guidance"],
        video=checked["video"],
        renderer=checked["renderer"],
        profile=models.profile,
        outpainter=models.outpainter,
        depth_model=models.depth_model,
        completer=models.completer,
        model_options=models.options,
    )
    if quality == CUSTOM_QUALITY:
        quality = DEFAULT_PRESET
        choices.update(
            size=(checked["width"], checked["height"]), steps=checked["steps"], splat_iters=checked["splat_iters"]
        )
    try:
        return build_run_config(quality, **choices)
    except ValueError as err:
        raise gr.Error(str(err)) from None


def apply_quality(quality):
    """Show a preset's values in the advanced settings (custom leaves them as they are)."""
    if quality not in PRESETS:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    (width, height), steps, splat_iters = preset_values(quality)
    return width, height, steps, splat_iters
