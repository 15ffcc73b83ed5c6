"""Diffusion outpainting: any diffusers inpainting pipeline behind the ``Outpainter`` protocol.

Supported: Stable Diffusion 2 inpainting (default, ``sd2-community/stable-diffusion-2-inpainting``), SDXL
inpainting (``diffusers/stable-diffusion-xl-1.0-inpainting-0.1``), and any local diffusers inpainting folder. The
pipeline class comes from the folder's ``model_index.json``; unknown classes go through
``AutoPipelineForInpainting``.

What :meth:`DiffusionOutpainter.outpaint` guarantees:

* the output equals the input bit for bit outside ``fill_mask``;
* the *hole* (``fill_mask`` minus the caller's ``known_mask``) gets the generated pixels at full weight; the
  generated image is feathered in only over pixels that are known *and* inside ``fill_mask`` (the seam band a
  caller dilates the mask by), rising from 0 next to the untouched pixels to 1 next to the hole. Every output pixel
  is therefore a known pixel, a generated pixel or a mix of the two — never a mix with the zeros a caller may have
  left in the hole (the "dark ring" of issue 13);
* the view runs at the pipeline's training resolution (512 on the long side for SD2, 1024 for SDXL; read from the
  UNet's ``sample_size`` × the VAE's stride) and the result is resized back, so a 512 × 384 view is not fed to
  SDXL at a third of the pixels it was trained on;
* the same image, mask, prompt, seed and settings give the same output (``torch.Generator`` seeded on the
  pipeline's device);
* a set ``cancel`` event stops denoising at the next step and raises :class:`core.components.Cancelled`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from core.cameras import Camera
from core.components import Cancelled
from core.images import to_uint8
from models.hub import ModelSource, default_dtype, load_failed, pick_device, resolve_model

logger = logging.getLogger(__name__)

DEFAULT_OUTPAINTER = "sd2-community/stable-diffusion-2-inpainting"
SDXL_OUTPAINTER = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
OFFLINE_ALTERNATIVE = "PatchMatch outpainting"
LATENT_STRIDE = 8
"""Stable Diffusion's VAE downsamples by 8: pipeline inputs must have sides divisible by 8."""

SDXL_STRENGTH = 0.99
"""The SDXL inpainting 0.1 model card: "strength < 1" (its example uses 0.99); at 1.0 the model ignores the
masked image latents and its fills drift in colour and layout."""

SD_STRENGTH = 1.0
"""SD2 inpainting was trained to generate the masked region from pure noise (its card's examples use 1.0)."""

MASK_ON = 0.01
"""A pixel of a resized mask counts as "generate" once any of its source pixels did (the mask grows rather than
shrinks when the view is scaled to the training resolution)."""

_PIPELINE_CLASSES = ("StableDiffusionInpaintPipeline", "StableDiffusionXLInpaintPipeline")
_SDXL_CLASSES = ("StableDiffusionXLInpaintPipeline",)

Dtype = Literal["float16", "bfloat16", "float32"]
Prefill = Literal["none", "patchmatch"]


@dataclass(frozen=True)
class DiffusionOptions:
    """Settings of the diffusion outpainter."""

    steps: int = 30
    """Denoising steps."""

    guidance: float = 7.5
    """Classifier-free guidance scale (1 turns guidance off)."""

    strength: float | None = None
    """How much of the masked region is re-noised (1 = generate from scratch; < 1 keeps some of the masked image's
    layout). None = the model card's value: 0.99 for SDXL inpainting, 1.0 for SD2 inpainting."""

    feather_px: int = 4
    """At most this many known pixels next to the hole (inside ``fill_mask``, i.e. the seam band the caller
    dilated the mask by) blend from the known image into the generated one. The hole itself always gets the
    generated pixels at full weight. 0 = hard paste of the whole ``fill_mask``."""

    prefill: Prefill = "none"
    """What the hole holds before denoising: "none" (whatever the caller left there), "patchmatch" (PatchMatch
    fill; with ``strength`` < 1 the diffusion then refines plausible texture instead of inventing layout)."""

    resolution: int | None = None
    """Long side, in pixels, the pipeline runs at: the view is scaled to it, outpainted and scaled back. None =
    the model's training resolution (UNet sample size × VAE stride: 512 for SD2, 1024 for SDXL); 0 = the view's
    own size (padded to a multiple of 8)."""

    cpu_offload: bool = False
    """Keep sub-models on the CPU and move each to the GPU only while it runs (accelerate's model offload;
    slower, but SDXL then fits in about 6 GB of GPU memory). Ignored on a CPU-only run."""

    dtype: Dtype | None = None
    """Weights' dtype: "float16", "bfloat16" or "float32"; None = float16 on CUDA, float32 elsewhere."""

    fp16_variant: bool = True
    """When running in float16, load the repository's ``*.fp16.safetensors`` files if it has them (half the
    download and disk); a folder without them loads its full-precision files instead."""

    def __post_init__(self):
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or not 1 <= self.steps <= 500:
            raise ValueError(f"diffusion steps must be an integer in [1, 500], got {self.steps!r}")
        if not isinstance(self.guidance, (int, float)) or not 0.0 <= float(self.guidance) <= 50.0:
            raise ValueError(f"diffusion guidance must be a number in [0, 50], got {self.guidance!r}")
        if self.strength is not None and (
            not isinstance(self.strength, (int, float)) or not 0.0 < float(self.strength) <= 1.0
        ):
            raise ValueError(f"diffusion strength must be in (0, 1] or None (model default), got {self.strength!r}")
        if not isinstance(self.feather_px, int) or isinstance(self.feather_px, bool) or not 0 <= self.feather_px <= 64:
            raise ValueError(f"feather_px must be an integer in [0, 64], got {self.feather_px!r}")
        if self.prefill not in ("none", "patchmatch"):
            raise ValueError(f"prefill must be 'none' or 'patchmatch', got {self.prefill!r}")
        if self.resolution is not None and (
            not isinstance(self.resolution, int) or not (self.resolution == 0 or 64 <= self.resolution <= 4096)
        ):
            raise ValueError(f"resolution must be None, 0 or an integer in [64, 4096], got {self.resolution!r}")
        if self.dtype not in (None, "float16", "bfloat16", "float32"):
            raise ValueError(f"dtype must be float16, bfloat16, float32 or None, got {self.dtype!r}")


def pipeline_class_name(folder: str | Path) -> str | None:
    """``_class_name`` from a diffusers folder's model_index.json (None when unreadable)."""
    try:
        return json.loads((Path(folder) / "model_index.json").read_text())["_class_name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def has_variant_files(folder: str | Path, variant: str = "fp16") -> bool:
    """Whether a diffusers folder holds ``*.{variant}.safetensors`` (or ``.bin``) weight files."""
    folder = Path(folder)
    return any(folder.rglob(f"*.{variant}.safetensors")) or any(folder.rglob(f"*.{variant}.bin"))


def load_inpaint_pipeline(
    source: ModelSource, device: torch.device, dtype: torch.dtype, cpu_offload: bool, fp16_variant: bool = True
):
    """Load a diffusers inpainting pipeline, picking the class from model_index.json.

    In float16 the repository's fp16 weight files are used when present (a local folder is checked first; a
    download tries them and falls back to the full-precision files when the repository has none).
    """
    import diffusers

    class_name = pipeline_class_name(source.location) if source.local else None
    cls = getattr(diffusers, class_name) if class_name in _PIPELINE_CLASSES else diffusers.AutoPipelineForInpainting
    want_variant = fp16_variant and dtype == torch.float16
    if want_variant and source.local and not has_variant_files(source.location):
        logger.info("%s has no fp16 weight files; loading the full-precision ones as float16", source.reference)
        want_variant = False
    if want_variant:
        try:
            pipe = cls.from_pretrained(source.location, dtype=dtype, variant="fp16")
        except (OSError, ValueError) as err:
            logger.info("no fp16 variant for %s (%s); loading the full-precision files", source.reference, err)
            pipe = cls.from_pretrained(source.location, dtype=dtype)
    else:
        pipe = cls.from_pretrained(source.location, dtype=dtype)
    if cpu_offload and device.type != "cpu":
        pipe.enable_model_cpu_offload(device=device)
    else:
        if cpu_offload:
            logger.warning("cpu_offload is ignored on a CPU-only run")
        pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def trained_resolution(pipe) -> int | None:
    """Long side the pipeline's UNet was trained at (UNet ``sample_size`` × VAE stride), None when unknown."""
    unet = getattr(pipe, "unet", None)
    sample_size = getattr(getattr(unet, "config", None), "sample_size", None)
    scale = getattr(pipe, "vae_scale_factor", None)
    if isinstance(sample_size, (tuple, list)):
        sample_size = max(sample_size)
    if not isinstance(sample_size, int) or not isinstance(scale, int):
        return None
    return sample_size * scale


def default_strength(pipe) -> float:
    """The model card's strength: :data:`SDXL_STRENGTH` for SDXL inpainting, :data:`SD_STRENGTH` otherwise."""
    return SDXL_STRENGTH if type(pipe).__name__ in _SDXL_CLASSES else SD_STRENGTH


def working_size(height: int, width: int, resolution: int | None) -> tuple[int, int]:
    """(height, width) a view runs at: long side ``resolution`` (aspect kept), sides multiples of 8.

    ``resolution`` None or 0 keeps the view's size, rounded up to multiples of 8 (it is padded, not scaled).
    """
    if not resolution:
        return math.ceil(height / LATENT_STRIDE) * LATENT_STRIDE, math.ceil(width / LATENT_STRIDE) * LATENT_STRIDE
    scale = resolution / max(height, width)
    return (
        max(LATENT_STRIDE, round(height * scale / LATENT_STRIDE) * LATENT_STRIDE),
        max(LATENT_STRIDE, round(width * scale / LATENT_STRIDE) * LATENT_STRIDE),
    )


def _distance(seed: Tensor, max_steps: int) -> Tensor:  # [H, W] bool -> [H, W] float
    """Chessboard distance to the nearest ``seed`` pixel (0 on it), ``inf`` beyond ``max_steps``."""
    dist = torch.full(seed.shape, math.inf)
    dist[seed] = 0.0
    reached = seed.float()[None, None]  # [1, 1, H, W]
    for step in range(1, max_steps + 1):
        reached = F.max_pool2d(reached, 3, stride=1, padding=1)  # pads with -inf: outside the image is no seed
        newly = (reached[0, 0] > 0) & torch.isinf(dist)
        dist[newly] = float(step)
    return dist


def seam_weights(
    fill_mask: Tensor,  # [H, W] bool, the pixels to repaint
    known_mask: Tensor,  # [H, W] bool, pixels that hold real content (may reach into fill_mask)
    feather_px: int,
) -> Tensor:  # [H, W] float in [0, 1], weight of the generated image
    """Blend weight of the generated image.

    * 0 outside ``fill_mask`` (those pixels are never touched);
    * 1 on the hole, ``fill_mask & ~known_mask``;
    * on the seam band ``fill_mask & known_mask`` it rises from the untouched pixels to the hole: a band pixel at
      chessboard distance ``d_out`` from the nearest pixel outside ``fill_mask`` and ``d_hole`` from the nearest
      hole pixel gets ``min(d_out / (d_out + d_hole), 1 - d_hole / (feather_px + 1))``, clamped to [0, 1]. With
      a band narrower than ``feather_px`` this is a linear ramp across the band; a wider band blends only its
      ``feather_px`` pixels next to the hole and keeps the rest as known.

    ``feather_px`` 0 pastes the generated image over the whole ``fill_mask``.

    Example:
        >>> fill = torch.zeros(1, 8, dtype=torch.bool); fill[:, 3:] = True
        >>> known = torch.zeros(1, 8, dtype=torch.bool); known[:, :5] = True
        >>> [round(w, 3) for w in seam_weights(fill, known, 4)[0].tolist()]
        [0.0, 0.0, 0.0, 0.333, 0.667, 1.0, 1.0, 1.0]
    """
    if feather_px <= 0:
        return fill_mask.float()
    hole = fill_mask & ~known_mask
    band = fill_mask & known_mask
    if not bool(band.any()):
        return fill_mask.float()
    reach = feather_px + 1
    d_hole = _distance(hole, reach)
    d_out = _distance(~fill_mask, reach).clamp_max(reach)  # a farther outside gives the same weight (see above)
    ramp = torch.minimum(d_out / (d_out + d_hole), 1 - d_hole / reach).clamp(0, 1)
    return torch.where(hole, torch.ones_like(ramp), torch.where(band, ramp, torch.zeros_like(ramp)))


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:  # [B, C, h, w] -> [B, C, H, W]
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def _prefill_hole(image: Tensor, hole: Tensor, seed: int) -> Tensor:  # [H, W, 3], [H, W] -> [H, W, 3]
    """Fill the hole with PatchMatch (models.offline); fall back to OpenCV Telea when it is not available."""
    try:
        from models.offline import PatchMatchOutpainter
    except ImportError:
        import cv2
        import numpy as np

        rgb = to_uint8(image)
        holes = hole.cpu().numpy().astype(np.uint8)
        filled = cv2.inpaint(rgb, holes, 5, cv2.INPAINT_TELEA).astype(np.float32) / 255
        return torch.where(hole[..., None], torch.from_numpy(filled).to(image), image)
    return PatchMatchOutpainter().outpaint(image, hole, "", "", seed)


class DiffusionOutpainter:
    """``Outpainter`` backed by a loaded diffusers inpainting pipeline (load once with :func:`load_outpainter`).

    Args:
        pipe: a diffusers inpainting pipeline (already on its device).
        options: generation settings; :meth:`configure` changes steps/guidance later.
        name: what to call it in descriptions and errors.
    """

    def __init__(self, pipe, options: DiffusionOptions = DiffusionOptions(), name: str = "diffusion"):
        self.pipe = pipe
        self.options = options
        self.name = name

    def configure(self, steps: int | None = None, guidance: float | None = None) -> None:
        """Change the number of denoising steps and/or the guidance scale (validated)."""
        changes = {k: v for k, v in {"steps": steps, "guidance": guidance}.items() if v is not None}
        self.options = replace(self.options, **changes)

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    @property
    def strength(self) -> float:
        """The strength actually used: the option, else the model card's value for this pipeline."""
        return float(self.options.strength) if self.options.strength is not None else default_strength(self.pipe)

    @property
    def resolution(self) -> int | None:
        """Long side the pipeline runs at (None/0 = the view's own size)."""
        if self.options.resolution is not None:
            return self.options.resolution
        return trained_resolution(self.pipe)

    def outpaint(
        self,
        image: Tensor,  # [H, W, 3] float in [0, 1]
        fill_mask: Tensor,  # [H, W] bool, True = generate here
        prompt: str,
        negative_prompt: str,
        seed: int,
        cancel: threading.Event | None = None,
        *,
        camera: Camera | None = None,  # which view is being filled: unused (see core.components.Outpainter)
        view: int | None = None,
        known_mask: Tensor | None = None,  # [H, W] bool, pixels of ``image`` that hold real content
    ) -> Tensor:  # [H, W, 3], equal to ``image`` outside ``fill_mask``
        # 1. Check inputs
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image must be [H, W, 3], got {tuple(image.shape)}")
        for name, mask in (("fill_mask", fill_mask), ("known_mask", known_mask)):
            if mask is not None and (mask.shape != image.shape[:2] or mask.dtype != torch.bool):
                raise ValueError(
                    f"{name} must be bool [H, W] = {tuple(image.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}"
                )
        if not bool(fill_mask.any()):
            return image.clone()
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled before outpainting")
        opts = self.options
        height, width = image.shape[:2]
        known = ~fill_mask if known_mask is None else (known_mask.to(fill_mask.device) | ~fill_mask)
        hole = fill_mask & ~known

        # 2. Pre-fill the hole (optional); scale to the working size (or pad to the VAE's stride)
        source = _prefill_hole(image, hole, seed) if opts.prefill == "patchmatch" and bool(hole.any()) else image
        work_h, work_w = working_size(height, width, self.resolution)
        rgb = source.permute(2, 0, 1)[None].float().cpu()  # [1, 3, H, W]
        mask = fill_mask.float().cpu()[None, None]  # [1, 1, H, W]
        if self.resolution:
            rgb = _resize(rgb, (work_h, work_w)).clamp(0, 1)
            mask = (_resize(mask, (work_h, work_w)) > MASK_ON).float()
        else:
            pad = (0, work_w - width, 0, work_h - height)
            rgb = F.pad(rgb, pad, mode="replicate")
            mask = F.pad(mask, pad, value=1.0)  # padding = generate

        # 3. Denoise, checking the cancel event between steps
        def on_step_end(pipe, step, timestep, callback_kwargs):
            if cancel is not None and cancel.is_set():
                pipe._interrupt = True
            return callback_kwargs

        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        with torch.inference_mode():
            result = self.pipe(
                prompt=prompt,
                negative_prompt=negative_prompt or None,
                image=rgb,
                mask_image=mask,
                height=work_h,
                width=work_w,
                num_inference_steps=opts.steps,
                guidance_scale=float(opts.guidance),
                strength=self.strength,
                generator=generator,
                output_type="pt",
                callback_on_step_end=on_step_end,
            )
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled during outpainting")
        generated = result.images[0].float().cpu()[None]  # [1, 3, h, w]
        if not bool(generated.isfinite().all()):
            raise RuntimeError(
                f"{self.name} produced invalid values (NaN/inf); run it in float32 "
                "(--models.diffusion.dtype float32 on the command line)"
            )
        if self.resolution:
            generated = _resize(generated, (height, width))
        generated = generated[0, :, :height, :width].permute(1, 2, 0).clamp(0, 1)  # [H, W, 3]

        # 4. The hole at full weight, the seam band feathered over known pixels, everything else untouched
        generated = generated.to(image.device, image.dtype)
        weight = seam_weights(fill_mask.cpu(), known.cpu(), opts.feather_px).to(image.device, image.dtype)
        weight = weight[..., None]  # [H, W, 1]
        blended = image * (1 - weight) + generated * weight
        blended = torch.where(hole[..., None], generated, blended)
        return torch.where(fill_mask[..., None], blended, image)


def load_outpainter(
    reference: str = DEFAULT_OUTPAINTER,
    *,
    device: str | torch.device | None = None,
    options: DiffusionOptions = DiffusionOptions(),
    allow_download: bool = True,
) -> DiffusionOutpainter:
    """Load a diffusers inpainting pipeline by Hub id or folder, once, and wrap it as an ``Outpainter``.

    Raises:
        ModelUnavailableError: the weights are not on this machine and cannot (or may not) be downloaded.
    """
    source = resolve_model(
        reference,
        what="outpainter",
        marker_file="model_index.json",
        offline_alternative=OFFLINE_ALTERNATIVE,
        allow_download=allow_download,
    )
    device = pick_device(device)
    dtype = default_dtype(device, options.dtype)
    try:
        pipe = load_inpaint_pipeline(source, device, dtype, options.cpu_offload, options.fp16_variant)
    except (OSError, ValueError) as err:
        raise load_failed("outpainter", source, err, OFFLINE_ALTERNATIVE) from err
    logger.info("loaded outpainter %s (%s) on %s as %s", reference, type(pipe).__name__, device, dtype)
    return DiffusionOutpainter(pipe, options, name=reference)
