"""A learned implicit-depth occlusion model: does the scene hide a virtual object, pixel by pixel?

"Virtual Occlusions Through Implicit Depth" (Watson et al., CVPR 2023) showed that the occlusion decision at
edges is better learned directly than read off a regressed depth map, whose edges are blurred and whose errors
flicker over a video. This is a small CPU version of that idea for WorldStitch's generated views.

The network (:class:`OcclusionNet`, a three-level U-Net on 4 x 4 pixel cells, ~0.15 M parameters) sees, per pixel:

1. the view's RGB (centred on 0): image edges say where the scene's depth edges really are;
2. the virtual object's coverage and its depth as ``log(depth / m)``, ``m`` = the median depth of the object in
   this view (depth is normalised per view, so one network works for a cup at 1 m and a house at 40 m);
3. optionally the scene's depth as ``log(depth / m)`` with a validity channel (0 where unknown or not given);
4. the signed gap ``log(scene / object)`` where both exist, scaled and clipped (:data:`GAP_GAIN`).

It outputs the logit of "the scene occludes the object here". A fixed-sign skip adds ``gap_weight x gap`` to the
logit, so an untrained network already behaves like a soft depth test and training learns where to deviate from
it (at edges, from the image). Only a crop around the object (plus :data:`CROP_MARGIN_PX`) is processed.

Weights are one safetensors file with the network's shape in its metadata: ``models/weights/occlusion.safetensors``,
made by ``python -m training.train_occlusion`` (see ``models/weights/OCCLUSION.md``).

Conventions are the project's: z-depth ``[H, W]`` in scene units, 0 = unknown / no object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.checks import check_tensor
from models.weights_io import WeightsError, load_weights, read_weights_metadata, save_weights

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "occlusion.safetensors"
"""The weights the project trained and ships (see ``models/weights/OCCLUSION.md``)."""

WEIGHTS_FORMAT = "worldstitch-occlusion"
"""``format`` entry of the safetensors metadata: tells our files from any other safetensors file."""

IN_CHANNELS = 8
"""RGB (3), object coverage, object log-depth, scene log-depth, scene validity, signed gap."""

OBJECT_LOG_CLIP = 2.0
"""Object log-depth is clipped to ±2 (a factor of 7.4 around its median: far more than any object's own depth
range as seen from a camera outside it)."""

SCENE_LOG_CLIP = 3.0
"""Scene log-depth is clipped to ±3 (a factor of 20): beyond that only the sign matters to the decision."""

GAP_GAIN = 10.0
"""The signed gap ``log(scene / object)`` is multiplied by 10 and clipped to ±1: a 10 % depth difference is
already a confident decision, smaller ones are where the image must help."""

GAP_INIT_WEIGHT = -4.0
"""Initial weight of the gap skip into the logit: scene 10 % nearer than the object (gap -1) gives logit +4
(occluded with probability 0.98) before any training."""

CROP_MARGIN_PX = 32
"""Context kept around the object's bounding box: larger than the network's receptive field at the finest
levels, so the crop gives the same answer as the whole image where the object is."""

SIZE_MULTIPLE = 16
"""Crops are padded to multiples of 16: a 4 x 4 fold, then two stride-2 stages."""


@dataclass(frozen=True)
class OcclusionNetConfig:
    """Shape of the network (stored with the weights)."""

    widths: tuple[int, int, int] = (32, 48, 64)
    """Channels at 1/4, 1/8 and 1/16 resolution. The input is folded into 1/4-resolution cells of 4 x 4 pixels
    (space-to-depth, lossless) and the output unfolded back to full resolution: every pixel keeps its own input
    and output weights, while the convolutions run on 16x fewer positions (the budget is 0.1 s per 512 x 384 view
    on a CPU)."""

    use_scene_depth: bool = True
    """Feed the scene's depth (channels 5-7). False = image + object only (the paper's setting without depth)."""


FOLD = 4
"""Space-to-depth factor of the input and depth-to-space factor of the output."""


def _conv(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)
    )


class OcclusionNet(nn.Module):
    """A small U-Net on 4 x 4 pixel cells: features [B, 8, H, W] → occlusion logits [B, 1, H, W].

    H and W must be multiples of :data:`SIZE_MULTIPLE`.
    """

    def __init__(self, config: OcclusionNetConfig = OcclusionNetConfig()):
        super().__init__()
        self.config = config
        w1, w2, w3 = config.widths
        cells = IN_CHANNELS * FOLD * FOLD
        self.enc1 = nn.Sequential(nn.Conv2d(cells, w1, 1), nn.ReLU(inplace=True), _conv(w1, w1))
        self.enc2 = nn.Sequential(_conv(w1, w2, stride=2), _conv(w2, w2))
        self.enc3 = nn.Sequential(_conv(w2, w3, stride=2), _conv(w3, w3, dilation=2))
        self.lat3, self.dec2 = nn.Conv2d(w3, w2, 1), _conv(w2, w2)
        self.lat2, self.dec1 = nn.Conv2d(w2, w1, 1), _conv(w1, w1)
        self.head = nn.Conv2d(w1, FOLD * FOLD, 1)
        self.gap_weight = nn.Parameter(torch.tensor(GAP_INIT_WEIGHT))
        nn.init.zeros_(self.head.weight)  # start as the soft depth test; training adds the learned part
        nn.init.zeros_(self.head.bias)

    def forward(self, features: Tensor) -> Tensor:  # [B, 8, H, W] -> [B, 1, H, W] logits
        x1 = self.enc1(F.pixel_unshuffle(features, FOLD))  # [B, w1, H/4, W/4]
        x2 = self.enc2(x1)  # [B, w2, H/8, W/8]
        x3 = self.enc3(x2)  # [B, w3, H/16, W/16]
        y2 = self.dec2(x2 + _up(self.lat3(x3), x2))
        y1 = self.dec1(x1 + _up(self.lat2(y2), x1))
        return F.pixel_shuffle(self.head(y1), FOLD) + self.gap_weight * features[:, 7:8]


def _up(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def occlusion_features(
    rgb: Tensor,  # [H, W, 3] in [0, 1]
    object_depth: Tensor,  # [H, W] z-depth of the object, 0 where it is absent
    object_coverage: Tensor,  # [H, W] in [0, 1], 0 where it is absent
    scene_depth: Tensor | None,  # [H, W] the scene's z-depth, 0 = unknown; None = not used
) -> Tensor:  # [8, H, W]
    """The network's input channels for one view (see the module docstring), float32.

    Raises:
        ValueError: shapes disagree or nothing of the object is in the view.
    """
    sizes = check_tensor(rgb, "H W 3", "rgb", "float")
    check_tensor(object_depth, "H W", "object_depth", "float", sizes)
    check_tensor(object_coverage, "H W", "object_coverage", "float", sizes)
    rgb, object_depth, object_coverage = rgb.float(), object_depth.float(), object_coverage.float()
    present = (object_coverage > 0) & (object_depth > 0)
    if not bool(present.any()):
        raise ValueError("the object is not in this view (no pixel with coverage > 0 and depth > 0)")
    reference = object_depth[present].median()
    zero = torch.zeros_like(object_depth)
    object_log = torch.where(
        present, _log_ratio(object_depth, reference).clamp(-OBJECT_LOG_CLIP, OBJECT_LOG_CLIP), zero
    )
    if scene_depth is None:
        scene_log, valid, gap = zero, zero, zero
    else:
        check_tensor(scene_depth, "H W", "scene_depth", "float", sizes)
        scene_depth = scene_depth.float()
        known = torch.isfinite(scene_depth) & (scene_depth > 0)
        safe_scene = torch.where(known, scene_depth, reference.expand_as(scene_depth))
        scene_log = torch.where(known, _log_ratio(safe_scene, reference).clamp(-SCENE_LOG_CLIP, SCENE_LOG_CLIP), zero)
        valid = known.float()
        both = known & present
        safe_object = torch.where(present, object_depth, reference.expand_as(object_depth))
        gap = torch.where(both, (GAP_GAIN * torch.log(safe_scene / safe_object)).clamp(-1, 1), zero)
    channels = [rgb.permute(2, 0, 1) - 0.5, object_coverage[None], object_log[None], scene_log[None]]
    return torch.cat(channels + [valid[None], gap[None]])


def _log_ratio(depth: Tensor, reference: Tensor) -> Tensor:
    return torch.log(depth.clamp(min=1e-6) / reference)


def crop_box(mask: Tensor, margin: int = CROP_MARGIN_PX) -> tuple[int, int, int, int]:  # [H, W] -> v0, v1, u0, u1
    """The object's bounding box grown by ``margin`` and to multiples of :data:`SIZE_MULTIPLE` where possible."""
    height, width = mask.shape
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    v0, v1 = max(int(rows[0]) - margin, 0), min(int(rows[-1]) + 1 + margin, height)
    u0, u1 = max(int(cols[0]) - margin, 0), min(int(cols[-1]) + 1 + margin, width)
    return v0, v1, u0, u1


def predict_occlusion(
    net: OcclusionNet,
    rgb: Tensor,  # [H, W, 3] in [0, 1]
    object_depth: Tensor,  # [H, W], 0 = absent
    object_coverage: Tensor,  # [H, W] in [0, 1]
    scene_depth: Tensor | None,  # [H, W], 0 = unknown
) -> Tensor:  # [H, W] probability that the scene hides the object; 0 where the object is absent
    """Run the network on a crop around the object and return the occlusion probability for the whole view.

    Where the scene's depth is unknown (0, e.g. an open window) the object shows, as with the hard depth test.
    """
    present = (object_coverage > 0) & (object_depth > 0)
    out = torch.zeros(object_depth.shape, dtype=torch.float32, device=object_depth.device)
    if not bool(present.any()):
        return out
    if not net.config.use_scene_depth:
        scene_depth = None
    v0, v1, u0, u1 = crop_box(present)
    crop = (slice(v0, v1), slice(u0, u1))
    features = occlusion_features(
        rgb[crop], object_depth[crop], object_coverage[crop], None if scene_depth is None else scene_depth[crop]
    )
    pad_v = (-features.shape[1]) % SIZE_MULTIPLE
    pad_u = (-features.shape[2]) % SIZE_MULTIPLE
    features = F.pad(features[None], (0, pad_u, 0, pad_v), mode="replicate")
    param = next(net.parameters())
    with torch.no_grad():
        logits = net(features.to(param))[0, 0, : v1 - v0, : u1 - u0]
    occluded = present[crop]
    if scene_depth is not None:  # where the scene's depth is unknown nothing is known to hide the object
        occluded = occluded & torch.isfinite(scene_depth[crop]) & (scene_depth[crop] > 0)
    out[crop] = torch.where(occluded, torch.sigmoid(logits.float()).to(out.device), out[crop])
    return out


class LearnedOcclusion:
    """The learned occluder, usable wherever :class:`pipeline.objects.Occluder` is expected.

    Args:
        net: a trained network (see :func:`load_occlusion_net`).
    """

    def __init__(self, net: OcclusionNet):
        self.net = net.eval()

    @classmethod
    def from_file(cls, path: str | Path = DEFAULT_WEIGHTS, device: str | torch.device = "cpu") -> LearnedOcclusion:
        return cls(load_occlusion_net(path, device))

    def occlusion(self, rgb: Tensor, scene_depth: Tensor | None, render) -> Tensor:  # -> [H, W]
        """Probability that the scene hides the object, per pixel (``render`` has ``depth`` and ``coverage``)."""
        return predict_occlusion(self.net, rgb, render.depth, render.coverage, scene_depth)

    def visibility(self, rgb: Tensor, scene_depth: Tensor | None, render) -> Tensor:  # -> [H, W] in [0, 1]
        """1 - occlusion where the object is, 0 elsewhere (soft at edges)."""
        present = (render.coverage > 0).float()
        return present * (1.0 - self.occlusion(rgb, scene_depth, render))


# --- weights -----------------------------------------------------------------------------------------------------


class OcclusionWeightsError(WeightsError):
    """An occlusion weights file is missing, unreadable or not ours."""


def save_occlusion_weights(net: OcclusionNet, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write the network to a safetensors file atomically (config and ``extra`` in its metadata)."""
    return save_weights(net, path, WEIGHTS_FORMAT, extra)


def read_occlusion_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an occlusion weights file (raises :class:`OcclusionWeightsError` when not one)."""
    return read_weights_metadata(
        path, WEIGHTS_FORMAT, "occlusion weights", "`python -m training.train_occlusion`", OcclusionWeightsError
    )


def load_occlusion_net(path: str | Path = DEFAULT_WEIGHTS, device: str | torch.device = "cpu") -> OcclusionNet:
    """Build the network stored in a weights file, in eval mode.

    Raises:
        OcclusionWeightsError: missing, corrupt, foreign or mismatched file.
    """
    metadata = read_occlusion_metadata(path)
    net = load_weights(path, metadata, OcclusionNet, OcclusionNetConfig, OcclusionWeightsError)
    return net.to(device).eval()


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
