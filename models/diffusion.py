"""Diffusion outpainting: any diffusers inpainting pipeline behind the ``Outpainter`` protocol.

Supported: Stable Diffusion 2 inpainting (default, ``sd2-community/stable-diffusion-2-inpainting``), SDXL
inpainting (``diffusers/stable-diffusion-xl-1.0-inpainting-0.1``), and any local diffusers inpainting folder. The
pipeline class comes from the folder's ``model_index.json``; unknown classes go through
``AutoPipelineForInpainting``.

What :meth:`DiffusionOutpainter.outpaint` guarantees:

* the output equals the input bit for bit outside ``fill_mask`` (generated pixels are blended in over a narrow
  feathered band that lies *inside* the mask);
* the same image, mask, prompt, seed and settings give the same output (``torch.Generator`` seeded on the
  pipeline's device);
* any size works: the image is padded to multiples of 8 (the VAE's stride) and cropped back;
* a set ``cancel`` event stops denoising at the next step and raises :class:`core.components.Cancelled`.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path

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

_PIPELINE_CLASSES = ("StableDiffusionInpaintPipeline", "StableDiffusionXLInpaintPipeline")


@dataclass(frozen=True)
class DiffusionOptions:
    """Settings of the diffusion outpainter."""

    steps: int = 30
    """Denoising steps."""

    guidance: float = 7.5
    """Classifier-free guidance scale (1 turns guidance off)."""

    strength: float = 1.0
    """How much of the masked region is re-noised (1 = generate from scratch; < 1 keeps the pre-fill's layout)."""

    feather_px: int = 4
    """Width of the blend band inside the mask's border: generated pixels fade in over this many pixels so the
    seam is invisible, while pixels outside the mask stay exactly as given. 0 = hard paste."""

    prefill: str = "none"
    """What the hole holds before denoising: "none" (whatever the caller left there), "patchmatch" (PatchMatch
    fill; with ``strength`` < 1 the diffusion then refines plausible texture instead of inventing layout)."""

    cpu_offload: bool = False
    """Keep sub-models on the CPU and move each to the GPU only while it runs (needs accelerate; slower, but fits
    SDXL in ~6 GB of GPU memory)."""

    dtype: str | None = None
    """"float16" / "float32" / "bfloat16"; None = float16 on CUDA, float32 elsewhere."""

    def __post_init__(self):
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 500:
            raise ValueError(f"steps must be an integer in [1, 500], got {self.steps!r}")
        if not 0.0 <= float(self.guidance) <= 50.0:
            raise ValueError(f"guidance must be in [0, 50], got {self.guidance!r}")
        if not 0.0 < float(self.strength) <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength!r}")
        if not isinstance(self.feather_px, int) or not 0 <= self.feather_px <= 64:
            raise ValueError(f"feather_px must be an integer in [0, 64], got {self.feather_px!r}")
        if self.prefill not in ("none", "patchmatch"):
            raise ValueError(f"prefill must be 'none' or 'patchmatch', got {self.prefill!r}")


def pipeline_class_name(folder: str | Path) -> str | None:
    """``_class_name`` from a diffusers folder's model_index.json (None when unreadable)."""
    try:
        return json.loads((Path(folder) / "model_index.json").read_text())["_class_name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_inpaint_pipeline(source: ModelSource, device: torch.device, dtype: torch.dtype, cpu_offload: bool):
    """Load a diffusers inpainting pipeline, picking the class from model_index.json."""
    import diffusers

    class_name = pipeline_class_name(source.location) if source.local else None
    if class_name in _PIPELINE_CLASSES:
        cls = getattr(diffusers, class_name)
    else:
        cls = diffusers.AutoPipelineForInpainting
    pipe = cls.from_pretrained(source.location, dtype=dtype)
    if cpu_offload and device.type != "cpu":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def feather_weights(fill_mask: Tensor, feather_px: int) -> Tensor:  # [H, W] bool -> [H, W] float in [0, 1]
    """Blend weight of the generated image: 0 outside the mask, rising to 1 over ``feather_px`` pixels inside it.

    A mask pixel at chessboard distance d (1 = touching a known pixel) from the known region gets
    ``min(d, feather_px) / feather_px``; the image border does not count as known.
    """
    mask = fill_mask.float()[None, None]  # [1, 1, H, W]
    if feather_px <= 0:
        return mask[0, 0]
    total = torch.zeros_like(mask)
    eroded = mask
    for _ in range(feather_px):
        total = total + eroded
        # erosion = 1 - dilation of the complement; replicate padding keeps the image border neutral
        eroded = 1 - F.max_pool2d(F.pad(1 - eroded, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (total / feather_px)[0, 0]


def _pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, int, int]:  # [B, C, H, W] -> padded, pad_h, pad_w
    pad_h = (-x.shape[-2]) % multiple
    pad_w = (-x.shape[-1]) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x, pad_h, pad_w


def _prefill_hole(image: Tensor, fill_mask: Tensor, seed: int) -> Tensor:  # [H, W, 3], [H, W] -> [H, W, 3]
    """Fill the hole with PatchMatch (models.offline); fall back to OpenCV Telea when it is not available."""
    try:
        from models.offline import PatchMatchOutpainter
    except ImportError:
        import cv2
        import numpy as np

        rgb = to_uint8(image)
        hole = fill_mask.cpu().numpy().astype(np.uint8)
        filled = cv2.inpaint(rgb, hole, 5, cv2.INPAINT_TELEA).astype(np.float32) / 255
        return torch.where(fill_mask[..., None], torch.from_numpy(filled).to(image), image)
    return PatchMatchOutpainter().outpaint(image, fill_mask, "", "", seed)


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
    ) -> Tensor:  # [H, W, 3], equal to ``image`` outside ``fill_mask``
        # 1. Check inputs
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image must be [H, W, 3], got {tuple(image.shape)}")
        if fill_mask.shape != image.shape[:2] or fill_mask.dtype != torch.bool:
            raise ValueError(
                f"fill_mask must be bool [H, W] = {tuple(image.shape[:2])}, got "
                f"{fill_mask.dtype} {tuple(fill_mask.shape)}"
            )
        if not bool(fill_mask.any()):
            return image.clone()
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled before outpainting")
        opts = self.options
        height, width = image.shape[:2]

        # 2. Pre-fill the hole (optional) and pad to the VAE's stride
        source = _prefill_hole(image, fill_mask, seed) if opts.prefill == "patchmatch" else image
        rgb, pad_h, pad_w = _pad_to_multiple(source.permute(2, 0, 1)[None].float().cpu(), LATENT_STRIDE)
        mask = F.pad(fill_mask.float().cpu()[None, None], (0, pad_w, 0, pad_h), value=1.0)  # padding = generate

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
                height=rgb.shape[-2],
                width=rgb.shape[-1],
                num_inference_steps=opts.steps,
                guidance_scale=float(opts.guidance),
                strength=float(opts.strength),
                generator=generator,
                output_type="pt",
                callback_on_step_end=on_step_end,
            )
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled during outpainting")
        generated = result.images[0].float().cpu()[:, :height, :width].permute(1, 2, 0)  # [H, W, 3]
        if not bool(generated.isfinite().all()):
            raise RuntimeError(f"{self.name} produced invalid values (NaN/inf); try float32 (--dtype float32)")

        # 4. Blend inside the mask only; outside it the input is returned untouched
        generated = generated.clamp(0, 1).to(image.device, image.dtype)
        weight = feather_weights(fill_mask, opts.feather_px).to(image.device, image.dtype)[..., None]  # [H, W, 1]
        blended = source * (1 - weight) + generated * weight
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
        pipe = load_inpaint_pipeline(source, device, dtype, options.cpu_offload)
    except (OSError, ValueError) as err:
        raise load_failed("outpainter", source, err, OFFLINE_ALTERNATIVE) from err
    logger.info("loaded outpainter %s (%s) on %s as %s", reference, type(pipe).__name__, device, dtype)
    return DiffusionOutpainter(pipe, options, name=reference)
