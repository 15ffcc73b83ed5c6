"""The trainable completers behind one interface: batch in, log-depth out.

* :class:`LightModel` wraps :class:`models.light_completer.LightCompleterNet` (predicts ``log(depth / m)`` with
  ``m`` the median known depth; here shifted back to absolute log-depth).
* :class:`ZoeDepthModel` wraps Invisible Stitch's 5-channel ZoeDepth (``transformers`` ``ZoeDepthForDepthEstimation``
  with ``BeitConfig(num_channels=5)``), fed exactly as :class:`models.completion.LearnedCompleter` feeds it at
  inference (``[RGB, sparse / (scaling · 10), mask]`` with the same per-view scaling, RGB normalised with
  mean = std = 0.5, resized to the network size), without the inference-time padding and flip TTA.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.completion import RGB_MEAN, RGB_STD, TRAINING_MAX_DEPTH, CompletionOptions, network_size, view_scaling
from models.light_completer import LightCompleterNet, LightNetConfig, save_light_weights

MIN_DEPTH = 1e-3


class LightModel(nn.Module):
    """:class:`LightCompleterNet` returning absolute log-depth."""

    def __init__(self, config: LightNetConfig):
        super().__init__()
        self.net = LightCompleterNet(config)

    def forward(
        self,
        image: Tensor,  # [B, 3, H, W] in [0, 1]
        known_depth: Tensor,  # [B, H, W]
        known_mask: Tensor,  # [B, H, W] bool
        K: Tensor,  # [B, 3, 3]
        dense_log: Tensor | None = None,  # [B, H, W] cached harmonic fill of the known log-depth
    ) -> Tensor:  # [B, H, W] log-depth
        log_ratio, scale = self.net(image, known_depth, known_mask, K, dense_log)
        return log_ratio + scale.clamp_min(MIN_DEPTH).log()[:, None, None]

    def save(self, folder: Path, extra: dict[str, str]) -> Path:
        """Write ``light_completer.safetensors`` into ``folder`` (atomically); returns its path."""
        return save_light_weights(self.net, Path(folder) / "light_completer.safetensors", extra)


class ZoeDepthModel(nn.Module):
    """Invisible Stitch's 5-channel ZoeDepth, trainable.

    Args:
        model: a ``ZoeDepthForDepthEstimation`` whose backbone takes 5 channels.
        options: the inference options whose depth scaling the training follows (per view by default:
            :func:`models.completion.view_scaling`), so the fine-tuned model is used as it was trained.
    """

    def __init__(self, model, options: CompletionOptions = CompletionOptions()):
        super().__init__()
        channels = getattr(model.config.backbone_config, "num_channels", 3)
        if channels != 5:
            raise ValueError(
                f"fine-tuning needs a 5-channel ZoeDepth [RGB, sparse depth, mask], this one takes {channels}"
            )
        self.model = model
        self.options = options
        self.net_size = network_size(model, options)

    @staticmethod
    def load(path: Path, options: CompletionOptions = CompletionOptions()) -> ZoeDepthModel:
        from transformers import ZoeDepthForDepthEstimation

        path = Path(path).expanduser()
        if not (path / "config.json").is_file():
            raise ValueError(f"{str(path)!r} is not a transformers ZoeDepth folder (config.json missing)")
        return ZoeDepthModel(ZoeDepthForDepthEstimation.from_pretrained(str(path)), options)

    def forward(
        self,
        image: Tensor,  # [B, 3, H, W] in [0, 1]
        known_depth: Tensor,  # [B, H, W]
        known_mask: Tensor,  # [B, H, W] bool
        K: Tensor,  # [B, 3, 3] (unused: ZoeDepth does not take intrinsics)
        dense_log: Tensor | None = None,  # [B, H, W] (unused)
    ) -> Tensor:  # [B, H, W] log-depth
        height, width = image.shape[-2:]
        valid = (known_mask & (known_depth > 0)).to(image)
        scaling = torch.tensor(
            [view_scaling(known_depth[b], valid[b] > 0, self.options) for b in range(len(image))], device=image.device
        ).to(image)[:, None, None]  # [B, 1, 1]
        sparse = known_depth.to(image) * valid / (scaling * TRAINING_MAX_DEPTH)
        x = torch.cat([(image - RGB_MEAN) / RGB_STD, sparse[:, None], valid[:, None]], dim=1)
        x = F.interpolate(x, size=self.net_size, mode="bilinear", align_corners=True)
        out = self.model(pixel_values=x).predicted_depth  # [B, h, w]
        out = F.interpolate(out[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
        return (scaling * out).clamp_min(MIN_DEPTH).log()

    def save(self, folder: Path, extra: dict[str, str]) -> Path:
        """Write the fine-tuned model as a transformers folder ``folder / "zoedepth_completer"`` (swapped in whole:
        a crash leaves the previous folder); loadable with ``--completer PATH``."""
        final = Path(folder) / "zoedepth_completer"
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".zoedepth_completer.", dir=final.parent))
        try:
            self.model.save_pretrained(staging)
            (staging / "training.txt").write_text("".join(f"{k}: {v}\n" for k, v in sorted(extra.items())))
            old = None
            if final.exists():
                old = final.with_name(final.name + ".old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
            os.replace(staging, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final
