"""Invisible Stitch checkpoint conversion: original ZoeDepth key names -> transformers' ZoeDepthForDepthEstimation.

The real checkpoint is not reachable here, so a tiny 5-channel model's weights are renamed into the original
scheme (by the hand-written inverse below, which follows the original module layout) and must round-trip.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.netguard are redefined as parameters)
from __future__ import annotations

import re

import pytest
import torch

from core.cameras import make_cameras
from models.completion import CompletionOptions
from models.invisible_stitch import (
    convert_invisible_stitch_state_dict,
    load_invisible_stitch_checkpoint,
    unwrap_checkpoint,
)
from models.tiny import _tiny_zoedepth_config, build_tiny_zoedepth
from tests.netguard import no_network  # noqa: F401  (fixture)

B = "core.core.pretrained.model.blocks"
_INVERSE = [
    (r"^backbone\.beit\.embeddings\.cls_token$", "core.core.pretrained.model.cls_token"),
    (
        r"^backbone\.beit\.embeddings\.patch_embeddings\.projection\.(\w+)$",
        r"core.core.pretrained.model.patch_embed.proj.\1",
    ),
    (r"^backbone\.beit\.layers\.(\d+)\.layernorm_before\.(\w+)$", B + r".\1.norm1.\2"),
    (r"^backbone\.beit\.layers\.(\d+)\.layernorm_after\.(\w+)$", B + r".\1.norm2.\2"),
    (r"^backbone\.beit\.layers\.(\d+)\.lambda_(\d)$", B + r".\1.gamma_\2"),
    (r"^backbone\.beit\.layers\.(\d+)\.attention\.q_proj\.bias$", B + r".\1.attn.q_bias"),
    (r"^backbone\.beit\.layers\.(\d+)\.attention\.v_proj\.bias$", B + r".\1.attn.v_bias"),
    (r"^backbone\.beit\.layers\.(\d+)\.attention\.o_proj\.(\w+)$", B + r".\1.attn.proj.\2"),
    (
        r"^backbone\.beit\.layers\.(\d+)\.relative_position_bias\.relative_position_bias_table$",
        B + r".\1.attn.relative_position_bias_table",
    ),
    (r"^backbone\.beit\.layers\.(\d+)\.mlp\.(fc\d)\.(\w+)$", B + r".\1.mlp.\2.\3"),
    (r"^relative_head\.conv1\.(\w+)$", r"core.core.scratch.output_conv.0.\1"),
    (r"^relative_head\.conv2\.(\w+)$", r"core.core.scratch.output_conv.2.\1"),
    (r"^relative_head\.conv3\.(\w+)$", r"core.core.scratch.output_conv.4.\1"),
    (r"^metric_head\.conv2\.(\w+)$", r"conv2.\1"),
    (r"^metric_head\.(seed_bin_regressor|seed_projector)\.conv1\.(\w+)$", r"\1._net.0.\2"),
    (r"^metric_head\.(seed_bin_regressor|seed_projector)\.conv2\.(\w+)$", r"\1._net.2.\2"),
    (r"^metric_head\.(projectors|attractors)\.(\d+)\.conv1\.(\w+)$", r"\1.\2._net.0.\3"),
    (r"^metric_head\.(projectors|attractors)\.(\d+)\.conv2\.(\w+)$", r"\1.\2._net.2.\3"),
    (r"^metric_head\.conditional_log_binomial\.mlp\.(\d)\.(\w+)$", r"conditional_log_binomial.mlp.\1.\2"),
]


def to_original_names(hf_state: dict) -> dict:
    """Rename a transformers ZoeDepth state dict into the original ZoeDepth / MiDaS / timm naming."""
    out = {}
    for key, value in hf_state.items():
        if m := re.match(r"^backbone\.beit\.layers\.(\d+)\.attention\.([qkv])_proj\.weight$", key):
            if m[2] == "q":
                prefix = f"backbone.beit.layers.{m[1]}.attention"
                out[f"{B}.{m[1]}.attn.qkv.weight"] = torch.cat([hf_state[f"{prefix}.{p}_proj.weight"] for p in "qkv"])
            continue
        if m := re.match(r"^neck\.reassemble_stage\.readout_projects\.(\d)\.0\.(\w+)$", key):
            out[f"core.core.pretrained.act_postprocess{int(m[1]) + 1}.0.project.0.{m[2]}"] = value
            continue
        if m := re.match(r"^neck\.reassemble_stage\.layers\.(\d)\.(projection|resize)\.(\w+)$", key):
            index = 3 if m[2] == "projection" else 4
            out[f"core.core.pretrained.act_postprocess{int(m[1]) + 1}.{index}.{m[3]}"] = value
            continue
        if m := re.match(r"^neck\.convs\.(\d)\.weight$", key):
            out[f"core.core.scratch.layer{int(m[1]) + 1}_rn.weight"] = value
            continue
        if m := re.match(r"^neck\.fusion_stage\.layers\.(\d)\.projection\.(\w+)$", key):
            out[f"core.core.scratch.refinenet{4 - int(m[1])}.out_conv.{m[2]}"] = value
            continue
        if m := re.match(r"^neck\.fusion_stage\.layers\.(\d)\.residual_layer(\d)\.convolution(\d)\.(\w+)$", key):
            out[f"core.core.scratch.refinenet{4 - int(m[1])}.resConfUnit{m[2]}.conv{m[3]}.{m[4]}"] = value
            continue
        for pattern, template in _INVERSE:
            if re.match(pattern, key):
                out[re.sub(pattern, template, key)] = value
                break
        else:
            raise AssertionError(f"test inverse has no rule for {key}")
    # things the original has that transformers recomputes or never uses
    out[f"{B}.0.attn.relative_position_index"] = torch.zeros(3, dtype=torch.long)
    out["conditional_log_binomial.log_binomial_transform.k_idx"] = torch.arange(4)
    out["conditional_log_binomial.log_binomial_transform.K_minus_1"] = torch.tensor(3.0)
    out["core.core.pretrained.model.fc_norm.weight"] = torch.ones(2)
    out["core.core.pretrained.model.head.weight"] = torch.ones(2, 2)
    return out


@pytest.fixture(scope="module")
def tiny_pair():
    model, _ = build_tiny_zoedepth(5)
    return model, to_original_names(model.state_dict())


def test_round_trip_into_the_tiny_model(tiny_pair):
    model, original = tiny_pair
    assert "core.core.pretrained.model.blocks.0.attn.qkv.weight" in original
    converted = convert_invisible_stitch_state_dict(original)
    reference = model.state_dict()
    assert set(converted) == set(reference)
    for key, value in reference.items():
        assert torch.equal(converted[key], value), key
    fresh = type(model)(model.config).eval()
    fresh.load_state_dict(converted, strict=True)
    x = torch.rand(1, 5, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(fresh(pixel_values=x).predicted_depth, model(pixel_values=x).predicted_depth)


def test_known_original_names_map_where_the_reference_converter_puts_them():
    # a few literal keys as they appear in isl-org ZoeDepth checkpoints, with transformers 5 names
    cases = {
        "core.core.scratch.refinenet1.resConfUnit2.conv1.weight": (
            "neck.fusion_stage.layers.3.residual_layer2.convolution1.weight"
        ),
        "core.core.scratch.refinenet4.out_conv.bias": "neck.fusion_stage.layers.0.projection.bias",
        "core.core.pretrained.act_postprocess4.4.weight": "neck.reassemble_stage.layers.3.resize.weight",
        "core.core.pretrained.model.blocks.23.gamma_2": "backbone.beit.layers.23.lambda_2",
        "attractors.3._net.2.bias": "metric_head.attractors.3.conv2.bias",
        "seed_bin_regressor._net.0.weight": "metric_head.seed_bin_regressor.conv1.weight",
        "core.core.scratch.output_conv.4.weight": "relative_head.conv3.weight",
    }
    for original, expected in cases.items():
        assert list(convert_invisible_stitch_state_dict({original: torch.zeros(1)})) == [expected]


def test_checkpoint_wrappers_and_unknown_keys():
    wrapped = {"model": {"module.conv2.weight": torch.ones(1)}, "optimizer": {}}
    assert list(unwrap_checkpoint(wrapped)) == ["conv2.weight"]
    assert list(convert_invisible_stitch_state_dict(wrapped)) == ["metric_head.conv2.weight"]
    with pytest.raises(ValueError, match="no mapping"):
        convert_invisible_stitch_state_dict({"something.else": torch.ones(1)})
    assert convert_invisible_stitch_state_dict({"something.else": torch.ones(1)}, strict=False) == {}


def test_load_original_checkpoint_file(tiny_pair, tmp_path, no_network):
    _, original = tiny_pair
    path = tmp_path / "invisible-stitch.pt"
    torch.save({"model": {"module." + k: v for k, v in original.items()}}, path)
    completer = load_invisible_stitch_checkpoint(
        path, device="cpu", options=CompletionOptions(), config=_tiny_zoedepth_config(5)
    )
    camera = make_cameras("single", (64, 48))[0]
    known_mask = torch.zeros(48, 64, dtype=torch.bool)
    known_mask[:, :20] = True
    known_depth = torch.where(known_mask, torch.full((48, 64), 2.0), torch.zeros(()))
    depth = completer.complete(torch.rand(48, 64, 3), known_depth, known_mask, camera)
    assert depth.shape == (48, 64) and torch.equal(depth[known_mask], known_depth[known_mask])


def test_stray_key_bias_is_dropped_and_changes_nothing(tiny_pair, tmp_path, no_network):
    """Some timm versions store BEiT's key bias; the strict conversion and the checkpoint load must accept it, and
    the softmax makes any key bias irrelevant, so the outputs equal those of the checkpoint without it."""
    model, original = tiny_pair
    with_k_bias = dict(original)
    for block in range(model.config.backbone_config.num_hidden_layers):
        with_k_bias[f"core.core.pretrained.model.blocks.{block}.attn.k_bias"] = torch.randn(
            model.config.backbone_config.hidden_size
        )
    converted = convert_invisible_stitch_state_dict(with_k_bias, strict=True)
    assert set(converted) == set(model.state_dict())
    path = tmp_path / "with-k-bias.pt"
    torch.save(with_k_bias, path)
    completer = load_invisible_stitch_checkpoint(path, device="cpu", config=_tiny_zoedepth_config(5))
    x = torch.rand(1, 5, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(completer.model(pixel_values=x).predicted_depth, model(pixel_values=x).predicted_depth)


def test_the_github_repository_id_gets_a_clear_message(no_network):
    from models.hub import ModelUnavailableError
    from models.registry import build_completer

    with pytest.raises(ModelUnavailableError, match="GitHub repository, not a Hugging Face model") as info:
        build_completer("paulengstler/invisible-stitch", None, device="cpu")
    assert "github.com/paulengstler/invisible-stitch/releases" in str(info.value)
    assert "huggingface-cli" not in str(info.value)
    with pytest.raises(ModelUnavailableError, match="--completer PATH"):
        build_completer("missing/invisible-stitch.pt", None, device="cpu")
