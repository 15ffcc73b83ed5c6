"""Invisible Stitch's depth-completion checkpoint → transformers ``ZoeDepthForDepthEstimation`` (5-channel BEiT).

UNVERIFIED against the real checkpoint: the Hub is unreachable where this was written, so the mapping below was
derived from the original code (isl-org/ZoeDepth as vendored by paulengstler/invisible-stitch: ``MidasCore``,
``ZoeDepth`` v1, timm's BEiT) and transformers' own ``convert_zoedepth_to_hf.py``, and tested only by round-tripping
a tiny model's weights renamed into the original scheme. The first load of ``invisible-stitch.pt`` should be checked
with :func:`convert_invisible_stitch_state_dict` (``strict`` lists anything unmapped) and by comparing depths on a
photo with the original repository's ``infer_with_zoe_dc``.

The checkpoint (file ``invisible-stitch.pt``, a release file of the GitHub repository
``paulengstler/invisible-stitch``; it is not a Hugging Face Hub model) is a ZoeD_N (BEiT-L/16 at
384, one metric head, 64 softplus bins in [1e-3, 10] m) whose patch embedding was widened from 3 to 5 input channels.
Its file may hold the state dict directly or under ``"model"``, with or without DataParallel's ``module.`` prefix.

Key mapping (original → transformers 5.x naming as installed; ``{i}`` is kept, ``{k}`` = 1..4):

==========================================================  =========================================================
original (ZoeDepth / MiDaS / timm BEiT)                      transformers ``ZoeDepthForDepthEstimation``
==========================================================  =========================================================
core.core.pretrained.model.cls_token                         backbone.beit.embeddings.cls_token
core.core.pretrained.model.patch_embed.proj.*                backbone.beit.embeddings.patch_embeddings.projection.*
…model.blocks.{i}.norm1.* / norm2.*                          backbone.beit.layers.{i}.layernorm_before.* / _after.*
…model.blocks.{i}.gamma_1 / gamma_2                          backbone.beit.layers.{i}.lambda_1 / lambda_2
…model.blocks.{i}.attn.qkv.weight  (fused, rows q|k|v)       …layers.{i}.attention.{q,k,v}_proj.weight (split in 3)
…model.blocks.{i}.attn.q_bias / v_bias  (no k bias)          …layers.{i}.attention.q_proj.bias / v_proj.bias
…model.blocks.{i}.attn.proj.*                                …layers.{i}.attention.o_proj.*
…model.blocks.{i}.attn.relative_position_bias_table          …layers.{i}.relative_position_bias.<same name>
…model.blocks.{i}.mlp.fc1.* / fc2.*                          …layers.{i}.mlp.fc1.* / fc2.*
core.core.pretrained.act_postprocess{k}.0.project.0.*        neck.reassemble_stage.readout_projects.{k-1}.0.*
core.core.pretrained.act_postprocess{k}.3.*                  neck.reassemble_stage.layers.{k-1}.projection.*
core.core.pretrained.act_postprocess{k}.4.*  (k ≠ 3)         neck.reassemble_stage.layers.{k-1}.resize.*
core.core.scratch.layer{k}_rn.weight                         neck.convs.{k-1}.weight
core.core.scratch.refinenet{k}.out_conv.*                    neck.fusion_stage.layers.{4-k}.projection.*   (reversed!)
core.core.scratch.refinenet{k}.resConfUnit{j}.conv{m}.*      …fusion_stage.layers.{4-k}.residual_layer{j}.convolution{m}
core.core.scratch.output_conv.{0,2,4}.*                      relative_head.conv{1,2,3}.*
conv2.*  (bottleneck conv of the metric head)                metric_head.conv2.*
seed_bin_regressor._net.{0,2}.*                              metric_head.seed_bin_regressor.conv{1,2}.*
seed_projector._net.{0,2}.*                                  metric_head.seed_projector.conv{1,2}.*
projectors.{i}._net.{0,2}.* / attractors.{i}._net.{0,2}.*    metric_head.projectors/attractors.{i}.conv{1,2}.*
conditional_log_binomial.mlp.{0,2}.*                         metric_head.conditional_log_binomial.mlp.{0,2}.*
==========================================================  =========================================================

Dropped (buffers transformers recomputes, or heads ZoeDepth never uses): ``relative_position_index``,
``log_binomial_transform.k_idx`` / ``K_minus_1``, ``model.fc_norm.*``, ``model.head.*``, ``model.norm.*``, and
``attn.k_bias``: some timm versions store BEiT's (always zero, never trained) key bias; a key bias adds the same
``q · k_bias`` to every logit of a query, which the softmax cancels, so dropping it is exact whatever its value.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor

from models.completion import CompletionOptions, LearnedCompleter
from models.hub import ModelUnavailableError, pick_device

CHECKPOINT_REPO = "paulengstler/invisible-stitch"
"""The GitHub repository that publishes the checkpoint (not a Hugging Face Hub id)."""
CHECKPOINT_FILE = "invisible-stitch.pt"
CHECKPOINT_HELP = (
    f"download {CHECKPOINT_FILE} from the release files of https://github.com/{CHECKPOINT_REPO}/releases and pass "
    "the file's path with --completer PATH, or use `--completer aligned` "
    "(`--profile offline` needs no downloads)"
)
"""How to get the checkpoint, for error messages."""

_BACKBONE = "core.core.pretrained.model."
_DROP = re.compile(
    r"(relative_position_index$|log_binomial_transform\.(k_idx|K_minus_1)$|\.attn\.k_bias$|"
    r"^core\.core\.pretrained\.model\.(fc_norm|head|norm)\.)"
)

# (original pattern, transformers template); the first match wins. Backbone attention qkv is handled separately.
_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^core\.core\.pretrained\.model\.cls_token$"), "backbone.beit.embeddings.cls_token"),
    (
        re.compile(r"^core\.core\.pretrained\.model\.patch_embed\.proj\.(weight|bias)$"),
        r"backbone.beit.embeddings.patch_embeddings.projection.\1",
    ),
    (
        re.compile(r"^core\.core\.pretrained\.model\.blocks\.(\d+)\.norm1\.(weight|bias)$"),
        r"backbone.beit.layers.\1.layernorm_before.\2",
    ),
    (
        re.compile(r"^core\.core\.pretrained\.model\.blocks\.(\d+)\.norm2\.(weight|bias)$"),
        r"backbone.beit.layers.\1.layernorm_after.\2",
    ),
    (re.compile(r"^core\.core\.pretrained\.model\.blocks\.(\d+)\.gamma_([12])$"), r"backbone.beit.layers.\1.lambda_\2"),
    (
        re.compile(r"^core\.core\.pretrained\.model\.blocks\.(\d+)\.attn\.q_bias$"),
        r"backbone.beit.layers.\1.attention.q_proj.bias",
    ),
    (
        re.compile(r"^core\.core\.pretrained\.model\.blocks\.(\d+)\.attn\.v_bias$"),
        r"backbone.beit.layers.\1.attention.v_proj.bias",
    ),
    (
        re.compile(r"^core\.core\.pretrained\.model\.blocks\.(\d+)\.attn\.proj\.(weight|bias)$"),
        r"backbone.beit.layers.\1.attention.o_proj.\2",
    ),
    (
        re.compile(r"^core\.core\.pretrained\.model\.blocks\.(\d+)\.attn\.relative_position_bias_table$"),
        r"backbone.beit.layers.\1.relative_position_bias.relative_position_bias_table",
    ),
    (
        re.compile(r"^core\.core\.pretrained\.model\.blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)$"),
        r"backbone.beit.layers.\1.mlp.\2.\3",
    ),
    (re.compile(r"^core\.core\.scratch\.output_conv\.0\.(weight|bias)$"), r"relative_head.conv1.\1"),
    (re.compile(r"^core\.core\.scratch\.output_conv\.2\.(weight|bias)$"), r"relative_head.conv2.\1"),
    (re.compile(r"^core\.core\.scratch\.output_conv\.4\.(weight|bias)$"), r"relative_head.conv3.\1"),
    (re.compile(r"^conv2\.(weight|bias)$"), r"metric_head.conv2.\1"),
    (re.compile(r"^(seed_bin_regressor|seed_projector)\._net\.0\.(weight|bias)$"), r"metric_head.\1.conv1.\2"),
    (re.compile(r"^(seed_bin_regressor|seed_projector)\._net\.2\.(weight|bias)$"), r"metric_head.\1.conv2.\2"),
    (re.compile(r"^(projectors|attractors)\.(\d+)\._net\.0\.(weight|bias)$"), r"metric_head.\1.\2.conv1.\3"),
    (re.compile(r"^(projectors|attractors)\.(\d+)\._net\.2\.(weight|bias)$"), r"metric_head.\1.\2.conv2.\3"),
    (
        re.compile(r"^conditional_log_binomial\.mlp\.([02])\.(weight|bias)$"),
        r"metric_head.conditional_log_binomial.mlp.\1.\2",
    ),
]

_POSTPROCESS = re.compile(r"^core\.core\.pretrained\.act_postprocess([1-4])\.(0\.project\.0|3|4)\.(weight|bias)$")
_LAYER_RN = re.compile(r"^core\.core\.scratch\.layer([1-4])_rn\.weight$")
_REFINENET = re.compile(
    r"^core\.core\.scratch\.refinenet([1-4])\.(out_conv|resConfUnit([12])\.conv([12]))\.(weight|bias)$"
)
_QKV = re.compile(r"^core\.core\.pretrained\.model\.blocks\.(\d+)\.attn\.qkv\.weight$")


def _rename(key: str) -> str | None:
    """The transformers name of one original key (None when no rule applies)."""
    for pattern, template in _RULES:
        if pattern.match(key):
            return pattern.sub(template, key)
    if m := _POSTPROCESS.match(key):
        stage, part, param = int(m[1]) - 1, m[2], m[3]
        if part == "0.project.0":
            return f"neck.reassemble_stage.readout_projects.{stage}.0.{param}"
        return f"neck.reassemble_stage.layers.{stage}.{'projection' if part == '3' else 'resize'}.{param}"
    if m := _LAYER_RN.match(key):
        return f"neck.convs.{int(m[1]) - 1}.weight"
    if m := _REFINENET.match(key):
        layer = 4 - int(m[1])  # MiDaS fuses refinenet4 first; transformers numbers fusion layers in that order
        if m[2] == "out_conv":
            return f"neck.fusion_stage.layers.{layer}.projection.{m[5]}"
        return f"neck.fusion_stage.layers.{layer}.residual_layer{m[3]}.convolution{m[4]}.{m[5]}"
    return None


def unwrap_checkpoint(checkpoint: dict) -> dict[str, Tensor]:
    """The model state dict inside a ZoeDepth training checkpoint (``{"model": ...}``, ``module.`` prefixes)."""
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state, dict):
        raise ValueError(f"expected a state dict (or a dict with 'model'), got {type(state).__name__}")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def convert_invisible_stitch_state_dict(state_dict: dict[str, Tensor], strict: bool = True) -> dict[str, Tensor]:
    """Rename an original ZoeDepth / Invisible Stitch state dict to transformers' ZoeDepthForDepthEstimation.

    UNVERIFIED against the real ``invisible-stitch.pt`` (see module docstring); tested by round trip only.

    Args:
        state_dict: original keys (``core.core.pretrained.model.…``, ``core.core.scratch.…``, ``attractors.N…``);
            a ``{"model": ...}`` wrapper and ``module.`` prefixes are removed first.
        strict: raise when a key matches no rule (instead of skipping it).

    Returns:
        A new dict with transformers 5.x names; fused ``qkv`` weights are split into ``q_proj``/``k_proj``/``v_proj``.
    """
    converted: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in unwrap_checkpoint(state_dict).items():
        if _DROP.search(key):
            continue
        if m := _QKV.match(key):
            q, k, v = value.chunk(3, dim=0)  # timm packs the projections row-wise in q, k, v order
            prefix = f"backbone.beit.layers.{m[1]}.attention"
            converted[f"{prefix}.q_proj.weight"] = q.clone()
            converted[f"{prefix}.k_proj.weight"] = k.clone()
            converted[f"{prefix}.v_proj.weight"] = v.clone()
            continue
        new_key = _rename(key)
        if new_key is None:
            unknown.append(key)
            continue
        converted[new_key] = value
    if unknown and strict:
        shown = ", ".join(unknown[:8]) + (f" … ({len(unknown)} in all)" if len(unknown) > 8 else "")
        raise ValueError(f"keys with no mapping to transformers' ZoeDepth: {shown}")
    return converted


def invisible_stitch_config():
    """transformers config of Invisible Stitch's completer: ZoeD_N (BEiT-L/16 @384) with 5 input channels."""
    from transformers import BeitConfig, ZoeDepthConfig

    backbone = BeitConfig(
        image_size=384,
        num_channels=5,  # RGB, sparse depth / (scaling * 10), valid mask
        num_hidden_layers=24,
        hidden_size=1024,
        intermediate_size=4096,
        num_attention_heads=16,
        use_relative_position_bias=True,
        reshape_hidden_states=False,
        out_features=["stage6", "stage12", "stage18", "stage24"],
    )
    return ZoeDepthConfig(
        backbone_config=backbone,
        neck_hidden_sizes=[256, 512, 1024, 1024],
        bin_centers_type="softplus",
        bin_configurations=[{"n_bins": 64, "min_depth": 1e-3, "max_depth": 10.0}],
    )


def load_invisible_stitch_checkpoint(
    path: str | Path,
    *,
    device=None,
    options: CompletionOptions = CompletionOptions(),
    config=None,
) -> LearnedCompleter:
    """Build the completer from the original ``invisible-stitch.pt`` (converted in memory; UNVERIFIED mapping).

    Save it once in transformers layout with ``completer.model.save_pretrained(DIR)`` to load faster next time.
    """
    from transformers import ZoeDepthForDepthEstimation

    path = Path(path)
    if not path.is_file():
        raise ModelUnavailableError(f"depth completer checkpoint {str(path)!r} not found: {CHECKPOINT_HELP}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = convert_invisible_stitch_state_dict(checkpoint)
    model = ZoeDepthForDepthEstimation(config or invisible_stitch_config())
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path.name} does not fit Invisible Stitch's completer: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    model = model.to(pick_device(device)).eval()
    return LearnedCompleter(model, options, name=str(path))


def main(argv: list[str] | None = None) -> int:
    """``python -m models.invisible_stitch CHECKPOINT --out DIR``: convert once, then ``--completer DIR``."""
    import argparse

    parser = argparse.ArgumentParser(description="Convert invisible-stitch.pt to a transformers folder (UNVERIFIED).")
    parser.add_argument("checkpoint", help=f"path to {CHECKPOINT_FILE} (from github.com/{CHECKPOINT_REPO})")
    parser.add_argument("--out", required=True, help="folder to write config.json + model.safetensors into")
    args = parser.parse_args(argv)
    completer = load_invisible_stitch_checkpoint(args.checkpoint, device="cpu")
    completer.model.save_pretrained(args.out)
    print(f"wrote {args.out}; use it with --completer {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
