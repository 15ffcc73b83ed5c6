"""Learned depth completion: Invisible Stitch's ZoeDepth that sees [RGB, sparse depth, valid mask].

The network is a transformers ``ZoeDepthForDepthEstimation`` whose BEiT backbone takes 5 input channels
(``BeitConfig(num_channels=5)``; the patch embedding is widened from 3 to 5, as Invisible Stitch does).
Inference follows Invisible Stitch's ``infer_with_zoe_dc`` / ``infer_with_pad`` and ZoeDepth's ``PrepForMidas``:

1. ``x = [rgb, known_depth / (s · 10), known_mask]`` — the network was trained on depth / 10 with depths in
   [1e-3, 10] m, so its depth channel must stay in [0, 1]; the prediction is multiplied back by ``s``. A fixed
   ``s`` covers only depths up to ``10 · s`` (Invisible Stitch's 0.5 covers 5 m, while Depth Anything V2 Metric
   gives view 0 up to 20 m indoors and 80 m outdoors), so ``s`` is chosen **per view** from the known depth:
   ``s = max(known) / (10 · known_fraction)`` maps the farthest known depth to ``known_fraction`` (0.5) of the
   channel's range and leaves the rest for unseen parts up to ``1 / known_fraction`` times deeper. A view with no
   known depth uses ``s = 1`` (the training scale, as Invisible Stitch's first view). The same rule completes a
   partial user depth map for view 0. A fixed ``CompletionOptions.scaling`` restores the original behaviour.
2. pad every side by ``int(sqrt(side / 2) · 3)`` pixels: RGB reflect-padded, depth and mask zero-padded;
3. resize all 5 channels to the network size (384 × 512 for the real model) bilinearly with
   ``align_corners=True``; normalise RGB with mean = std = 0.5 (the depth/mask channels stay as they are);
4. predict, resize back bicubically to the padded size, crop the padding;
5. repeat on the horizontally mirrored input and average (flip TTA);
6. resize to the image size and restore the known depths exactly where ``known_mask`` is set.

Weights: a folder or Hub id in transformers layout (``config.json`` + weights). The public Invisible Stitch
checkpoint is in the original ZoeDepth layout; :mod:`models.invisible_stitch` converts it.
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
from core.checks import check_completion_inputs
from core.components import DepthEstimate
from models.hub import default_dtype, load_failed, pick_device, resolve_model

logger = logging.getLogger(__name__)

OFFLINE_ALTERNATIVE = "the training-free aligned completer"
TRAINING_MAX_DEPTH = 10.0
"""Invisible Stitch's completer was trained on depths in [1e-3, 10] m; inputs are divided by this."""

MIN_SCALING = 0.005  # see MAX_SCALING
MAX_SCALING = 100.0
"""Bounds of the depth scaling s: the network's 10 m range then spans 5 cm to 1 km."""

PAD_FACTOR = 3.0
"""Each side is padded by ``int(sqrt(side / 2) * PAD_FACTOR)`` pixels (ZoeDepth / Invisible Stitch default)."""

INVISIBLE_STITCH_NET_SIZE = (384, 512)
"""(height, width) the real completer runs at (its training config's ``img_size``)."""

RGB_MEAN = 0.5
RGB_STD = 0.5  # MiDaS BEiT normalisation: x -> (x - 0.5) / 0.5


@dataclass(frozen=True)
class CompletionOptions:
    """Settings of the learned depth completer."""

    scaling: float | None = None
    """Depth scaling s: known depths enter as depth / (10·s) and predictions leave multiplied by s, so depths up
    to 10·s fit the training range. None = per view from the known depth (see ``known_fraction``); a number fixes
    it for every view (Invisible Stitch used 0.5, which covers 5 m)."""

    known_fraction: float = 0.5
    """With ``scaling`` None, the farthest known depth of a view is mapped to this fraction of the network's
    depth range, leaving room for unseen parts up to 1 / known_fraction times deeper."""

    pad: bool = True
    """Reflect-pad the input before inference (ZoeDepth's fix for border artefacts)."""

    flip_tta: bool = True
    """Average with the mirrored prediction of the mirrored input."""

    net_size: tuple[int, int] | None = None
    """(height, width) the network sees; None = (image_size, image_size·4/3 rounded to 32) from the backbone
    config, which is Invisible Stitch's 384 × 512 for the real model."""

    restore_known: bool = True
    """Put the given depths back exactly where ``known_mask`` is set (the protocol's contract)."""

    dtype: Literal["float16", "bfloat16", "float32"] | None = "float32"
    """Weights' dtype (float32 default: the bin head is sensitive to float16); None = float16 on CUDA."""

    def __post_init__(self):
        if self.scaling is not None and (
            not isinstance(self.scaling, (int, float)) or not MIN_SCALING <= float(self.scaling) <= MAX_SCALING
        ):
            raise ValueError(
                f"scaling must be None (per view) or in [{MIN_SCALING}, {MAX_SCALING}], got {self.scaling!r}"
            )
        if not isinstance(self.known_fraction, (int, float)) or not 0.05 <= float(self.known_fraction) <= 1.0:
            raise ValueError(f"known_fraction must be in [0.05, 1], got {self.known_fraction!r}")
        if not isinstance(self.pad, bool) or not isinstance(self.flip_tta, bool):
            raise ValueError("pad and flip_tta must be booleans")
        if self.net_size is not None and (
            len(self.net_size) != 2 or not all(isinstance(v, int) and v >= 32 and v % 32 == 0 for v in self.net_size)
        ):
            raise ValueError(f"net_size must be None or (height, width), multiples of 32, got {self.net_size!r}")
        if self.dtype not in (None, "float16", "bfloat16", "float32"):
            raise ValueError(f"dtype must be float16, bfloat16, float32 or None, got {self.dtype!r}")


def view_scaling(known_depth: Tensor, valid: Tensor, options: CompletionOptions) -> float:  # [H, W], [H, W]
    """The depth scaling s for one view: the option if set, else ``max(known) / (10 · known_fraction)``.

    Without any known depth the training scale 1 is used (Invisible Stitch's first view). The result is clamped
    to [MIN_SCALING, MAX_SCALING], which covers known depths from 2.5 cm to 800 m at the default fraction.
    """
    if options.scaling is not None:
        return float(options.scaling)
    if not bool(valid.any()):
        return 1.0
    farthest = float(known_depth[valid].max())
    return min(MAX_SCALING, max(MIN_SCALING, farthest / (TRAINING_MAX_DEPTH * options.known_fraction)))


def network_size(model, options: CompletionOptions) -> tuple[int, int]:
    """(height, width) the completer runs at."""
    if options.net_size is not None:
        return options.net_size
    side = int(getattr(model.config.backbone_config, "image_size", 384))
    if side == 384:
        return INVISIBLE_STITCH_NET_SIZE
    return side, max(32, int(round(side * 4 / 3 / 32)) * 32)


def pad_sizes(height: int, width: int) -> tuple[int, int]:
    return int(math.sqrt(height / 2) * PAD_FACTOR), int(math.sqrt(width / 2) * PAD_FACTOR)


class LearnedCompleter:
    """``DepthCompleter`` backed by a 5-channel ZoeDepth (see module docstring for the exact inference recipe)."""

    def __init__(self, model, options: CompletionOptions = CompletionOptions(), name: str = "learned completer"):
        channels = getattr(model.config.backbone_config, "num_channels", 3)
        if channels != 5:
            raise ValueError(
                f"{name}: a depth completer needs a 5-channel backbone [RGB, sparse depth, mask], this one takes "
                f"{channels} (is it a plain depth estimator? use it as --depth-model instead)"
            )
        self.model = model
        self.options = options
        self.name = name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def estimate(self, image: Tensor, camera: Camera) -> DepthEstimate:  # [H, W, 3] -> values [H, W]
        """Metric depth of a view with nothing known (Invisible Stitch's first view): the completer at scale 1.

        With ``scaling`` None the network's range is then its training range, 1 mm to 10 m (rooms, not streets);
        a fixed ``scaling`` s stretches it to 10·s.
        """
        height, width = image.shape[:2]
        nothing = torch.zeros(height, width, dtype=torch.bool, device=image.device)
        depth = self.complete(image, torch.zeros(height, width, device=image.device), nothing, camera)
        return DepthEstimate(depth, "metric")

    def _infer(self, x: Tensor) -> Tensor:  # [1, 5, H, W] -> [1, 1, H, W] metric (in units of scaling)
        height, width = x.shape[-2:]
        if self.options.pad:
            pad_h, pad_w = pad_sizes(height, width)
            rgb = F.pad(x[:, :3], (pad_w, pad_w, pad_h, pad_h), mode="reflect")
            rest = F.pad(x[:, 3:], (pad_w, pad_w, pad_h, pad_h), value=0.0)
            x = torch.cat([rgb, rest], dim=1)
        else:
            pad_h = pad_w = 0
        net_h, net_w = network_size(self.model, self.options)
        net_in = F.interpolate(x, size=(net_h, net_w), mode="bilinear", align_corners=True)
        net_in = torch.cat([(net_in[:, :3] - RGB_MEAN) / RGB_STD, net_in[:, 3:]], dim=1)
        dtype = next(self.model.parameters()).dtype
        with (
            torch.no_grad()
        ):  # not inference_mode: transformers caches tensors (BEiT position index) a later fine-tune reuses
            out = self.model(pixel_values=net_in.to(self.device, dtype)).predicted_depth.float()  # [1, h, w]
        out = F.interpolate(out[:, None].cpu(), size=x.shape[-2:], mode="bicubic", align_corners=False)
        return out[..., pad_h : pad_h + height, pad_w : pad_w + width]

    def complete(
        self,
        image: Tensor,  # [H, W, 3]
        known_depth: Tensor,  # [H, W], 0 where unknown
        known_mask: Tensor,  # [H, W] bool
        camera: Camera,
    ) -> Tensor:  # [H, W] z-depth everywhere, equal to known_depth on known_mask
        check_completion_inputs(image, known_depth, known_mask)
        valid = known_mask & (known_depth > 0)
        scaling = view_scaling(known_depth, valid, self.options)
        sparse = torch.where(valid, known_depth, torch.zeros_like(known_depth)).float().cpu()
        rgb = image.detach().float().clamp(0, 1).cpu().permute(2, 0, 1)  # [3, H, W]
        x = torch.cat([rgb, (sparse / (scaling * TRAINING_MAX_DEPTH))[None], valid.float().cpu()[None]])[None]

        out = self._infer(x)
        if self.options.flip_tta:
            out = 0.5 * (out + self._infer(x.flip(-1)).flip(-1))
        depth = (scaling * out)[0, 0].clamp_min(1e-3)  # [H, W]; 0 would read as "unknown"
        depth = depth.to(known_depth.device, torch.float32)
        if self.options.restore_known:
            depth = torch.where(valid, known_depth.float(), depth)
        return depth


def load_completer(
    reference: str,
    *,
    device: str | torch.device | None = None,
    options: CompletionOptions = CompletionOptions(),
    allow_download: bool = True,
) -> LearnedCompleter:
    """Load a 5-channel ZoeDepth completer by folder or Hub id (transformers layout), once.

    Raises:
        ModelUnavailableError: the weights are not on this machine and cannot (or may not) be downloaded.
        ValueError: the model is not a 5-channel ZoeDepth.
    """
    from transformers import ZoeDepthForDepthEstimation

    source = resolve_model(
        reference,
        what="depth completer",
        marker_file="config.json",
        offline_alternative=OFFLINE_ALTERNATIVE,
        allow_download=allow_download,
    )
    device = pick_device(device)
    dtype = default_dtype(device, options.dtype)
    try:
        model = ZoeDepthForDepthEstimation.from_pretrained(source.location, dtype=dtype)
    except (OSError, ValueError) as err:
        raise load_failed("depth completer", source, err, OFFLINE_ALTERNATIVE) from err
    model = model.to(device).eval()
    logger.info("loaded depth completer %s on %s", reference, device)
    return LearnedCompleter(model, options, name=reference)
