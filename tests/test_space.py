"""The Hugging Face Space: front matter that preloads every default model, versions that match the pins,
the profile a Space serves and the ZeroGPU duration it asks for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from models.depth import METRIC_DEPTH_MODELS
from models.registry import ModelOptions, generative_defaults
from pipeline.config import PRESETS
from pipeline.space import (
    ZERO_GPU_MAX_S,
    ZERO_GPU_MIN_S,
    choose_space_profile,
    estimate_gpu_seconds,
    space_profile,
    zero_gpu_duration,
)

ROOT = Path(__file__).resolve().parents[1]
WHEEL_PYTHONS = ("3.11", "3.12")  # easypytorch3d==0.7.9.post1, pinned in requirements.txt, has cp311/cp312 only
VALID_SPACE_LICENCES = {"cc-by-nc-4.0", "openrail++", "apache-2.0", "mit", "other"}


def front_matter(text: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README.md must start with a YAML front matter block between --- lines"
    return yaml.safe_load(match.group(1))


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            found[name.strip().lower()] = version.strip()
    return found


@pytest.fixture(scope="module")
def config() -> dict:
    return front_matter((ROOT / "README.md").read_text())


def preloaded(config: dict) -> dict[str, list[str]]:
    """Repo id -> listed files ([] = the whole repo) from ``preload_from_hub``."""
    repos = {}
    for entry in config["preload_from_hub"]:
        repo, *rest = entry.split()
        repos[repo] = rest[0].split(",") if rest else []
    return repos


def test_front_matter_is_the_documented_copy(config):
    assert yaml.safe_load((ROOT / "docs" / "space_front_matter.yml").read_text()) == config


def test_every_default_generative_model_is_preloaded_with_its_marker_file(config):
    repos = preloaded(config)
    for scene in METRIC_DEPTH_MODELS:
        for role, (repo, marker) in generative_defaults(ModelOptions(scene=scene)).items():
            assert repo in repos, f"{role} {repo} ({scene}) is not under preload_from_hub"
            files = repos[repo]
            # `auto` and the app's model check look for this file in the cache
            assert not files or marker in files, f"{repo}: preloaded files {files} lack {marker}"
            assert repo in config["models"], f"{repo} is preloaded but not listed under models"


def test_preloaded_diffusers_repo_has_every_component_the_pipeline_loads(config):
    files = preloaded(config)["sd2-community/stable-diffusion-2-inpainting"]
    for component in ("unet", "vae", "text_encoder"):
        assert f"{component}/config.json" in files
        assert any(f.startswith(f"{component}/") and f.endswith(".safetensors") for f in files), component
    assert {f"tokenizer/{name}" for name in ("vocab.json", "merges.txt")} <= set(files)
    assert "scheduler/scheduler_config.json" in files


def test_versions_match_the_pins(config):
    pinned = pins()
    assert config["sdk"] == "gradio"
    assert str(config["sdk_version"]) == pinned["gradio"]
    assert isinstance(config["python_version"], str), "quote python_version: YAML reads 3.12 as a float"
    assert config["python_version"] in WHEEL_PYTHONS
    assert pinned["spaces"], "Hugging Face installs only requirements.txt: `spaces` must be pinned there"
    assert (ROOT / config["app_file"]).is_file()


def test_licence_tags_and_startup_timeout(config):
    assert config["license"] in VALID_SPACE_LICENCES
    # the default depth models are CC-BY-NC-4.0: a Space serving them cannot claim a commercial-use licence
    assert config["license"] == "cc-by-nc-4.0"
    assert re.fullmatch(r"\d+[mh]", config["startup_duration_timeout"])
    assert {"gaussian-splatting", "image-to-3d"} <= set(config["tags"])
    assert len(config["short_description"]) <= 60  # the Hub's limit


@pytest.mark.parametrize(
    ("env", "cuda", "expected"),
    [
        ({"SPACE_ID": "me/worldstitch", "SPACES_ZERO_GPU": "true"}, False, "generative"),  # ZeroGPU: no CUDA yet
        ({"SYSTEM": "spaces"}, True, "generative"),
        ({"SPACE_ID": "me/worldstitch"}, True, "generative"),
        ({"SPACE_ID": "me/worldstitch"}, False, "offline"),  # CPU Space: said in the reason
        ({}, True, "auto"),  # not a Space: the user's auto (cache probe) decides
        ({"SYSTEM": "linux"}, False, "auto"),
    ],
)
def test_space_profile(env, cuda, expected):
    assert space_profile(env, cuda) == expected


def test_space_never_silently_offline_and_explicit_choice_wins():
    cpu = choose_space_profile({"SPACE_ID": "me/ws"}, cuda_available=False)
    assert cpu.profile == "offline" and "no GPU" in cpu.reason and "me/ws" in cpu.reason
    assert space_profile({"SPACE_ID": "me/ws", "SPACES_ZERO_GPU": "true"}, requested="offline") == "offline"


def test_zero_gpu_duration_grows_with_work_and_stays_bounded():
    single = zero_gpu_duration("single", "draft")
    stage = zero_gpu_duration("stage", "default")
    ring = zero_gpu_duration("360", "default")
    high = zero_gpu_duration("360", "high")
    assert ZERO_GPU_MIN_S <= single <= stage < ring < high <= ZERO_GPU_MAX_S
    assert zero_gpu_duration("sphere", "high") == ZERO_GPU_MAX_S  # 60 views at 768x576: more than one call allows
    assert estimate_gpu_seconds("sphere", 50, 1000, (768, 576)) > ZERO_GPU_MAX_S
    assert zero_gpu_duration("360", "default", size=(256, 192)) < ring  # fewer pixels, fewer seconds
    assert all(isinstance(zero_gpu_duration(m, p), int) for m in ("single", "360") for p in PRESETS)


def test_zero_gpu_duration_custom_path_and_bad_input():
    assert zero_gpu_duration("path.json", "default", num_views=3) == zero_gpu_duration("stage", "default")
    with pytest.raises(ValueError, match="unknown mode"):
        zero_gpu_duration("path.json", "default")
    with pytest.raises(ValueError, match="quality preset"):
        zero_gpu_duration("360", "ultra")
    with pytest.raises(ValueError, match="size"):
        estimate_gpu_seconds("360", 30, 300, (0, 384))
