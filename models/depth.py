"""Monocular depth estimators from transformers behind the ``DepthEstimator`` protocol.

Any ``AutoModelForDepthEstimation`` + ``AutoImageProcessor`` pair loads by Hub id or folder. What the output
*means* is read from the model's config, never guessed from its name:

================================  ===================  ==========================================================
model                             config says          ``DepthEstimate.kind``
================================  ===================  ==========================================================
Depth Anything V2 Metric          depth_estimation_    ``metric`` (metres; the head multiplies by ``max_depth``:
(Indoor / Outdoor)                type = "metric"      20 m indoor, 80 m outdoor)
Depth Anything (V1/V2) relative   ... = "relative"     ``relative_inverse`` (disparity-like, larger = nearer)
ZoeDepth                          model_type zoedepth  ``metric``
DPT / MiDaS                       model_type dpt       ``relative_inverse``
GLPN, Depth Pro                   model_type glpn ...  ``metric``
================================  ===================  ==========================================================

Horizontal-flip test-time augmentation averages the prediction with the flipped prediction of the flipped image.
The output is resized to the input image's size; ZoeDepth's reflect padding is removed as its processor adds it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from core.cameras import Camera
from core.components import DepthEstimate, DepthKind
from models.hub import ModelSource, default_dtype, load_failed, pick_device, resolve_model

logger = logging.getLogger(__name__)

METRIC_DEPTH_MODELS = {
    "indoor": "depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf",
    "outdoor": "depth-anything/Depth-Anything-V2-Metric-Outdoor-Large-hf",
}
"""Default metric estimators by scene type (Depth Anything V2 Metric; max depth 20 m / 80 m)."""

RELATIVE_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
ZOEDEPTH_MODEL = "Intel/zoedepth-nyu-kitti"
OFFLINE_ALTERNATIVE = "the geometric-prior depth"

MIN_METRIC_DEPTH = 1e-3
"""Metric predictions are clamped to at least 1 mm: z-depth 0 means "unknown" in this project."""

ZOEDEPTH_PAD_FACTOR = 3
"""ZoeDepth's processor reflect-pads each side by ``int(sqrt(side / 2) * 3)`` pixels against border artefacts."""

_METRIC_MODEL_TYPES = ("zoedepth", "glpn", "depth_pro", "prompt_depth_anything")
_INVERSE_MODEL_TYPES = ("dpt",)


@dataclass(frozen=True)
class DepthOptions:
    """Settings of a transformers depth estimator."""

    flip_tta: bool = True
    """Average with the mirrored prediction of the mirrored image (2× the compute, steadier edges)."""

    kind: str | None = None
    """Override what the output means ("metric", "relative_inverse", "relative"); None = read it from the config."""

    dtype: str | None = "float32"
    """Weights' dtype. float32 by default: depth heads (ZoeDepth's bins) are sensitive to float16 rounding and the
    models are small next to the diffusion model. None = float16 on CUDA."""

    def __post_init__(self):
        if self.kind not in (None, "metric", "relative_inverse", "relative"):
            raise ValueError(f"kind must be metric, relative_inverse or relative, got {self.kind!r}")


def depth_kind(config) -> DepthKind:
    """What a depth model's raw output means, read from its transformers config."""
    model_type = getattr(config, "model_type", "")
    if model_type == "depth_anything":
        return "metric" if getattr(config, "depth_estimation_type", "relative") == "metric" else "relative_inverse"
    if model_type in _METRIC_MODEL_TYPES:
        return "metric"
    if model_type in _INVERSE_MODEL_TYPES:
        return "relative_inverse"
    raise ValueError(
        f"cannot tell whether a {model_type!r} depth model predicts metric or inverse depth; "
        "set DepthOptions(kind=...) explicitly"
    )


def _image_to_numpy(image: Tensor):  # [H, W, 3] float in [0, 1] -> numpy [H, W, 3] float32
    return image.detach().float().clamp(0, 1).cpu().numpy()


class TransformersDepthEstimator:
    """``DepthEstimator`` around a loaded transformers depth model and its image processor.

    Args:
        model: an ``...ForDepthEstimation`` model in eval mode, on its device.
        processor: the matching image processor.
        kind: what the output means (see :func:`depth_kind`).
        options: TTA and dtype settings.
        name: what to call it in descriptions.
    """

    def __init__(self, model, processor, kind: DepthKind, options: DepthOptions = DepthOptions(), name: str = ""):
        self.model = model
        self.processor = processor
        self.kind = kind
        self.options = options
        self.name = name or type(model).__name__

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _predict(self, image: Tensor) -> Tensor:  # [H, W, 3] -> [H, W] raw model output at image size
        height, width = image.shape[:2]
        inputs = self.processor(images=_image_to_numpy(image), do_rescale=False, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, next(self.model.parameters()).dtype)
        with torch.inference_mode():
            predicted = self.model(pixel_values=pixel_values).predicted_depth.float()  # [1, h, w]
        predicted = predicted[:, None]  # [1, 1, h, w]
        if getattr(self.model.config, "model_type", "") == "zoedepth" and getattr(self.processor, "do_pad", False):
            pad_h = int(math.sqrt(height / 2) * ZOEDEPTH_PAD_FACTOR)
            pad_w = int(math.sqrt(width / 2) * ZOEDEPTH_PAD_FACTOR)
            predicted = F.interpolate(predicted, size=(height + 2 * pad_h, width + 2 * pad_w), mode="bicubic")
            predicted = predicted[..., pad_h : pad_h + height, pad_w : pad_w + width]
        else:
            predicted = F.interpolate(predicted, size=(height, width), mode="bilinear", align_corners=False)
        return predicted[0, 0].cpu()

    def estimate(self, image: Tensor, camera: Camera) -> DepthEstimate:  # [H, W, 3] -> values [H, W]
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image must be [H, W, 3], got {tuple(image.shape)}")
        values = self._predict(image)
        if self.options.flip_tta:
            values = 0.5 * (values + self._predict(image.flip(1)).flip(1))
        if self.kind == "metric":
            values = values.clamp_min(MIN_METRIC_DEPTH)
        else:
            values = values.clamp_min(0)
        return DepthEstimate(values.to(image.device, torch.float32), self.kind)


def load_depth_estimator(
    reference: str = METRIC_DEPTH_MODELS["indoor"],
    *,
    device: str | torch.device | None = None,
    options: DepthOptions = DepthOptions(),
    allow_download: bool = True,
) -> TransformersDepthEstimator:
    """Load a transformers depth model + processor by Hub id or folder, once.

    Raises:
        ModelUnavailableError: the weights are not on this machine and cannot (or may not) be downloaded.
        ValueError: the model's output kind cannot be read from its config and ``options.kind`` is not set.
    """
    source = resolve_model(
        reference,
        what="depth model",
        marker_file="config.json",
        offline_alternative=OFFLINE_ALTERNATIVE,
        allow_download=allow_download,
    )
    device = pick_device(device)
    dtype = default_dtype(device, options.dtype)
    model, processor = _load(source, dtype)
    kind = options.kind or depth_kind(model.config)
    model = model.to(device).eval()
    logger.info("loaded depth model %s (%s, %s) on %s", reference, type(model).__name__, kind, device)
    return TransformersDepthEstimator(model, processor, kind, options, name=reference)


def _load(source: ModelSource, dtype: torch.dtype):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    try:
        model = AutoModelForDepthEstimation.from_pretrained(source.location, dtype=dtype)
        processor = AutoImageProcessor.from_pretrained(source.location)
    except (OSError, ValueError) as err:
        raise load_failed("depth model", source, err, OFFLINE_ALTERNATIVE) from err
    return model, processor
