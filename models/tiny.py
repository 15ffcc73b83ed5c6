"""Tiny random versions of every supported model, saved in the same on-disk layout as the real ones.

Tests (and the CLI's smoke test) load these through the real loading code by path, so the whole model path —
``from_pretrained``, pre/post-processing, TTA, compositing — runs offline in seconds. The weights are random: the
outputs mean nothing, only their shapes, determinism and the preserved pixels do.

    python -m models.tiny --out DIR      # writes DIR/outpainter, DIR/depth-metric, DIR/depth-relative,
                                         # DIR/depth-zoe, DIR/completer

Nothing here runs at import time; torch, diffusers and transformers are imported inside the builders.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

TINY_SEED = 0
"""Seed of the random initialisation, so two calls write the same weights."""

TINY_HIDDEN = 32
"""Width of every tiny transformer / conv stack (diffusers' dummy components use 32)."""

DEPTH_KINDS = ("metric", "relative", "zoedepth")
"""What ``save_tiny_depth`` can write: Depth Anything metric / relative (inverse), or ZoeDepth (metric)."""

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _write_clip_vocab(folder: Path) -> tuple[Path, Path]:
    """A character-level CLIP BPE vocabulary (no merges): enough to tokenise any lower-case prompt."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for char in _LETTERS + "0123456789,.":
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab))
    merges_file.write_text("#version: 0.2\n")
    return vocab_file, merges_file


def _tiny_tokenizer(scratch: Path):
    from transformers import CLIPTokenizer

    vocab_file, merges_file = _write_clip_vocab(scratch)
    return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)


def _tiny_text_encoder(vocab_size: int, with_projection: bool = False):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(TINY_SEED)
    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=TINY_HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        projection_dim=TINY_HIDDEN,
        max_position_embeddings=77,
    )
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def _tiny_vae():
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(TINY_SEED)
    return AutoencoderKL(
        block_out_channels=[TINY_HIDDEN, TINY_HIDDEN],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
    )


def _tiny_inpaint_unet(**extra):
    """A random 9-channel inpainting UNet (noisy latents 4 + mask 1 + masked-image latents 4), two blocks."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(TINY_SEED)
    return UNet2DConditionModel(
        block_out_channels=(TINY_HIDDEN, TINY_HIDDEN * 2),
        layers_per_block=1,
        sample_size=32,
        in_channels=9,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        **extra,
    )


def build_tiny_inpaint_pipeline(scratch: Path):
    """A random StableDiffusionInpaintPipeline (9-channel UNet, 2-block VAE, 32-wide CLIP). Runs 64² in ~1 s."""
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline

    tokenizer = _tiny_tokenizer(scratch)
    unet = _tiny_inpaint_unet(cross_attention_dim=TINY_HIDDEN, attention_head_dim=8)
    return StableDiffusionInpaintPipeline(
        vae=_tiny_vae(),
        text_encoder=_tiny_text_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_sdxl_inpaint_pipeline(scratch: Path):
    """A random StableDiffusionXLInpaintPipeline (two text encoders, text-time embeddings)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLInpaintPipeline

    tokenizer = _tiny_tokenizer(scratch)
    unet = _tiny_inpaint_unet(
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=5 * 8 + TINY_HIDDEN,  # 5 time ids (aesthetic score) + pooled text
        cross_attention_dim=TINY_HIDDEN * 2,  # both encoders' hidden states concatenated
    )
    return StableDiffusionXLInpaintPipeline(
        vae=_tiny_vae(),
        text_encoder=_tiny_text_encoder(len(tokenizer)),
        text_encoder_2=_tiny_text_encoder(len(tokenizer), with_projection=True),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", timestep_spacing="leading"),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=True,
    )


def build_tiny_depth_anything(kind: str = "metric"):
    """A random DepthAnythingForDepthEstimation (Dinov2 backbone, hidden 32) and its processor at 56²."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    if kind not in ("metric", "relative"):
        raise ValueError(f"kind must be 'metric' or 'relative', got {kind!r}")
    backbone = Dinov2Config(
        image_size=56,
        patch_size=14,
        hidden_size=TINY_HIDDEN,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=TINY_HIDDEN,
        neck_hidden_sizes=[8, 16, 16, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        depth_estimation_type=kind,
        max_depth=20 if kind == "metric" else 1,
    )
    torch.manual_seed(TINY_SEED)
    model = DepthAnythingForDepthEstimation(config).eval()
    processor = DPTImageProcessor(
        size={"height": 56, "width": 56},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        do_rescale=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    return model, processor


def _tiny_zoedepth_config(num_channels: int):
    from transformers import BeitConfig, ZoeDepthConfig

    backbone = BeitConfig(
        image_size=64,
        patch_size=16,
        num_channels=num_channels,
        hidden_size=TINY_HIDDEN,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        use_relative_position_bias=True,
        reshape_hidden_states=False,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return ZoeDepthConfig(
        backbone_config=backbone,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        bottleneck_features=16,
        num_relative_features=8,
        bin_embedding_dim=8,
        num_attractors=[4, 2, 2, 1],
        bin_configurations=[{"n_bins": 8, "min_depth": 1e-3, "max_depth": 10.0}],
    )


def build_tiny_zoedepth(num_channels: int = 3):
    """A random ZoeDepthForDepthEstimation (BEiT backbone, hidden 32); 5 channels = Invisible Stitch's completer."""
    import torch
    from transformers import ZoeDepthForDepthEstimation, ZoeDepthImageProcessor

    torch.manual_seed(TINY_SEED)
    model = ZoeDepthForDepthEstimation(_tiny_zoedepth_config(num_channels)).eval()
    processor = ZoeDepthImageProcessor(size={"height": 64, "width": 64}, keep_aspect_ratio=True, ensure_multiple_of=32)
    return model, processor


def save_tiny_outpainter(out_dir: str | Path, kind: str = "sd") -> Path:
    """Write a tiny inpainting pipeline (``kind`` "sd" or "sdxl") as a diffusers folder; returns the folder."""
    out_dir = Path(out_dir)
    builders = {"sd": build_tiny_inpaint_pipeline, "sdxl": build_tiny_sdxl_inpaint_pipeline}
    if kind not in builders:
        raise ValueError(f"kind must be one of {sorted(builders)}, got {kind!r}")
    with tempfile.TemporaryDirectory() as scratch:
        pipe = builders[kind](Path(scratch))
        pipe.save_pretrained(out_dir)
    return out_dir


def save_tiny_depth(out_dir: str | Path, kind: str = "metric") -> Path:
    """Write a tiny depth estimator (``kind`` in :data:`DEPTH_KINDS`) with its image processor."""
    out_dir = Path(out_dir)
    if kind == "zoedepth":
        model, processor = build_tiny_zoedepth(3)
    elif kind in ("metric", "relative"):
        model, processor = build_tiny_depth_anything(kind)
    else:
        raise ValueError(f"kind must be one of {DEPTH_KINDS}, got {kind!r}")
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def save_tiny_completer(out_dir: str | Path) -> Path:
    """Write a tiny 5-channel ZoeDepth (Invisible Stitch's completer design) as a transformers folder."""
    out_dir = Path(out_dir)
    model, _ = build_tiny_zoedepth(5)
    model.save_pretrained(out_dir)
    return out_dir


def save_all(out_dir: str | Path) -> dict[str, Path]:
    """Write every tiny model under ``out_dir``; returns name -> folder."""
    out_dir = Path(out_dir)
    return {
        "outpainter": save_tiny_outpainter(out_dir / "outpainter"),
        "depth-metric": save_tiny_depth(out_dir / "depth-metric", "metric"),
        "depth-relative": save_tiny_depth(out_dir / "depth-relative", "relative"),
        "depth-zoe": save_tiny_depth(out_dir / "depth-zoe", "zoedepth"),
        "completer": save_tiny_completer(out_dir / "completer"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write tiny random models (for tests and smoke runs).")
    parser.add_argument("--out", required=True, help="folder to write into (one sub-folder per model)")
    parser.add_argument("--sdxl", action="store_true", help="also write a tiny SDXL inpainting pipeline")
    args = parser.parse_args(argv)
    written = save_all(args.out)
    if args.sdxl:
        written["outpainter-sdxl"] = save_tiny_outpainter(Path(args.out) / "outpainter-sdxl", "sdxl")
    for name, folder in written.items():
        print(f"{name}: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
