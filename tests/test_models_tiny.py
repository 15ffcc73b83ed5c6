"""Outpainter, depth estimators and learned completer, loaded from tiny random models by path through the real
loading functions (``from_pretrained`` on a folder), offline, with a socket guard."""

# ruff: noqa: F811  (pytest fixtures imported from tests.netguard are redefined as parameters)
from __future__ import annotations

import runpy
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from core.cameras import make_cameras
from core.components import Cancelled, DepthCompleter, DepthEstimator, Outpainter
from models.completion import TRAINING_MAX_DEPTH, CompletionOptions, LearnedCompleter, load_completer, view_scaling
from models.depth import DepthOptions, depth_kind, load_depth_estimator
from models.diffusion import DiffusionOptions, DiffusionOutpainter, load_outpainter
from tests.netguard import no_network, tiny_models  # noqa: F401  (fixtures)

SIZE = 64


@pytest.fixture(scope="module")
def outpainter(tiny_models):
    return load_outpainter(str(tiny_models["outpainter"]), device="cpu", options=DiffusionOptions(steps=2))


def _scene(height=SIZE, width=SIZE):
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(height, width, 3, generator=generator)
    fill = torch.zeros(height, width, dtype=torch.bool)
    fill[:, width // 2 :] = True
    return image, fill


def test_outpainter_shapes_determinism_and_exact_known_pixels(outpainter, no_network):
    assert isinstance(outpainter, Outpainter)
    image, fill = _scene()
    out = outpainter.outpaint(image, fill, "a quiet room", "blurry", seed=3)
    again = outpainter.outpaint(image, fill, "a quiet room", "blurry", seed=3)
    other = outpainter.outpaint(image, fill, "a quiet room", "blurry", seed=4)
    assert out.shape == image.shape and out.dtype == torch.float32
    assert torch.equal(out, again)
    assert not torch.equal(out, other)
    assert torch.equal(out[~fill], image[~fill])  # bit-exact outside the fill mask
    assert float((out[fill] - image[fill]).abs().mean()) > 1e-3  # something was generated
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_outpainter_odd_size_and_prefill(tiny_models, no_network):
    painter = load_outpainter(
        str(tiny_models["outpainter"]),
        device="cpu",
        options=DiffusionOptions(steps=2, strength=0.6, prefill="patchmatch"),
    )
    image, fill = _scene(44, 60)  # not multiples of 8
    out = painter.outpaint(image, fill, "", "", seed=0)
    assert out.shape == (44, 60, 3)
    assert torch.equal(out[~fill], image[~fill])


def test_outpainter_nothing_to_fill_returns_input(outpainter, no_network):
    image, _ = _scene()
    out = outpainter.outpaint(image, torch.zeros(SIZE, SIZE, dtype=torch.bool), "", "", 0)
    assert torch.equal(out, image)


class _SetAfter(threading.Event):
    """An event that reads as set from its ``n``-th check on (simulates a user pressing cancel mid-run)."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.calls = n, 0

    def is_set(self) -> bool:
        self.calls += 1
        return self.calls >= self.n


def test_outpainter_cancel_between_steps(tiny_models, no_network):
    painter = load_outpainter(str(tiny_models["outpainter"]), device="cpu", options=DiffusionOptions(steps=5))
    image, fill = _scene()
    cancel = _SetAfter(2)  # clear at the entry check, set at the first step's callback
    with pytest.raises(Cancelled):
        painter.outpaint(image, fill, "", "", 0, cancel)
    assert cancel.calls <= 4  # stopped after the first step, not after all five
    already = threading.Event()
    already.set()
    with pytest.raises(Cancelled):
        painter.outpaint(image, fill, "", "", 0, already)


def test_outpainter_configure_validates(outpainter):
    painter = DiffusionOutpainter(outpainter.pipe, DiffusionOptions(steps=2))
    painter.configure(steps=3, guidance=2.0)
    assert (painter.options.steps, painter.options.guidance) == (3, 2.0)
    with pytest.raises(ValueError, match="steps"):
        painter.configure(steps=0)
    with pytest.raises(ValueError, match="prefill"):
        DiffusionOptions(prefill="magic")


@pytest.mark.parametrize(
    ("name", "kind"), [("depth-metric", "metric"), ("depth-relative", "relative_inverse"), ("depth-zoe", "metric")]
)
def test_depth_estimators(tiny_models, no_network, name, kind):
    estimator = load_depth_estimator(str(tiny_models[name]), device="cpu")
    assert isinstance(estimator, DepthEstimator)
    assert estimator.kind == kind == depth_kind(estimator.model.config)
    camera = make_cameras("single", (SIZE, 48))[0]
    image = torch.rand(48, SIZE, 3, generator=torch.Generator().manual_seed(1))
    estimate = estimator.estimate(image, camera)
    assert estimate.kind == kind
    assert estimate.values.shape == (48, SIZE) and estimate.values.dtype == torch.float32
    assert bool(estimate.values.isfinite().all())
    assert float(estimate.values.min()) > 0 if kind == "metric" else float(estimate.values.min()) >= 0
    assert torch.equal(estimate.values, estimator.estimate(image, camera).values)


def test_depth_flip_tta_is_mirror_symmetric(tiny_models, no_network):
    estimator = load_depth_estimator(str(tiny_models["depth-zoe"]), device="cpu", options=DepthOptions(flip_tta=True))
    camera = make_cameras("single", (SIZE, SIZE))[0]
    image = torch.rand(SIZE, SIZE, 3, generator=torch.Generator().manual_seed(2))
    plain = estimator.estimate(image, camera).values
    mirrored = estimator.estimate(image.flip(1), camera).values.flip(1)
    assert torch.allclose(plain, mirrored, atol=1e-5)


def test_learned_completer_keeps_known_depth(tiny_models, no_network):
    completer = load_completer(str(tiny_models["completer"]), device="cpu", options=CompletionOptions(scaling=0.5))
    assert isinstance(completer, DepthCompleter) and isinstance(completer, LearnedCompleter)
    camera = make_cameras("single", (SIZE, SIZE))[0]
    generator = torch.Generator().manual_seed(3)
    image = torch.rand(SIZE, SIZE, 3, generator=generator)
    known_mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    known_mask[:, :40] = True
    known_depth = torch.where(known_mask, 1 + 4 * torch.rand(SIZE, SIZE, generator=generator), torch.zeros(()))
    depth = completer.complete(image, known_depth, known_mask, camera)
    assert depth.shape == (SIZE, SIZE) and bool(depth.isfinite().all()) and float(depth.min()) > 0
    assert torch.equal(depth[known_mask], known_depth[known_mask])
    assert torch.equal(depth, completer.complete(image, known_depth, known_mask, camera))


def test_completer_refuses_a_three_channel_model(tiny_models, no_network):
    with pytest.raises(ValueError, match="5-channel"):
        load_completer(str(tiny_models["depth-zoe"]), device="cpu")


def test_sdxl_inpainting_folder_loads_by_its_model_index(tmp_path, no_network):
    from models.tiny import save_tiny_outpainter

    folder = save_tiny_outpainter(tmp_path / "sdxl", kind="sdxl")
    painter = load_outpainter(str(folder), device="cpu", options=DiffusionOptions(steps=2))
    assert type(painter.pipe).__name__ == "StableDiffusionXLInpaintPipeline"
    image, fill = _scene()
    out = painter.outpaint(image, fill, "a street", "", seed=1)
    assert out.shape == image.shape and torch.equal(out[~fill], image[~fill])


# --- the completer's depth channel stays in its training range (issue 13) -------------------------------------------


class _EchoCompleterNet(torch.nn.Module):
    """Stands in for the 5-channel ZoeDepth: records the depth channel it sees and predicts it back (× 10 m), i.e.
    a network that trusts its sparse input; where nothing is known it predicts the largest depth it was shown."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(backbone_config=SimpleNamespace(num_channels=5, image_size=64))
        self.seen: list[torch.Tensor] = []

    def forward(self, pixel_values):
        depth_channel = pixel_values[:, 3]  # [1, h, w]
        self.seen.append(depth_channel.clone())
        mask = pixel_values[:, 4] > 0.5
        farthest = depth_channel[mask].max() if bool(mask.any()) else torch.tensor(0.5)
        return SimpleNamespace(predicted_depth=torch.where(mask, depth_channel, farthest) * TRAINING_MAX_DEPTH)


@pytest.mark.parametrize("farthest_m", [2.0, 20.0, 80.0])
def test_completer_depth_channel_stays_in_training_range(farthest_m):
    net = _EchoCompleterNet()
    completer = LearnedCompleter(net, CompletionOptions(flip_tta=False, restore_known=False))
    height, width = 32, 48
    known_depth = torch.linspace(0.25 * farthest_m, farthest_m, width).expand(height, width).clone()
    known_mask = torch.zeros(height, width, dtype=torch.bool)
    known_mask[:, : width // 2] = True
    known_mask[:, -4:] = True  # the farthest column is known too
    known_depth = torch.where(known_mask, known_depth, torch.zeros_like(known_depth))
    camera = make_cameras("single", (width, height))[0]

    depth = completer.complete(torch.rand(height, width, 3), known_depth, known_mask, camera)

    channel = net.seen[0]
    assert float(channel.min()) >= 0.0 and float(channel.max()) <= 1.0  # inside depth / 10 in [0, 1]
    assert float(channel.max()) >= 0.4  # and using it: the farthest known depth lands near the middle (0.5)
    inner = torch.zeros_like(known_mask)  # away from the mask's and the image's edges, where resizing mixes values
    inner[4:-4, 2 : width // 2 - 3] = True
    assert torch.allclose(depth[inner], known_depth[inner], rtol=0.03)  # s in, s out: metres come back as metres
    assert float(depth[~known_mask].max()) == pytest.approx(farthest_m, rel=0.05)


def test_completer_fixed_scaling_and_partial_user_map_use_the_same_rule():
    fixed = LearnedCompleter(_EchoCompleterNet(), CompletionOptions(scaling=0.5, flip_tta=False))
    assert view_scaling(torch.full((4, 4), 30.0), torch.ones(4, 4, dtype=torch.bool), fixed.options) == 0.5
    auto = CompletionOptions()
    valid = torch.zeros(4, 4, dtype=torch.bool)
    valid[0] = True
    depth = torch.where(valid, torch.full((4, 4), 15.0), torch.zeros(4, 4))
    assert view_scaling(depth, valid, auto) == pytest.approx(15.0 / (TRAINING_MAX_DEPTH * auto.known_fraction))
    assert view_scaling(depth, torch.zeros_like(valid), auto) == 1.0  # nothing known: the training scale
    with pytest.raises(ValueError, match="scaling"):
        CompletionOptions(scaling=0.0)


def test_completer_as_view0_estimator_is_metric(tiny_models, no_network):
    completer = load_completer(str(tiny_models["completer"]), device="cpu", options=CompletionOptions(flip_tta=False))
    assert isinstance(completer, DepthEstimator)
    estimate = completer.estimate(torch.rand(48, 64, 3), make_cameras("single", (64, 48))[0])
    assert estimate.kind == "metric" and estimate.values.shape == (48, 64)
    assert float(estimate.values.min()) > 0 and float(estimate.values.max()) <= TRAINING_MAX_DEPTH * 1.01


# --- scripts/gpu_check.py ------------------------------------------------------------------------------------------

GPU_CHECK = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
STATUSES = ("PASS", "FAIL", "SKIP", "INFO")


def _gpu_check_main():
    return runpy.run_path(str(GPU_CHECK), run_name="gpu_check")["main"]


def test_gpu_check_without_cuda_exits_cleanly_with_a_message(monkeypatch, capsys, no_network):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _gpu_check_main()([]) == 0
    out = capsys.readouterr().out
    assert "no CUDA device" in out and "--tiny" in out and "PASS" not in out


def test_gpu_check_logic_runs_with_tiny_models_on_cpu(capsys, no_network):
    status = _gpu_check_main()(["--tiny"])
    out = capsys.readouterr().out
    rows = [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in STATUSES]
    assert status == 0, out
    assert rows.count("PASS") >= 6 and "FAIL" not in rows, out
    for check in ("load outpainter", "seam on a half-known view", "same seed twice", "full 360 with SD2"):
        assert check in out
