"""One run configuration: the CLI, the app and the Python API build it through one function and agree; the seed
reaches every random choice (same seed → same bytes in every file); progress never goes backwards."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import app
import pipeline.cli as cli
import webui.form
from core.images import load_image
from pipeline import config as run_config
from pipeline.config import DEFAULT_NEGATIVE_PROMPT, build_run_config, working_size
from pipeline.job import JobRequest, load_components, run_job
from tests.apptools import FakeRunner, last_update, write_photo

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "room" / "image.png"


# --- the CLI and the app build the same configuration -------------------------------------------------------------


def cli_config(*flags: str):
    """The run configuration the command line builds for ``flags`` (photo and output folder added)."""
    return cli.run_config_from_args(cli.parse_args(["--image", "photo.png", "--out", "out", *flags]))


@pytest.fixture
def app_config(tmp_path):
    """The run configuration the app's Generate handler hands to the pipeline for given form values."""
    photo = write_photo(tmp_path / "photo.png")
    runner = FakeRunner(num_views=1)
    handlers = app.WorldStitchApp(runner, app.AppSettings(output_root=tmp_path / "jobs"), use_zero_gpu=False)

    def build(**values):
        form = {spec.name: spec.default for spec in handlers.fields}  # the page as it opens
        form.update(image=str(photo), **values)
        args = [form[spec.name] for spec in handlers.fields]
        last_update(handlers.generate(*args, request=None, progress=lambda *a, **k: None))
        return runner.calls[-1].config

    return build


def test_cli_app_and_api_call_the_one_builder():
    assert cli.build_run_config is webui.form.build_run_config is run_config.build_run_config


def test_defaults_agree(app_config):
    """Nothing chosen: the command line, the page as it opens and the API give the same run."""
    expected = build_run_config()
    assert cli_config() == expected
    assert app_config() == expected
    assert expected.scene.negative_prompt == DEFAULT_NEGATIVE_PROMPT and expected.scene.aspect == "keep"


def test_same_choices_same_config_custom_size(app_config):
    """Size, aspect, steps, guidance, negative prompt, seed (and the rest) chosen by hand."""
    from_cli = cli_config(
        *("--size", "128x96", "--aspect", "crop", "--steps", "12", "--guidance", "5.5"),
        *("--negative-prompt", "no cars", "--seed", "42", "--mode", "stage", "--prompt", "a street"),
        *("--splat-iters", "7", "--no-video", "--fov", "60"),
    )
    from_app = app_config(
        quality=webui.form.CUSTOM_QUALITY,
        width=128,
        height=96,
        aspect="crop",
        steps=12,
        guidance=5.5,
        negative_prompt="no cars",
        seed=42,
        mode="stage",
        prompt="a street",
        splat_iters=7,
        video=False,
        fov_deg=60.0,
    )
    assert from_cli == from_app
    assert from_cli.scene.size == (128, 96) and from_cli.scene.seed == from_cli.splats.seed == 42
    assert from_cli.models.options.diffusion.steps == 12 and from_cli.models.options.diffusion.guidance == 5.5


@pytest.mark.parametrize("preset", ["draft", "high"])
def test_same_preset_same_config(app_config, preset):
    """A preset sets size, steps and splat iterations the same way in both (the CLI used to keep 30 steps and
    crop to 4:3 for draft, the app 15 steps keeping the aspect); the app's sliders do not count for a preset."""
    from_cli = cli_config("--quality", preset, "--seed", "3", "--negative-prompt", "")
    from_app = app_config(quality=preset, seed=3, negative_prompt="", steps=99, width=1024, height=1024)
    assert from_cli == from_app == build_run_config(preset, seed=3, negative_prompt="")
    size, steps, splat_iters = run_config.preset_values(preset)
    assert (from_cli.scene.size, from_cli.models.options.diffusion.steps, from_cli.splats.iterations) == (
        size,
        steps,
        splat_iters,
    )


def test_model_option_flags_reach_the_config():
    """Every model option is a flag (new option fields appear without editing the CLI)."""
    config = cli_config("--models.diffusion.cpu-offload", "--models.completion.scaling", "1.0", "--profile", "offline")
    assert config.models.options.diffusion.cpu_offload is True
    assert config.models.options.completion.scaling == 1.0 and config.models.profile == "offline"
    # --models.diffusion.steps is --steps; the preset applies when neither is given
    assert cli_config("--quality", "draft", "--models.diffusion.steps", "7").models.options.diffusion.steps == 7
    assert cli_config("--quality", "draft", "--steps", "9").models.options.diffusion.steps == 9


def test_cli_keeps_its_flags():
    """The flags the README shows, including the old name of the preset flag."""
    args = cli.parse_args(
        ["--image", "a.png", "--depth", "d.png", "--prompt", "p", "--mode", "360", "--profile", "offline"]
        + ["--out", "o", "--outpainter", "patchmatch", "--depth-model", "prior", "--completer", "aligned"]
        + ["--size", "256x192", "--seed", "5", "--fov", "70", "--quality", "draft", "--no-fit", "--no-video"]
    )
    config = cli.run_config_from_args(args)
    assert (args.image, args.depth, args.out) == (Path("a.png"), Path("d.png"), Path("o"))
    assert (config.models.outpainter, config.models.depth_model, config.models.completer) == (
        "patchmatch",
        "prior",
        "aligned",
    )
    assert config.scene.size == (256, 192) and config.scene.hfov_deg == 70 and config.preset == "draft"
    assert config.splats.iterations == 0 and config.video is False
    with pytest.raises(SystemExit):
        cli.parse_args(["--image", "a.png", "--out", "o", "--size", "big"])


# --- one sizing rule ---------------------------------------------------------------------------------------------


def test_portrait_photo_keeps_its_aspect_by_default():
    """The default keeps a portrait photo upright and uncropped (the CLI used to crop it to 4:3)."""
    scene = build_run_config().scene
    assert working_size(384, 512, scene) == (384, 512)
    assert working_size(512, 384, scene) == (512, 384)
    assert working_size(384, 512, replace(scene, aspect="crop")) == (512, 384)


def test_sizes_round_down_to_multiples_of_8_everywhere(app_config):
    assert build_run_config(size=(100, 75)).scene.size == (96, 72)
    assert cli_config("--size", "100x75").scene.size == (96, 72)
    assert app_config(quality=webui.form.CUSTOM_QUALITY, width=100, height=75).scene.size == (96, 72)
    scene = build_run_config("draft").scene
    assert working_size(203, 150, scene) == (256, 184)  # 189.2 → 184, not 192


def test_bad_choices_are_named():
    with pytest.raises(ValueError, match="unknown run choice.*colour"):
        build_run_config(colour="red")
    with pytest.raises(ValueError, match="aspect"):
        build_run_config(aspect="stretch")
    with pytest.raises(ValueError, match="mode"):
        build_run_config(mode="orbit")
    with pytest.raises(ValueError, match="between 64 and 1536"):
        working_size(900, 100, build_run_config("draft").scene)


# --- the seed reaches splat fitting; same seed → same bytes in every file; monotonic progress -------------------

TINY = dict(mode="stage", size=(96, 72), aspect="crop", splat_iters=6, video=True)


def all_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def offline_runs(tmp_path_factory):
    """Three tiny offline jobs: seed 1 twice, seed 2 once. Records every progress fraction and the seed each splat
    fit was given."""
    from pipeline import splats

    folder = tmp_path_factory.mktemp("seeds")
    image = load_image(EXAMPLE)
    components = load_components(build_run_config(profile="offline"))
    fit_seeds: list[int] = []
    original_fit = splats.fit_splats

    def spy(frames, cloud, config, **kwargs):
        fit_seeds.append(config.seed)
        return original_fit(frames, cloud, config, **kwargs)

    fractions: dict[str, list[float]] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(splats, "fit_splats", spy)
        for name, seed in (("first", 1), ("again", 1), ("other", 2)):
            events = fractions.setdefault(name, [])
            config = build_run_config("draft", seed=seed, **TINY)
            run_job(JobRequest(image, config), components, folder / name, progress=events.append)
    return folder, fit_seeds, fractions


def test_the_seed_reaches_splat_fitting(offline_runs):
    _, fit_seeds, _ = offline_runs
    assert fit_seeds == [1, 1, 2]


def test_same_seed_same_bytes_in_every_file(offline_runs):
    folder, _, _ = offline_runs
    first, again = all_files(folder / "first"), all_files(folder / "again")
    expected = {"splats.ply", "scene.splat", "points.ply", "transforms.json", "frames.zip", "flythrough.mp4"}
    assert expected <= set(first) and set(first) == set(again)
    different = [name for name in first if first[name] != again[name]]
    assert different == []


def test_a_different_seed_changes_the_splats(offline_runs):
    folder, _, _ = offline_runs
    first, other = all_files(folder / "first"), all_files(folder / "other")
    assert first["splats.ply"] != other["splats.ply"]
    assert first["scene.splat"] != other["scene.splat"]


def test_progress_never_goes_backwards(offline_runs):
    _, _, fractions = offline_runs
    events = fractions["first"]
    values = [event.fraction for event in events]
    stages = [event.stage for event in events]
    assert "splats" in stages and "video" in stages
    drops = [(a, b, s) for a, b, s in zip(values, values[1:], stages[1:]) if b < a]
    assert drops == [], f"progress went backwards: {drops[:5]}"
    assert values[-1] == 1.0 and all(0.0 <= v <= 1.0 for v in values)
