"""Names → components: the one place that decides which outpainter, depth model and completer a run uses.

Profiles:

* ``offline`` — needs no downloaded weights: PatchMatch outpainting, geometric-prior depth for view 0, and the light
  learned completer this project trains and ships (``light-harmonic``: it beat the aligned completer around the
  geometric prior on every held-out set — AbsRel on extrapolated pixels 0.69× on the bathroom, 0.47× on ICL-NUIM —
  and runs in ~0.1 s instead of ~1 s per 512×384 view; docs/benchmarks.md).
* ``generative`` — Stable Diffusion 2 inpainting, Depth Anything V2 Metric (indoor or outdoor), and the aligned
  completer on top of it. Weights download on first use unless ``allow_download`` is off or HF_HUB_OFFLINE is set.
* ``auto`` — ``generative`` when the default generative weights are already in the local Hugging Face cache,
  else ``offline``. It never touches the network; :attr:`Components.description` says which it chose and why.

Each override (``outpainter``, ``depth_model``, ``completer``) replaces the profile's choice and is an offline
name, a short alias (:data:`OUTPAINTER_ALIASES`, :data:`DEPTH_ALIASES`), a local folder or a Hub id. A learned
completer (Invisible Stitch's design) is a folder/Hub id of a 5-channel ZoeDepth in transformers layout, or the
original ``invisible-stitch.pt`` checkpoint file (converted on load). A relative depth model (``da2-small``, DPT,
Prompt Depth Anything) is wrapped in :class:`models.depth.AnchoredDepth`, so view 0 gets metres without a depth
file (later views still align its relative output to the known depth); ``depth_model="completer"`` takes view 0's
depth from the learned completer itself, as Invisible Stitch does.

Models load once, here; the returned components are reused for every view and every job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from models.completion import CompletionOptions
from models.depth import METRIC_DEPTH_MODELS, RELATIVE_DEPTH_MODEL, ZOEDEPTH_MODEL, DepthOptions
from models.diffusion import DEFAULT_OUTPAINTER, SDXL_OUTPAINTER, DiffusionOptions
from models.hub import ModelUnavailableError, hub_cache_dir, is_cached, offline_mode, pick_device
from models.invisible_stitch import CHECKPOINT_HELP, CHECKPOINT_REPO

logger = logging.getLogger(__name__)

PROFILES = ("offline", "generative", "auto")

OFFLINE_OUTPAINTERS = ("patchmatch", "telea")
"""``patchmatch``: PatchMatch texture synthesis; ``telea``: OpenCV's Telea inpainting (PatchMatch's fallback)."""
OFFLINE_DEPTH = ("prior",)
"""``prior``: metric depth from a ground plane and a far backdrop (no learning)."""
OFFLINE_COMPLETERS = ("aligned", "light", "light-harmonic")
"""``aligned``: the run's depth estimator aligned to the known depth (scale/shift + harmonic residual); ``light`` /
``light-harmonic``: the shipped light completer (CPU-fast, weights in the repository), without / with the harmonic
residual that makes seams exact."""
OFFLINE_DEFAULT_COMPLETER = "light-harmonic"
"""The offline profile's completer, chosen by the geometry benchmark (python scripts/bench_completion.py); when
the run names its own depth model, later views use ``aligned`` around that model instead."""
LEARNED_COMPLETER_AS_DEPTH = "completer"
"""``depth_model="completer"``: view 0's depth from the learned completer with nothing known, at its training
scale (Invisible Stitch's first view; 1 mm to 10 m)."""

OUTPAINTER_ALIASES = {"sd2": DEFAULT_OUTPAINTER, "sdxl": SDXL_OUTPAINTER}
DEPTH_ALIASES = {
    "da2-metric-indoor": METRIC_DEPTH_MODELS["indoor"],
    "da2-metric-outdoor": METRIC_DEPTH_MODELS["outdoor"],
    "da2-small": RELATIVE_DEPTH_MODEL,
    "zoedepth": ZOEDEPTH_MODEL,
}


@dataclass(frozen=True)
class ModelOptions:
    """Settings handed to the model builders."""

    diffusion: DiffusionOptions = field(default_factory=DiffusionOptions)
    """Steps, guidance, feathering, pre-fill, offload and dtype of a diffusion outpainter."""

    depth: DepthOptions = field(default_factory=DepthOptions)
    """Flip TTA, output-kind override and dtype of a transformers depth estimator."""

    completion: CompletionOptions = field(default_factory=CompletionOptions)
    """Scaling, padding, TTA and network size of a learned completer."""

    scene: Literal["indoor", "outdoor"] = "indoor"
    """Which Depth Anything V2 Metric model the generative profile uses: "indoor" (max 20 m) or "outdoor" (80 m)."""

    allow_download: bool = True
    """Let ``generative`` download missing weights from the Hub (``auto`` never downloads)."""

    def __post_init__(self):
        if self.scene not in METRIC_DEPTH_MODELS:
            raise ValueError(f"scene must be one of {sorted(METRIC_DEPTH_MODELS)}, got {self.scene!r}")
        for name, cls in (("diffusion", DiffusionOptions), ("depth", DepthOptions), ("completion", CompletionOptions)):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(
                    f"ModelOptions.{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}"
                )
        if not isinstance(self.allow_download, bool):
            raise ValueError(f"allow_download must be True or False, got {self.allow_download!r}")


@dataclass
class Components:
    """What one scene run needs, loaded and ready."""

    outpainter: object
    """``Outpainter``: fills colour where the point cloud has nothing."""

    estimator: object
    """``DepthEstimator``: depth of the input photo (and of new views, for the aligned completer)."""

    completer: object
    """``DepthCompleter``: depth of a new view, conditioned on the depth already known there."""

    profile: str
    """The profile actually used: "offline" or "generative" (``auto`` resolves to one of them)."""

    description: str
    """One human line: which models, and for ``auto`` why that profile was chosen."""


def generative_defaults(options: ModelOptions = ModelOptions()) -> dict[str, tuple[str, str]]:
    """Role -> (Hub id, marker file) of the generative profile's default models."""
    return {
        "outpainter": (DEFAULT_OUTPAINTER, "model_index.json"),
        "depth model": (METRIC_DEPTH_MODELS[options.scene], "config.json"),
    }


def missing_generative_weights(options: ModelOptions = ModelOptions()) -> list[str]:
    """Hub ids of the generative defaults that are not in the local cache (no network)."""
    return [repo for repo, marker in generative_defaults(options).values() if not is_cached(repo, marker)]


def build_components(
    profile: str = "offline",
    outpainter: str | None = None,
    depth_model: str | None = None,
    completer: str | None = None,
    device=None,
    options: ModelOptions = ModelOptions(),
) -> Components:
    """Build (load) the components of a run.

    Args:
        profile: "offline", "generative" or "auto" (see module docstring).
        outpainter: override: "patchmatch", "telea", "sd2", "sdxl", a diffusers folder or a Hub id.
        depth_model: override: "prior", a :data:`DEPTH_ALIASES` name, a transformers folder or a Hub id.
        completer: override: "aligned", a 5-channel ZoeDepth folder / Hub id, or an Invisible Stitch ``.pt`` file.
        device: torch device for learned models; None = CUDA when available, else CPU.
        options: settings for the builders.

    Raises:
        ModelUnavailableError: a requested model is not on this machine (and may not be downloaded).
        ValueError: an unknown profile or name.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILES)}")
    reason = ""
    allow_download = options.allow_download and not offline_mode()
    if profile == "auto":
        allow_download = False
        missing = missing_generative_weights(options)
        if missing:
            profile = "offline"
            reason = (
                f"auto chose offline: {', '.join(missing)} not in the local Hugging Face cache ({hub_cache_dir()}); "
                f"`hf download ID` for each enables the generative profile"
            )
        else:
            profile = "generative"
            reason = "auto chose generative: the default models are in the local Hugging Face cache"
    device = pick_device(device)
    defaults = {
        "offline": ("patchmatch", "prior", OFFLINE_DEFAULT_COMPLETER),
        "generative": (DEFAULT_OUTPAINTER, METRIC_DEPTH_MODELS[options.scene], "aligned"),
    }[profile]
    out_ref = outpainter or defaults[0]
    depth_ref = depth_model or defaults[1]
    comp_ref = completer or defaults[2]
    if completer is None and depth_ref not in OFFLINE_DEPTH + (LEARNED_COMPLETER_AS_DEPTH,):
        # a depth model the user chose also serves the later views: align it to the known depth (the light
        # completer only won against the geometric prior; around a real estimator it is unmeasured)
        comp_ref = "aligned"

    built_outpainter = build_outpainter(out_ref, device, options, allow_download)
    if depth_ref == LEARNED_COMPLETER_AS_DEPTH:
        if comp_ref in OFFLINE_COMPLETERS:
            raise ValueError(
                f"depth model {LEARNED_COMPLETER_AS_DEPTH!r} needs a learned completer (a folder, Hub id or .pt "
                f"file), not {comp_ref!r}"
            )
        built_completer = build_completer(comp_ref, None, device, options, allow_download)
        built_estimator = built_completer
    else:
        built_estimator = build_estimator(depth_ref, device, options, allow_download)
        built_completer = build_completer(comp_ref, built_estimator, device, options, allow_download)
    parts = [f"outpainter {out_ref}", f"depth {depth_ref}", f"completer {comp_ref}"]
    learned = any(
        ref not in OFFLINE_OUTPAINTERS + OFFLINE_DEPTH + OFFLINE_COMPLETERS for ref in (out_ref, comp_ref)
    ) or depth_ref not in OFFLINE_DEPTH + (LEARNED_COMPLETER_AS_DEPTH,)
    where = f" on {device.type}" if learned else ""
    description = f"{profile}{where}: " + ", ".join(parts)
    if reason:
        description += f" ({reason})"
    return Components(built_outpainter, built_estimator, built_completer, profile, description)


def build_outpainter(reference: str, device=None, options: ModelOptions = ModelOptions(), allow_download=True):
    """An ``Outpainter`` from an offline name, alias, diffusers folder or Hub id."""
    if reference == "patchmatch":
        from models.offline import PatchMatchOutpainter

        return PatchMatchOutpainter()
    if reference == "telea":
        from models.offline import PatchMatchOutpainter

        return PatchMatchOutpainter(use_patchmatch=False)
    from models.diffusion import load_outpainter

    return load_outpainter(
        OUTPAINTER_ALIASES.get(reference, reference),
        device=device,
        options=options.diffusion,
        allow_download=allow_download,
    )


def build_estimator(reference: str, device=None, options: ModelOptions = ModelOptions(), allow_download=True):
    """A ``DepthEstimator`` from an offline name, alias, transformers folder or Hub id.

    A relative model (Depth Anything relative, DPT, Prompt Depth Anything) comes wrapped in
    :class:`models.depth.AnchoredDepth` (metric, anchored to a floor below the camera) unless
    ``options.depth.anchor`` is "none".
    """
    if reference == "prior":
        from models.offline import GeometricPriorDepth

        return GeometricPriorDepth()
    from models.depth import AnchoredDepth, load_depth_estimator

    estimator = load_depth_estimator(
        DEPTH_ALIASES.get(reference, reference), device=device, options=options.depth, allow_download=allow_download
    )
    if estimator.kind != "metric" and options.depth.anchor == "prior":
        logger.info("%s predicts relative depth: anchoring it to a floor below the camera", reference)
        return AnchoredDepth(
            estimator, camera_height=options.depth.anchor_camera_height, max_depth=options.depth.anchor_max_depth
        )
    return estimator


def build_completer(
    reference: str, estimator, device=None, options: ModelOptions = ModelOptions(), allow_download=True
):
    """A ``DepthCompleter``: "aligned" (around ``estimator``), "light" / "light-harmonic" (the shipped light
    completer, :mod:`models.light_completer`), a 5-channel ZoeDepth folder/Hub id, or a .pt file."""
    if reference == "aligned":
        from models.depth import AnchoredDepth
        from models.depth_align import AlignedCompleter

        # later views align to the known depth themselves: a relative model keeps its free scale + shift there
        return AlignedCompleter(estimator.relative if isinstance(estimator, AnchoredDepth) else estimator)
    if reference in ("light", "light-harmonic"):
        from models.light_completer import LightOptions, load_light_completer

        return load_light_completer(options=LightOptions(harmonic=reference == "light-harmonic"), device=device)
    path = Path(reference).expanduser()
    if path.is_file() and path.suffix in (".pt", ".pth", ".ckpt"):
        from models.invisible_stitch import load_invisible_stitch_checkpoint

        return load_invisible_stitch_checkpoint(path, device=device, options=options.completion)
    if not path.exists() and reference.endswith((".pt", ".pth", ".ckpt")):
        raise ModelUnavailableError(f"depth completer checkpoint {reference!r} does not exist: {CHECKPOINT_HELP}")
    if not path.exists() and reference.strip("/").lower() == CHECKPOINT_REPO.lower():
        raise ModelUnavailableError(
            f"{CHECKPOINT_REPO!r} is a GitHub repository, not a Hugging Face model: {CHECKPOINT_HELP}"
        )
    from models.completion import load_completer

    return load_completer(reference, device=device, options=options.completion, allow_download=allow_download)
