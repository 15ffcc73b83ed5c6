"""No dark (or light) ring at the seam: the diffusion outpainter's compositing, with a stub diffusers pipeline that
returns one flat colour, checked pixel by pixel (issue 13).

The grow loop zeroes the hole and dilates the repaint mask into the known region; a correct composite gives every
hole pixel the generated colour and blends only over known pixels, so along any row the colour goes from the known
value to the generated one without leaving the interval between them.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from core.cameras import make_cameras
from core.masks import dilate
from models.depth_align import AlignedCompleter
from models.diffusion import DiffusionOptions, DiffusionOutpainter, seam_weights
from models.offline import GeometricPriorDepth
from pipeline.config import GrowConfig
from pipeline.grow import ScenePipeline
from renderers import get_point_renderer

HEIGHT, WIDTH = 24, 32
TOL = 1e-5  # float32 blending / bilinear resizing of a flat image


class FlatPipeline:
    """Stands in for a diffusers inpainting pipeline: returns one flat colour at the requested size.

    ``sample_size`` and ``vae_scale_factor`` mimic a UNet trained at ``sample_size * 8`` pixels; every call's
    keyword arguments are recorded.
    """

    def __init__(self, colour: float, sample_size: int | None = None):
        self.colour = colour
        self._execution_device = torch.device("cpu")
        self.vae_scale_factor = 8
        self.unet = SimpleNamespace(config=SimpleNamespace(sample_size=sample_size))
        self.calls: list[dict] = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        images = torch.full((1, 3, kwargs["height"], kwargs["width"]), self.colour)
        return SimpleNamespace(images=images)


def grow_like_inputs(known_value: float, dilate_px: int):
    """What the grow loop hands the outpainter: known left part, zeroed hole on the right, dilated repaint mask."""
    known = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    known[:, : WIDTH // 2] = True
    image = torch.where(known[..., None], torch.full((HEIGHT, WIDTH, 3), known_value), torch.zeros(HEIGHT, WIDTH, 3))
    fill_mask = dilate(~known, dilate_px)
    return image, fill_mask, known


SETTINGS = [
    pytest.param(DiffusionOptions(steps=1), 2, id="defaults(feather4,dilate2)"),
    pytest.param(DiffusionOptions(steps=1, feather_px=1), 2, id="feather1"),
    pytest.param(DiffusionOptions(steps=1, feather_px=8), 2, id="feather8"),
    pytest.param(DiffusionOptions(steps=1, feather_px=2), 6, id="band-wider-than-feather"),
    pytest.param(DiffusionOptions(steps=1, feather_px=0), 2, id="hard-paste"),
    pytest.param(DiffusionOptions(steps=1), 0, id="no-dilation"),
    pytest.param(DiffusionOptions(steps=1, resolution=0), 2, id="native-resolution"),
    pytest.param(DiffusionOptions(steps=1, prefill="patchmatch"), 2, id="patchmatch-prefill"),
]


@pytest.mark.parametrize("known_value, generated", [(0.8, 0.5), (0.5, 0.8)], ids=["light-known", "dark-known"])
@pytest.mark.parametrize("options, dilate_px", SETTINGS)
def test_no_seam_pixel_leaves_the_range_between_known_and_generated(options, dilate_px, known_value, generated):
    image, fill_mask, known = grow_like_inputs(known_value, dilate_px)
    pipe = FlatPipeline(generated, sample_size=8)  # trained at 64 px: the 32-px view is scaled up and back
    out = DiffusionOutpainter(pipe, options).outpaint(image, fill_mask, "", "", 0, known_mask=known)

    low, high = min(known_value, generated) - TOL, max(known_value, generated) + TOL
    region = out[fill_mask]  # [N, 3]
    assert float(region.min()) >= low and float(region.max()) <= high, out[0, :, 0].tolist()
    hole = fill_mask & ~known
    assert torch.allclose(out[hole], torch.full_like(out[hole], generated), atol=TOL)  # full weight in the hole
    assert torch.equal(out[~fill_mask], image[~fill_mask])  # untouched outside the repaint mask
    row = out[0, :, 0]  # from known to generated without turning back
    steps = row[1:] - row[:-1]
    assert bool((steps * (generated - known_value) >= -TOL).all()), row.tolist()


def test_default_seam_is_a_ramp_across_the_band():
    image, fill_mask, known = grow_like_inputs(0.5, 2)
    out = DiffusionOutpainter(FlatPipeline(0.8), DiffusionOptions(steps=1)).outpaint(
        image, fill_mask, "", "", 0, known_mask=known
    )
    # the row was 0.5 0.5 0.575 0.65 0.60 0.8 0.8: now the two band pixels step by thirds
    assert out[0, 12:20, 0].tolist() == pytest.approx([0.5, 0.5, 0.6, 0.7, 0.8, 0.8, 0.8, 0.8], abs=TOL)


def test_without_known_mask_the_whole_fill_mask_is_pasted():
    image, fill_mask, _ = grow_like_inputs(0.5, 2)
    out = DiffusionOutpainter(FlatPipeline(0.8), DiffusionOptions(steps=1)).outpaint(image, fill_mask, "", "", 0)
    assert torch.allclose(out[fill_mask], torch.full_like(out[fill_mask], 0.8))


def test_seam_weights_values():
    fill = torch.zeros(1, 10, dtype=torch.bool)
    fill[:, 3:] = True
    known = torch.zeros(1, 10, dtype=torch.bool)
    known[:, :7] = True  # a 4-px band (3..6), hole from 7
    assert seam_weights(fill, known, 4)[0].tolist() == pytest.approx([0, 0, 0, 0.2, 0.4, 0.6, 0.8, 1, 1, 1])
    assert seam_weights(fill, known, 1)[0].tolist() == pytest.approx([0, 0, 0, 0, 0, 0, 0.5, 1, 1, 1])
    assert seam_weights(fill, known, 0)[0].tolist() == fill[0].float().tolist()


def test_sdxl_like_pipeline_runs_at_its_training_resolution_with_card_strength():
    class FlatSDXLPipeline(FlatPipeline):
        pass

    FlatSDXLPipeline.__name__ = "StableDiffusionXLInpaintPipeline"
    pipe = FlatSDXLPipeline(0.3, sample_size=128)  # SDXL: 128 latents * 8 = 1024 px
    image, fill_mask, known = grow_like_inputs(0.6, 2)
    out = DiffusionOutpainter(pipe, DiffusionOptions(steps=1)).outpaint(image, fill_mask, "", "", 0, known_mask=known)
    call = pipe.calls[-1]
    assert (call["width"], call["height"]) == (1024, 768)  # long side 1024, aspect kept, multiples of 8
    assert tuple(call["image"].shape[-2:]) == (768, 1024) and tuple(call["mask_image"].shape[-2:]) == (768, 1024)
    assert call["strength"] == pytest.approx(0.99)
    assert out.shape == image.shape
    DiffusionOutpainter(pipe, DiffusionOptions(steps=1, strength=0.7, resolution=0)).outpaint(
        image, fill_mask, "", "", 0, known_mask=known
    )
    assert pipe.calls[-1]["strength"] == pytest.approx(0.7) and pipe.calls[-1]["width"] == WIDTH


def test_grow_loop_frames_have_no_dark_ring():
    """End to end: a flat light-grey photo grown with a flat mid-grey outpainter; no new pixel of the second view
    may be darker than the mid grey (on the code before issue 13 the first hole pixel got 25 % black)."""
    photo, generated = 0.8, 0.5
    cameras = make_cameras("stage", (WIDTH, HEIGHT))
    estimator = GeometricPriorDepth()
    pipeline = ScenePipeline(
        DiffusionOutpainter(FlatPipeline(generated), DiffusionOptions(steps=1)),
        estimator,
        AlignedCompleter(estimator),
        get_point_renderer("torch"),
        GrowConfig(),
    )
    result = pipeline(torch.full((HEIGHT, WIDTH, 3), photo), cameras[:2])
    frame = result.frames[1]
    assert bool(frame.fill_mask.any()) and bool((~frame.fill_mask).any())  # the view has a seam to test
    new = frame.rgb[dilate(frame.fill_mask, GrowConfig().outpaint_dilate_px)]
    assert float(new.min()) >= generated - TOL and float(new.max()) <= photo + TOL
