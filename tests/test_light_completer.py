"""The light completer: the shipped weights load and complete held-out geometry, known depth is kept, depth is
normalised per view (scale-equivariant), bad weight files fail clearly, and the registry builds it by name."""

from __future__ import annotations

import pytest
import torch

from core.cameras import Camera, intrinsics
from core.components import DepthCompleter
from evaluation.pairs import procedural_pairs
from models.light_completer import (
    DEFAULT_WEIGHTS,
    LightCompleter,
    LightCompleterNet,
    LightNetConfig,
    LightOptions,
    LightWeightsError,
    load_light_completer,
    save_light_weights,
)

MAX_WEIGHTS_BYTES = 10 * 1024 * 1024
"""The issue's budget for shipped weights."""

HELD_OUT_ABSREL = 0.16
"""Bound on the mean AbsRel over the extrapolated pixels of 8 held-out procedural pairs (benchmark seeds 0-1,
128 x 96). Measured with the shipped weights: 0.129 (the aligned completer with the offline estimator: 0.181 on the
same pairs). The margin (~25 %) covers float differences across machines and thread counts, not a worse model."""


@pytest.fixture(scope="module")
def pairs():
    return list(procedural_pairs(0, 8))


@pytest.fixture(scope="module")
def shipped():
    return load_light_completer()


def _absrel_ext(depth, pair) -> float:
    ext = pair.extrapolated
    return float(((depth[ext] - pair.target_depth[ext]).abs() / pair.target_depth[ext]).mean())


def test_shipped_weights_are_small_and_complete_held_out_geometry(shipped, pairs):
    assert DEFAULT_WEIGHTS.stat().st_size <= MAX_WEIGHTS_BYTES
    assert isinstance(shipped, DepthCompleter)
    errors = []
    for pair in pairs:
        depth = shipped.complete(pair.image, pair.known_depth, pair.known_mask, pair.camera)
        assert depth.shape == pair.target_depth.shape and bool((depth > 0).all()) and bool(torch.isfinite(depth).all())
        errors.append(_absrel_ext(depth, pair))
    assert sum(errors) / len(errors) < HELD_OUT_ABSREL, errors


def test_known_depth_is_kept_and_harmonic_closes_the_seam(pairs):
    pair = pairs[0]
    plain = load_light_completer()
    harmonic = load_light_completer(options=LightOptions(harmonic=True))
    known = pair.known_mask
    for completer in (plain, harmonic):
        depth = completer.complete(pair.image, pair.known_depth, known, pair.camera)
        assert torch.equal(depth[known], pair.known_depth[known])

    raw, _, _ = plain.predict(pair.image, pair.known_depth, known, pair.camera)
    fused = harmonic.complete(pair.image, pair.known_depth, known, pair.camera)
    # next to the known region, the harmonic residual pulls the prediction onto the known depth
    seam = ~known & torch.nn.functional.max_pool2d(known[None, None].float(), 3, 1, 1)[0, 0].bool()
    truth = pair.target_depth[seam]
    assert float(((fused[seam] - truth).abs() / truth).mean()) <= float(((raw[seam] - truth).abs() / truth).mean())


def test_depth_is_normalised_per_view(shipped, pairs):
    pair = pairs[1]
    near = shipped.complete(pair.image, pair.known_depth, pair.known_mask, pair.camera)
    far = shipped.complete(pair.image, 25.0 * pair.known_depth, pair.known_mask, pair.camera)
    torch.testing.assert_close(far, 25.0 * near, rtol=1e-4, atol=0)  # 2 m or 50 m: the same scene, scaled


def test_weights_round_trip_and_bad_files_fail_clearly(tmp_path, pairs):
    torch.manual_seed(0)
    net = LightCompleterNet(LightNetConfig(widths=(8, 12, 16)))
    torch.nn.init.normal_(net.head.weight, std=0.01)
    path = save_light_weights(net, tmp_path / "net.safetensors")
    pair = pairs[2]
    a = LightCompleter(net).complete(pair.image, pair.known_depth, pair.known_mask, pair.camera)
    b = load_light_completer(path).complete(pair.image, pair.known_depth, pair.known_mask, pair.camera)
    assert torch.equal(a, b)

    with pytest.raises(LightWeightsError, match="not found"):
        load_light_completer(tmp_path / "missing.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(path.read_bytes()[:200])
    with pytest.raises(LightWeightsError, match="not a readable safetensors"):
        load_light_completer(corrupt)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(3)}, str(foreign))
    with pytest.raises(LightWeightsError, match="not light-completer weights"):
        load_light_completer(foreign)
    mismatched = tmp_path / "mismatched.safetensors"
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("head")}
    save_file(
        state, str(mismatched), metadata={"format": "worldstitch-light-completer", "config": '{"widths": [8, 12, 16]}'}
    )
    with pytest.raises(LightWeightsError, match="do not fit"):
        load_light_completer(mismatched)


def test_bad_input_is_refused(shipped):
    camera = Camera(intrinsics(48, 64), torch.eye(4), 48, 64)
    image = torch.rand(48, 64, 3)
    nothing = torch.zeros(48, 64, dtype=torch.bool)
    with pytest.raises(ValueError, match="at least one known pixel"):
        shipped.complete(image, torch.zeros(48, 64), nothing, camera)
    with pytest.raises(ValueError, match="known_mask"):
        shipped.complete(image, torch.zeros(48, 64), torch.zeros(48, 64), camera)
    with pytest.raises(ValueError, match="camera"):
        shipped.complete(image, torch.ones(48, 64), ~nothing, Camera(intrinsics(24, 32), torch.eye(4), 24, 32))


def test_registry_builds_the_light_completer_by_name():
    from models.registry import build_completer

    plain = build_completer("light", None, device="cpu")
    harmonic = build_completer("light-harmonic", None, device="cpu")
    assert isinstance(plain, LightCompleter) and not plain.options.harmonic
    assert isinstance(harmonic, LightCompleter) and harmonic.options.harmonic
