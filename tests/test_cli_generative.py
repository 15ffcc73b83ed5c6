"""`python -m pipeline --profile generative` with tiny saved models loaded by path through the real loaders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipeline.__main__ import main
from tests.netguard import no_network, tiny_models  # noqa: F401  (fixtures)
from tests.test_cli import EXAMPLE

TINY = ["--size", "64x64", "--aspect", "crop", "--splat-iters", "2", "--no-video", "--steps", "2"]


@pytest.mark.parametrize("mode, views", [("stage", 3), ("360", 14)])
def test_generative_profile_with_tiny_models(tmp_path, no_network, tiny_models, mode, views):  # noqa: F811
    out = tmp_path / mode
    args = ["--image", str(EXAMPLE), "--mode", mode, "--out", str(out), "--profile", "generative"]
    args += ["--outpainter", str(tiny_models["outpainter"]), "--depth-model", str(tiny_models["depth-metric"])]
    args += ["--completer", str(tiny_models["completer"]), "--prompt", "a room", *TINY]
    assert main(args) == 0
    frames = json.loads((out / "transforms.json").read_text())["frames"]
    assert len(frames) == views
    first = np.asarray(Image.open(out / frames[0]["file_path"]))
    assert first.shape == (64, 64, 3)
    assert (out / "splats.ply").stat().st_size > 0


def test_missing_model_says_how_to_get_it_or_run_offline(tmp_path, no_network, capsys):  # noqa: F811
    out = tmp_path / "out"
    code = main(["--image", str(EXAMPLE), "--out", str(out), "--profile", "generative", *TINY])
    assert code != 0 and not out.exists()
    message = capsys.readouterr().err
    assert "--profile offline" in message
