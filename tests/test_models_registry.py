"""Profiles, overrides, the auto decision and missing-model messages (offline, socket-guarded)."""

# ruff: noqa: F811  (pytest fixtures imported from tests.netguard are redefined as parameters)
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from core.cameras import make_cameras
from models.completion import LearnedCompleter
from models.depth import METRIC_DEPTH_MODELS, TransformersDepthEstimator
from models.diffusion import DEFAULT_OUTPAINTER, DiffusionOptions, DiffusionOutpainter
from models.hub import ModelUnavailableError, resolve_model
from models.registry import Components, ModelOptions, build_components, missing_generative_weights
from tests.netguard import no_network, tiny_models  # noqa: F401  (fixtures)

TINY = ModelOptions(diffusion=DiffusionOptions(steps=2))


def _fake_cache(home: Path, repo_id: str, source: Path) -> Path:
    """Lay ``source`` out in the Hub cache under ``repo_id`` as huggingface_hub would (refs/main -> snapshot)."""
    repo_dir = home / "hub" / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    shutil.copytree(source, snapshot)
    return snapshot


def test_offline_profile(no_network):
    from models.depth_align import AlignedCompleter
    from models.light_completer import LightCompleter
    from models.offline import GeometricPriorDepth, PatchMatchOutpainter

    components = build_components("offline")
    assert isinstance(components, Components) and components.profile == "offline"
    assert isinstance(components.outpainter, PatchMatchOutpainter)
    assert isinstance(components.estimator, GeometricPriorDepth)
    # the shipped light completer (with the harmonic residual) is the offline default: the benchmark chose it
    assert isinstance(components.completer, LightCompleter) and components.completer.options.harmonic
    assert "patchmatch" in components.description and "light-harmonic" in components.description
    aligned = build_components("offline", completer="aligned")
    assert isinstance(aligned.completer, AlignedCompleter) and aligned.completer.estimator is aligned.estimator


def test_auto_with_empty_cache_goes_offline_and_says_why(no_network):
    assert set(missing_generative_weights()) == {DEFAULT_OUTPAINTER, METRIC_DEPTH_MODELS["indoor"]}
    components = build_components("auto")
    assert components.profile == "offline"
    assert "auto chose offline" in components.description
    assert DEFAULT_OUTPAINTER in components.description and "hf download" in components.description


def test_auto_with_cached_weights_goes_generative(no_network, tiny_models):
    home = no_network
    _fake_cache(home, DEFAULT_OUTPAINTER, tiny_models["outpainter"])
    _fake_cache(home, METRIC_DEPTH_MODELS["indoor"], tiny_models["depth-metric"])
    assert missing_generative_weights() == []
    components = build_components("auto", device="cpu", options=TINY)
    assert components.profile == "generative"
    assert "auto chose generative" in components.description
    assert isinstance(components.outpainter, DiffusionOutpainter)
    assert isinstance(components.estimator, TransformersDepthEstimator)
    assert components.estimator.kind == "metric"
    # the cached "defaults" really run
    image = torch.rand(64, 64, 3)
    fill = torch.zeros(64, 64, dtype=torch.bool)
    fill[:, 32:] = True
    assert torch.equal(components.outpainter.outpaint(image, fill, "", "", 0)[~fill], image[~fill])
    camera = make_cameras("single", (64, 64))[0]
    known = torch.where(~fill, torch.full((64, 64), 3.0), torch.zeros(()))
    depth = components.completer.complete(image, known, ~fill, camera)
    assert depth.shape == (64, 64) and torch.allclose(depth[~fill], known[~fill])


def test_outdoor_scene_changes_the_default_depth_model(no_network):
    assert METRIC_DEPTH_MODELS["outdoor"] in missing_generative_weights(ModelOptions(scene="outdoor"))
    with pytest.raises(ValueError, match="scene"):
        ModelOptions(scene="underwater")


def test_generative_without_weights_gives_one_clear_message(no_network):
    with pytest.raises(ModelUnavailableError) as info:
        build_components("generative")
    message = str(info.value)
    assert DEFAULT_OUTPAINTER in message
    assert f"hf download {DEFAULT_OUTPAINTER}" in message
    assert "--profile offline" in message
    assert isinstance(info.value, OSError)  # the CLI reports OSError/ValueError as a clean failure


def test_missing_local_folder_and_bad_folder(no_network, tmp_path):
    with pytest.raises(ModelUnavailableError, match="depth model 'nowhere/at/all'"):
        build_components("offline", depth_model="nowhere/at/all")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="no model_index.json"):
        build_components("offline", outpainter=str(tmp_path / "empty"))
    with pytest.raises(ModelUnavailableError, match="invisible-stitch"):
        build_components("offline", completer=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="unknown profile"):
        build_components("cloud")


def test_auto_never_downloads_an_uncached_override(no_network, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    with pytest.raises(ModelUnavailableError, match="not available on this machine"):
        build_components("auto", depth_model="someone/some-depth-model")
    # while generative would hand the id to from_pretrained (download); resolved, not loaded, here
    source = resolve_model(
        "someone/some-depth-model",
        what="depth model",
        marker_file="config.json",
        offline_alternative="x",
        allow_download=True,
    )
    assert not source.local and source.location == "someone/some-depth-model"


def test_overrides_by_folder_mix_with_offline(no_network, tiny_models):
    components = build_components(
        "offline",
        outpainter=str(tiny_models["outpainter"]),
        depth_model=str(tiny_models["depth-relative"]),
        completer=str(tiny_models["completer"]),
        device="cpu",
        options=TINY,
    )
    assert components.profile == "offline"
    assert isinstance(components.outpainter, DiffusionOutpainter)
    assert components.estimator.kind == "metric"  # a relative model comes anchored (models.depth.AnchoredDepth)
    assert components.estimator.relative.kind == "relative_inverse"
    assert isinstance(components.completer, LearnedCompleter)
    assert "on cpu" in components.description


README_RECIPES = [
    ["--profile", "generative", "--prompt", "a cozy living room"],
    ["--profile", "generative", "--outpainter", "sdxl", "--depth-model", "da2-metric-outdoor"],
    ["--profile", "auto"],
    ["--profile", "generative", "--depth-model", "da2-small"],  # the permissive depth model (relative, anchored)
    ["--profile", "generative", "--depth-model", "da2-small", "--outpainter", "patchmatch"],
    ["--profile", "generative", "--depth-model", "zoedepth", "--models.diffusion.cpu-offload"],
]


def test_readme_model_recipes_run_as_written_with_tiny_models_in_the_cache(no_network, tiny_models, tmp_path):
    """The README's generative recipes, aliases and all, with each default Hub id cached as a tiny random model."""
    from models.depth import RELATIVE_DEPTH_MODEL, ZOEDEPTH_MODEL
    from models.diffusion import SDXL_OUTPAINTER
    from models.tiny import save_tiny_outpainter
    from pipeline.__main__ import main

    home = no_network
    _fake_cache(home, DEFAULT_OUTPAINTER, tiny_models["outpainter"])
    _fake_cache(home, SDXL_OUTPAINTER, save_tiny_outpainter(tmp_path / "sdxl", "sdxl"))
    for scene in ("indoor", "outdoor"):
        _fake_cache(home, METRIC_DEPTH_MODELS[scene], tiny_models["depth-metric"])
    _fake_cache(home, RELATIVE_DEPTH_MODEL, tiny_models["depth-relative"])
    _fake_cache(home, ZOEDEPTH_MODEL, tiny_models["depth-zoe"])
    image = Path(__file__).resolve().parents[1] / "examples" / "room" / "image.png"
    fast = ["--mode", "stage", "--size", "96x72", "--splat-iters", "0", "--no-video", "--models.diffusion.steps", "2"]
    for number, recipe in enumerate(README_RECIPES):
        out = tmp_path / f"run{number}"
        assert main(["--image", str(image), "--out", str(out)] + recipe + fast) == 0, recipe
        assert (out / "transforms.json").is_file() and (out / "splats.ply").is_file()
