"""Every model option is reachable (issue 13): command-line flag → run configuration → the built component.

The flags are generated from the option dataclasses (``--models.diffusion.*``, ``--models.depth.*``,
``--models.completion.*``), so the table below must name every field: a new option without a row fails here.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.netguard are redefined as parameters)
from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from models.completion import CompletionOptions, LearnedCompleter
from models.depth import AnchoredDepth, DepthOptions, TransformersDepthEstimator
from models.diffusion import DiffusionOptions, DiffusionOutpainter, load_inpaint_pipeline
from models.hub import ModelSource
from models.registry import ModelOptions, build_components
from pipeline.cli import parse_args, run_config_from_args
from pipeline.job import load_components
from tests.netguard import no_network, tiny_models  # noqa: F401  (fixtures)

BASE_ARGV = ["--image", "photo.png", "--out", "out"]

# (options group, field, command-line tokens, value expected in the run configuration)
FLAGS = [
    ("diffusion", "steps", ["--models.diffusion.steps", "7"], 7),
    ("diffusion", "guidance", ["--models.diffusion.guidance", "3.5"], 3.5),
    ("diffusion", "strength", ["--models.diffusion.strength", "0.8"], 0.8),
    ("diffusion", "feather_px", ["--models.diffusion.feather-px", "2"], 2),
    ("diffusion", "prefill", ["--models.diffusion.prefill", "patchmatch"], "patchmatch"),
    ("diffusion", "resolution", ["--models.diffusion.resolution", "0"], 0),
    ("diffusion", "cpu_offload", ["--models.diffusion.cpu-offload"], True),
    ("diffusion", "dtype", ["--models.diffusion.dtype", "float32"], "float32"),
    ("diffusion", "fp16_variant", ["--models.diffusion.no-fp16-variant"], False),
    ("depth", "flip_tta", ["--models.depth.no-flip-tta"], False),
    ("depth", "kind", ["--models.depth.kind", "relative"], "relative"),
    ("depth", "dtype", ["--models.depth.dtype", "bfloat16"], "bfloat16"),
    ("depth", "input_size", ["--models.depth.input-size", "70"], 70),
    ("depth", "anchor", ["--models.depth.anchor", "none"], "none"),
    ("depth", "anchor_camera_height", ["--models.depth.anchor-camera-height", "1.2"], 1.2),
    ("depth", "anchor_max_depth", ["--models.depth.anchor-max-depth", "40"], 40.0),
    ("completion", "scaling", ["--models.completion.scaling", "0.5"], 0.5),
    ("completion", "known_fraction", ["--models.completion.known-fraction", "0.4"], 0.4),
    ("completion", "pad", ["--models.completion.no-pad"], False),
    ("completion", "flip_tta", ["--models.completion.no-flip-tta"], False),
    ("completion", "net_size", ["--models.completion.net-size", "64", "96"], (64, 96)),
    ("completion", "restore_known", ["--models.completion.no-restore-known"], False),
    ("completion", "dtype", ["--models.completion.dtype", "bfloat16"], "bfloat16"),
    (None, "scene", ["--models.scene", "outdoor"], "outdoor"),
    (None, "allow_download", ["--models.no-allow-download"], False),
]


def _option(options: ModelOptions, group: str | None, name: str):
    return getattr(options if group is None else getattr(options, group), name)


def test_the_flag_table_names_every_model_option():
    listed = {(group, name) for group, name, _, _ in FLAGS}
    groups = {"diffusion": DiffusionOptions, "depth": DepthOptions, "completion": CompletionOptions}
    expected = {(group, f.name) for group, cls in groups.items() for f in fields(cls)}
    expected |= {(None, f.name) for f in fields(ModelOptions) if f.name not in groups}
    assert listed == expected


@pytest.mark.parametrize("group, name, tokens, value", FLAGS, ids=[f"{g}.{n}" for g, n, _, _ in FLAGS])
def test_each_flag_reaches_the_run_configuration(group, name, tokens, value):
    default = _option(ModelOptions(), group, name)
    assert default != value  # the flag must change something
    config = run_config_from_args(parse_args(BASE_ARGV + tokens))
    assert _option(config.models.options, group, name) == value


def test_bad_option_values_are_refused_with_the_option_named():
    with pytest.raises(ValueError, match="strength"):
        DiffusionOptions(strength=1.5)
    with pytest.raises(ValueError, match="feather_px"):
        DiffusionOptions(feather_px=-1)
    with pytest.raises(ValueError, match="anchor_camera_height"):
        DepthOptions(anchor_camera_height=0.0)
    with pytest.raises(ValueError, match="net_size"):
        CompletionOptions(net_size=(63, 96))
    with pytest.raises(ValueError, match="scene"):
        ModelOptions(scene="underwater")
    with pytest.raises(ValueError, match="ModelOptions.depth"):
        ModelOptions(depth=DiffusionOptions())


def test_flags_reach_the_loaded_components(tiny_models, no_network):
    argv = BASE_ARGV + [
        "--profile", "offline",
        "--outpainter", str(tiny_models["outpainter"]),
        "--depth-model", str(tiny_models["depth-relative"]),
        "--completer", str(tiny_models["completer"]),
        "--models.diffusion.strength", "0.8",
        "--models.diffusion.feather-px", "2",
        "--models.diffusion.resolution", "0",
        "--models.diffusion.cpu-offload",
        "--models.diffusion.dtype", "float32",
        "--models.depth.input-size", "70",
        "--models.depth.no-flip-tta",
        "--models.depth.anchor-camera-height", "1.2",
        "--models.depth.anchor-max-depth", "40",
        "--models.completion.scaling", "0.5",
        "--models.completion.known-fraction", "0.4",
        "--models.completion.no-pad",
    ]  # fmt: skip
    components = load_components(run_config_from_args(parse_args(argv)), device="cpu")

    painter = components.outpainter
    assert isinstance(painter, DiffusionOutpainter)
    assert painter.strength == 0.8 and painter.resolution == 0 and painter.options.feather_px == 2
    assert painter.options.cpu_offload and painter.pipe.unet.dtype == torch.float32
    estimator = components.estimator
    assert isinstance(estimator, AnchoredDepth)
    assert estimator.prior.camera_height == 1.2 and estimator.max_depth == 40.0
    assert estimator.relative.options.input_size == 70 and not estimator.relative.options.flip_tta
    assert isinstance(components.completer, LearnedCompleter)
    assert components.completer.options.scaling == 0.5 and not components.completer.options.pad


def test_depth_anchor_and_kind_flags_change_what_the_estimator_returns(tiny_models, no_network):
    relative = str(tiny_models["depth-relative"])
    for tokens, expected_type, kind in [
        (["--models.depth.anchor", "none"], TransformersDepthEstimator, "relative_inverse"),
        (["--models.depth.kind", "metric"], TransformersDepthEstimator, "metric"),
        ([], AnchoredDepth, "metric"),
    ]:
        config = run_config_from_args(
            parse_args(BASE_ARGV + ["--profile", "offline", "--depth-model", relative] + tokens)
        )
        estimator = load_components(config, device="cpu").estimator
        assert type(estimator) is expected_type and estimator.kind == kind


def test_scene_flag_picks_the_outdoor_model_and_no_download_is_respected(no_network):
    config = run_config_from_args(parse_args(BASE_ARGV + ["--profile", "generative", "--models.scene", "outdoor"]))
    with pytest.raises(OSError, match="Depth-Anything-V2-Metric-Outdoor") as info:
        build_components("generative", outpainter="patchmatch", device="cpu", options=config.models.options)
    assert "hf download" in str(info.value)


def test_app_server_flags_reach_the_model_options():
    app = pytest.importorskip("app")
    args = app.parse_args(["--models.diffusion.cpu-offload", "--models.depth.anchor", "none"])
    assert args.options.diffusion.cpu_offload and args.options.depth.anchor == "none"


class _RecordingPipeline:
    """Stands in for a diffusers pipeline class: records how it was loaded and whether offload was turned on."""

    calls: list[dict] = []

    def __init__(self):
        self.offload = None

    @classmethod
    def from_pretrained(cls, location, **kwargs):
        cls.calls.append(kwargs)
        if kwargs.get("variant") == "fp16" and "no-variant" in str(location):
            raise ValueError("You are trying to load model files of the `variant=fp16`, but no such files exist")
        return cls()

    def enable_model_cpu_offload(self, device=None):
        self.offload = device

    def to(self, device):
        return self

    def set_progress_bar_config(self, **kwargs):
        pass


def test_cpu_offload_and_fp16_variant_reach_the_diffusers_loader(monkeypatch, tmp_path):
    import diffusers

    monkeypatch.setattr(diffusers, "AutoPipelineForInpainting", _RecordingPipeline)
    cuda = torch.device("cuda")
    with_fp16 = tmp_path / "with-fp16"
    (with_fp16 / "unet").mkdir(parents=True)
    (with_fp16 / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"")
    without = tmp_path / "plain"
    without.mkdir()

    _RecordingPipeline.calls.clear()
    pipe = load_inpaint_pipeline(ModelSource("x", str(with_fp16), True), cuda, torch.float16, cpu_offload=True)
    assert pipe.offload == cuda and _RecordingPipeline.calls[-1]["variant"] == "fp16"
    load_inpaint_pipeline(ModelSource("x", str(without), True), cuda, torch.float16, cpu_offload=False)
    assert "variant" not in _RecordingPipeline.calls[-1]  # a folder without fp16 files loads its full weights
    load_inpaint_pipeline(ModelSource("org/no-variant", "org/no-variant", False), cuda, torch.float16, False)
    assert _RecordingPipeline.calls[-2]["variant"] == "fp16" and "variant" not in _RecordingPipeline.calls[-1]
    load_inpaint_pipeline(ModelSource("x", str(with_fp16), True), cuda, torch.float16, False, fp16_variant=False)
    assert "variant" not in _RecordingPipeline.calls[-1]
    load_inpaint_pipeline(ModelSource("x", str(with_fp16), True), cuda, torch.float32, False)
    assert "variant" not in _RecordingPipeline.calls[-1]  # float32 never loads the fp16 files
