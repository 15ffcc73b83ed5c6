"""Monocular depth estimators from transformers behind the ``DepthEstimator`` protocol.

Any ``AutoModelForDepthEstimation`` + ``AutoImageProcessor`` pair loads by Hub id or folder. What the raw output
*means* is read from the model's config, never guessed from its name, and converted to what the pipeline needs:

==============================  ============================  ==========================================================
model (``model_type``)          raw output                    what :meth:`TransformersDepthEstimator.estimate` returns
==============================  ============================  ==========================================================
Depth Anything V2 Metric        metres (head × ``max_depth``:  ``metric``
(``depth_anything``, metric)    20 m indoor, 80 m outdoor)
Depth Anything V1/V2 relative   affine-invariant inverse       ``relative_inverse`` — :class:`AnchoredDepth` (the
(``depth_anything``)            depth (disparity-like)         registry's default for such models) makes it metric
ZoeDepth, GLPN, TIPSv2-DPT      metres                         ``metric``
Depth Pro (``depth_pro``)       FoV-normalised inverse depth   ``metric``: z = f / (W · raw) with the camera's focal f
                                                               and width W (transformers' post-processing, with the
                                                               pipeline's camera instead of the estimated FoV)
DPT / MiDaS (``dpt``)           affine-invariant inverse       ``relative_inverse`` (anchored like Depth Anything)
Prompt Depth Anything           without a prompt depth: depth  ``relative`` (anchored); the pipeline has no LiDAR
                                normalised to [0, 1]           prompt to give it
CHMv2 (``chmv2``)               canopy height from aerial      refused: not a camera depth model
                                images
==============================  ============================  ==========================================================

Depth Anything runs at its official input size: 518 pixels on the short side (the processor's configured size),
the long side scaled with the aspect ratio and both rounded to multiples of 14 (the ViT's patch), as its own
``infer_image`` does; transformers' processor would otherwise fit the *long* side to 518. Horizontal-flip test-time
augmentation averages the prediction with the flipped prediction of the flipped image. The output is resized to
the input image's size; ZoeDepth's reflect padding is removed as its processor adds it.

:class:`AnchoredDepth` turns a relative estimate into metres with the geometric prior of :mod:`models.offline`:
below the horizon a level camera ``camera_height`` above a floor sees the floor at a known depth, so a robust
affine fit of the relative values to that depth on the lower image (in inverse depth for disparity-like models)
fixes scale and shift. Its error is the error of the assumptions (a floor, visible, ``camera_height`` below the
camera): on the shared RGB-D frames see ``tests/test_depth_units.py``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from core.cameras import Camera
from core.components import DepthEstimate, DepthEstimator, DepthKind
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

DINO_PATCH = 14
"""Depth Anything's DINOv2 patch size: its input sides must be multiples of 14."""

DEPTH_PRO_MIN_INVERSE = 1e-4
"""transformers clamps Depth Pro's inverse depth to [1e-4, 1e4] before inverting; so do we (depth ≤ 10 km)."""

ANCHOR_MIN_FLOOR_FRACTION = 0.02
"""An anchor fit needs floor pixels on at least this fraction of the image; fewer cannot fix a scale."""

ANCHOR_FLOOR_RANGE = 3.0
"""Only pixels whose floor would be at most this many camera heights away (rays more than atan(1/3) ≈ 18° below
the horizon) anchor the fit: near the horizon walls and furniture hide the floor far more often, and there the
floor's depth changes fastest with the row, so a small tilt of the camera costs the most."""

ANCHOR_FALLBACK_MEDIAN_DEPTH = 3.0
"""Without floor pixels to fit, the relative depth is scaled so that its median is 3 m, a room's (the median
depth of the shared ICL-NUIM and TUM RGB-D frames is 1.9–2.4 m)."""

ANCHOR_IRLS_STEPS = 10
"""Iterations of the reweighted least-squares fit (Huber weights); the fit settles in 3–5 on real data."""

ANCHOR_HUBER = 1.345
"""Huber's tuning constant (95 % efficiency on Gaussian noise), in units of the residuals' robust scale."""

Units = Literal["metres", "fov_inverse_depth", "relative_inverse", "relative"]

_METRE_MODEL_TYPES = ("zoedepth", "glpn", "tipsv2_dpt")
_INVERSE_MODEL_TYPES = ("dpt",)
_REFUSED_MODEL_TYPES = {
    "chmv2": "it predicts canopy height from aerial images, not depth from a camera",
}


@dataclass(frozen=True)
class DepthOptions:
    """Settings of a transformers depth estimator."""

    flip_tta: bool = True
    """Average with the mirrored prediction of the mirrored image (2× the compute, steadier edges)."""

    kind: DepthKind | None = None
    """Override what the raw output means ("metric" = metres, "relative_inverse", "relative"); None = read it from
    the model's config (the safe choice)."""

    dtype: Literal["float16", "bfloat16", "float32"] | None = "float32"
    """Weights' dtype. float32 by default: depth heads (ZoeDepth's bins) are sensitive to float16 rounding and the
    models are small next to the diffusion model. None = float16 on CUDA."""

    input_size: int | None = None
    """Short side, in pixels, Depth Anything models see (rounded to a multiple of 14, the long side follows the
    aspect ratio). None = the processor's configured size (518 for the released models), as the official
    inference. Other model types use their processor's own resizing."""

    anchor: Literal["prior", "none"] = "prior"
    """How a relative model (Depth Anything relative, DPT, Prompt Depth Anything) becomes metric for view 0:
    "prior" fits it to a floor ``anchor_camera_height`` below a level camera (:class:`AnchoredDepth`); "none"
    keeps it relative (view 0 then needs a depth file)."""

    anchor_camera_height: float = 1.6
    """Metres from the camera down to the floor assumed by the anchoring (a photo taken standing; the scale of
    the result is proportional to it)."""

    anchor_max_depth: float = 80.0
    """Anchored depths are clamped to this many metres (Depth Anything V2 Metric-Outdoor's range)."""

    def __post_init__(self):
        if self.kind not in (None, "metric", "relative_inverse", "relative"):
            raise ValueError(f"depth kind must be metric, relative_inverse, relative or None, got {self.kind!r}")
        if self.dtype not in (None, "float16", "bfloat16", "float32"):
            raise ValueError(f"depth dtype must be float16, bfloat16, float32 or None, got {self.dtype!r}")
        if self.input_size is not None and (not isinstance(self.input_size, int) or not 56 <= self.input_size <= 2048):
            raise ValueError(f"depth input_size must be None or an integer in [56, 2048], got {self.input_size!r}")
        if self.anchor not in ("prior", "none"):
            raise ValueError(f"depth anchor must be 'prior' or 'none', got {self.anchor!r}")
        if not isinstance(self.anchor_camera_height, (int, float)) or not 0.05 <= self.anchor_camera_height <= 100:
            raise ValueError(f"anchor_camera_height must be in [0.05, 100] m, got {self.anchor_camera_height!r}")
        if not isinstance(self.anchor_max_depth, (int, float)) or not 1 <= self.anchor_max_depth <= 10_000:
            raise ValueError(f"anchor_max_depth must be in [1, 10000] m, got {self.anchor_max_depth!r}")


def output_units(config) -> Units:
    """What a depth model's raw ``predicted_depth`` is, read from its transformers config.

    Raises:
        ValueError: a model type that is not camera depth, or whose units cannot be read from the config.
    """
    model_type = getattr(config, "model_type", "")
    if model_type in _REFUSED_MODEL_TYPES:
        raise ValueError(f"{model_type!r} cannot be used as a depth model: {_REFUSED_MODEL_TYPES[model_type]}")
    if model_type == "depth_anything":
        metric = getattr(config, "depth_estimation_type", "relative") == "metric"
        return "metres" if metric else "relative_inverse"
    if model_type == "prompt_depth_anything":
        return "relative"  # normalised to the prompt depth's range, and we have no prompt depth
    if model_type == "depth_pro":
        return "fov_inverse_depth"
    if model_type in _METRE_MODEL_TYPES:
        return "metres"
    if model_type in _INVERSE_MODEL_TYPES:
        return "relative_inverse"
    raise ValueError(
        f"cannot tell whether a {model_type!r} depth model predicts metres or relative depth; set the depth "
        "option kind (DepthOptions(kind=...)) explicitly"
    )


def depth_kind(config) -> DepthKind:
    """What :meth:`TransformersDepthEstimator.estimate` returns for a model with this config."""
    units = output_units(config)
    return "metric" if units in ("metres", "fov_inverse_depth") else units


def dino_input_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) Depth Anything sees: short side ``short_side``, aspect kept, multiples of 14.

    Example:
        >>> dino_input_size(384, 512, 518)
        (518, 686)
    """
    scale = short_side / min(height, width)

    def side(x: float) -> int:
        return max(DINO_PATCH, round(x / DINO_PATCH) * DINO_PATCH)

    return side(height * scale), side(width * scale)


def _image_to_numpy(image: Tensor):  # [H, W, 3] float in [0, 1] -> numpy [H, W, 3] float32
    return image.detach().float().clamp(0, 1).cpu().numpy()


def _configured_short_side(processor) -> int | None:
    size = getattr(processor, "size", None)
    if isinstance(size, dict) and size.get("height") and size.get("width"):
        return int(min(size["height"], size["width"]))
    height, width = getattr(size, "height", None), getattr(size, "width", None)
    return int(min(height, width)) if height and width else None


class TransformersDepthEstimator:
    """``DepthEstimator`` around a loaded transformers depth model and its image processor.

    Args:
        model: an ``...ForDepthEstimation`` model in eval mode, on its device.
        processor: the matching image processor.
        units: what the raw output is (see :func:`output_units`).
        options: TTA, input size and dtype settings.
        name: what to call it in descriptions.
    """

    def __init__(self, model, processor, units: Units, options: DepthOptions = DepthOptions(), name: str = ""):
        self.model = model
        self.processor = processor
        self.units = units
        self.options = options
        self.name = name or type(model).__name__

    @property
    def kind(self) -> DepthKind:
        """What :meth:`estimate` returns: "metric", "relative_inverse" or "relative"."""
        return "metric" if self.units in ("metres", "fov_inverse_depth") else self.units

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _processor_kwargs(self, height: int, width: int) -> dict:
        if getattr(self.model.config, "model_type", "") not in ("depth_anything", "prompt_depth_anything"):
            return {}
        short = self.options.input_size or _configured_short_side(self.processor)
        if short is None:
            return {}
        net_h, net_w = dino_input_size(height, width, short)
        return {"size": {"height": net_h, "width": net_w}, "keep_aspect_ratio": False}

    def _predict(self, image: Tensor) -> Tensor:  # [H, W, 3] -> [H, W] raw model output at image size
        height, width = image.shape[:2]
        inputs = self.processor(
            images=_image_to_numpy(image),
            do_rescale=False,
            return_tensors="pt",
            **self._processor_kwargs(height, width),
        )
        pixel_values = inputs["pixel_values"].to(self.device, next(self.model.parameters()).dtype)
        # no_grad, not inference_mode: transformers caches tensors (BEiT's position index) that a fine-tune reuses
        with torch.no_grad():
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
        if self.units == "fov_inverse_depth":
            # transformers: depth = 1 / (raw * W / f); f and W in the same pixels, here the camera's at image size
            focal = float(camera.scaled(*image.shape[:2]).K[0, 0]) if camera is not None else None
            if focal is None:
                raise ValueError("Depth Pro needs the camera's focal length to return metres")
            values = focal / (image.shape[1] * values.clamp(DEPTH_PRO_MIN_INVERSE, 1 / DEPTH_PRO_MIN_INVERSE))
        if self.kind == "metric":
            values = values.clamp_min(MIN_METRIC_DEPTH)
        else:
            values = values.clamp_min(0)
        return DepthEstimate(values.to(image.device, torch.float32), self.kind)


def _huber_affine_fit(x: Tensor, y: Tensor) -> tuple[float, float]:  # [N], [N] -> (a, b) with y ≈ a x + b
    """Robust affine fit by iteratively reweighted least squares with Huber weights."""
    x, y = x.double(), y.double()
    weights = torch.ones_like(x)
    a, b = 1.0, 0.0
    for _ in range(ANCHOR_IRLS_STEPS):
        design = torch.stack([x, torch.ones_like(x)], dim=1) * weights.sqrt()[:, None]  # [N, 2]
        solution = torch.linalg.lstsq(design, (y * weights.sqrt())[:, None]).solution[:, 0]
        a, b = float(solution[0]), float(solution[1])
        residual = y - (a * x + b)
        scale = 1.4826 * float((residual - residual.median()).abs().median()) + 1e-12  # MAD → Gaussian sigma
        weights = (ANCHOR_HUBER * scale / residual.abs().clamp_min(1e-12)).clamp(max=1.0)
    return a, b


class AnchoredDepth:
    """Metric depth from a relative estimator, anchored to a floor below a level camera (a stated assumption).

    The geometric prior (:class:`models.offline.GeometricPriorDepth`) gives the floor's depth for every pixel
    below the horizon, assuming the camera is ``camera_height`` above a horizontal floor. The relative values on
    those pixels are fitted to it with a robust (Huber) affine fit — in inverse depth for ``relative_inverse``
    models, in depth for ``relative`` ones — and the fit is applied to the whole image. Furniture standing on the
    floor is down-weighted as outliers; when the fit is unusable (a non-positive scale, or too few floor pixels)
    a scale-only fit (median ratio) is used instead, and without floor pixels the median depth is set to
    :data:`ANCHOR_FALLBACK_MEDIAN_DEPTH`. The result is clamped to [1 mm, ``max_depth``].

    Its error is that of the assumptions: a floor taller or shorter than ``camera_height`` scales the result by
    the same factor; a photo without visible floor falls back to the median ratio against the prior.

    Args:
        relative: the relative estimator (``estimate`` returns kind "relative_inverse" or "relative").
        camera_height: metres from the camera down to the floor.
        max_depth: largest depth returned, in metres.
    """

    def __init__(
        self,
        relative: DepthEstimator,
        camera_height: float = 1.6,
        max_depth: float = 80.0,
        floor_range: float = ANCHOR_FLOOR_RANGE,
    ):
        from models.offline import GeometricPriorDepth

        self.relative = relative
        self.floor_range = float(floor_range)
        self.max_depth = float(max_depth)
        # the backdrop pushed out of reach: only the floor anchors the fit
        self.prior = GeometricPriorDepth(camera_height=camera_height, far_distance=1e6)
        self.name = f"{getattr(relative, 'name', type(relative).__name__)} anchored to a floor {camera_height:g} m down"

    kind: DepthKind = "metric"
    """What :meth:`estimate` returns."""

    def estimate(self, image: Tensor, camera: Camera) -> DepthEstimate:  # [H, W, 3] -> values [H, W] metres
        estimate = self.relative.estimate(image, camera)
        if estimate.kind == "metric":
            return estimate
        return DepthEstimate(self.anchor(estimate, image, camera), "metric")

    def anchor(self, estimate: DepthEstimate, image: Tensor, camera: Camera) -> Tensor:  # -> [H, W] metres
        """The relative ``estimate`` of ``image`` mapped to metres (see class docstring)."""
        values = estimate.values.float().cpu()
        floor_depth = self.prior.estimate(image, camera).values.float().cpu()  # [H, W], 1e6-ish above the horizon
        inverse = estimate.kind == "relative_inverse"
        steep = floor_depth <= self.floor_range * self.prior.camera_height  # far enough below the horizon
        floor = steep & torch.isfinite(values) & (values > 0 if inverse else values >= 0)
        target = 1.0 / floor_depth if inverse else floor_depth
        a = b = 0.0
        if int(floor.sum()) >= ANCHOR_MIN_FLOOR_FRACTION * floor.numel():
            a, b = _huber_affine_fit(values[floor], target[floor])
            near = a * float(values[values > 0].max() if inverse else values.min()) + b
            if a <= 0 or near <= 0:
                a = b = 0.0
        if a <= 0 and bool(floor.any()):  # scale only: median ratio over the floor pixels
            a, b = float(torch.median(target[floor] / values[floor].clamp_min(1e-12))), 0.0
            logger.info("anchoring fell back to a scale-only fit to the floor (scale %.4g)", a)
        if a <= 0:  # no floor in view: the median depth becomes a room's
            usable = torch.isfinite(values) & (values > 0)
            median = float(values[usable].median()) if bool(usable.any()) else 1.0
            a, b = (1.0 / ANCHOR_FALLBACK_MEDIAN_DEPTH if inverse else ANCHOR_FALLBACK_MEDIAN_DEPTH) / median, 0.0
            logger.warning(
                "no floor below the camera to anchor the relative depth; its median set to %g m",
                ANCHOR_FALLBACK_MEDIAN_DEPTH,
            )
        mapped = a * values + b
        if inverse:
            depth = 1.0 / mapped.clamp_min(1.0 / self.max_depth)
        else:
            depth = mapped
        return depth.clamp(MIN_METRIC_DEPTH, self.max_depth).to(estimate.values.device)


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
        ValueError: the model is no camera depth model, or its output cannot be read from its config and
            ``options.kind`` is not set.
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
    units: Units = {"metric": "metres", None: None}.get(options.kind, options.kind) or output_units(model.config)
    model = model.to(device).eval()
    logger.info("loaded depth model %s (%s, %s) on %s", reference, type(model).__name__, units, device)
    return TransformersDepthEstimator(model, processor, units, options, name=reference)


def _load(source: ModelSource, dtype: torch.dtype):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    try:
        model = AutoModelForDepthEstimation.from_pretrained(source.location, dtype=dtype)
        processor = AutoImageProcessor.from_pretrained(source.location)
    except (OSError, ValueError) as err:
        raise load_failed("depth model", source, err, OFFLINE_ALTERNATIVE) from err
    return model, processor
