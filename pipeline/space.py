"""Running as a Hugging Face Space: which profile to serve, and how much ZeroGPU time to ask for per job.

Both are pure functions of their arguments (the environment is passed in as a mapping), so the app calls them
with ``os.environ`` and the tests with plain dicts.

Profile. Hugging Face sets ``SPACE_ID`` ("owner/name") and ``SYSTEM=spaces`` in every Space, and
``SPACES_ZERO_GPU=true`` on ZeroGPU hardware (read by the ``spaces`` package itself). A Space preloads the
generative models listed under ``preload_from_hub`` in README.md's front matter, so on a Space with a GPU — ZeroGPU
included, where CUDA only appears inside ``spaces.GPU`` calls — ``auto`` must mean ``generative``: the cache probe
of :func:`models.registry.build_components` is not consulted, and a missing model fails loudly at start-up instead
of silently serving the offline profile on a GPU. On a CPU-only Space the generative profile would take tens of
minutes per scene, so ``auto`` serves ``offline`` there and the reason says so (the app shows it).

ZeroGPU duration. ``spaces.GPU(duration=...)`` reserves the GPU for that many seconds; asking for too much
lowers the visitor's queue priority, too little kills the job. :func:`estimate_gpu_seconds` adds up per-stage
costs (:class:`GpuStageCosts`) for a mode, quality preset and working size; :func:`zero_gpu_duration` bounds it
to what ZeroGPU grants in one call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from core.cameras import path_views

SPACE_ID_ENV = "SPACE_ID"
"""Set by Hugging Face in every Space to "owner/name"."""
SYSTEM_ENV = "SYSTEM"
SYSTEM_SPACES = "spaces"
"""Hugging Face sets ``SYSTEM=spaces`` in every Space."""
ZERO_GPU_ENV = "SPACES_ZERO_GPU"
"""Set to "true" on ZeroGPU hardware; the ``spaces`` package reads the same variable."""

ZERO_GPU_MIN_S = 60
"""ZeroGPU's own default duration; asking for less saves little and risks killing short jobs on a cold GPU."""
ZERO_GPU_MAX_S = 300
"""ZeroGPU grants at most about 300 s per call (DESIGN.md); longer jobs are cut off at the limit."""


@dataclass(frozen=True)
class SpaceProfile:
    """The profile to serve and why (one sentence for the app's banner and the log)."""

    profile: str
    """"generative", "offline", or the requested profile when not on a Space."""

    reason: str
    """Why this profile: shown to the operator and the visitor."""


def is_space(env: Mapping[str, str]) -> bool:
    """Whether this process runs inside a Hugging Face Space (``SPACE_ID`` set or ``SYSTEM=spaces``)."""
    return bool(env.get(SPACE_ID_ENV)) or env.get(SYSTEM_ENV, "").lower() == SYSTEM_SPACES


def is_zero_gpu(env: Mapping[str, str]) -> bool:
    """Whether the Space runs on ZeroGPU hardware (``SPACES_ZERO_GPU`` true, as the ``spaces`` package reads it)."""
    return env.get(ZERO_GPU_ENV, "").strip().lower() in ("1", "t", "true")


def choose_space_profile(env: Mapping[str, str], cuda_available: bool = False, requested: str = "auto") -> SpaceProfile:
    """The profile a process should serve, given where it runs.

    Args:
        env: environment variables (``os.environ``).
        cuda_available: ``torch.cuda.is_available()`` in the main process (False on ZeroGPU at start-up; the
            ``SPACES_ZERO_GPU`` variable covers that case).
        requested: the profile asked for on the command line; anything but "auto" is kept as asked.

    Returns:
        The profile and a one-line reason.

    Example:
        >>> choose_space_profile({"SPACE_ID": "me/worldstitch", "SPACES_ZERO_GPU": "true"}).profile
        'generative'
    """
    if requested != "auto":
        return SpaceProfile(requested, f"{requested} profile, as requested")
    if not is_space(env):
        return SpaceProfile("auto", "not a Hugging Face Space: auto picks generative only if the weights are cached")
    where = env.get(SPACE_ID_ENV) or "this Space"
    if is_zero_gpu(env):
        return SpaceProfile("generative", f"{where} runs on ZeroGPU: generative profile with the preloaded models")
    if cuda_available:
        return SpaceProfile("generative", f"{where} has a GPU: generative profile with the preloaded models")
    return SpaceProfile(
        "offline",
        f"{where} has no GPU: offline profile (PatchMatch and geometric depth); "
        "the diffusion and depth models need GPU hardware",
    )


def space_profile(env: Mapping[str, str], cuda_available: bool = False, requested: str = "auto") -> str:
    """The profile name of :func:`choose_space_profile` ("generative", "offline", or ``requested`` off a Space)."""
    return choose_space_profile(env, cuda_available, requested).profile


@dataclass(frozen=True)
class GpuStageCosts:
    """Seconds per unit of work on one GPU, for the generative profile.

    NOT YET MEASURED ON A GPU: no GPU was lent to this project so far (docs/benchmarks.md). The defaults are
    conservative figures for an A10G / an H200 MIG 3g slice (ZeroGPU) with fp16 weights, from public throughput
    of the same architectures; the per-view CPU work is the measured CPU figure. Replace them with a measurement
    (``scripts/benchmark.py`` on the Space) before trusting the estimate to a few seconds.
    """

    startup_s: float = 10.0
    """Moving ~3 GB of fp16 weights onto the GPU and building the CUDA context at the start of each call."""

    diffusion_step_s_per_mpix: float = 0.4
    """One SD-2 inpainting denoising step (UNet with classifier-free guidance) per megapixel of working size."""

    depth_pass_s: float = 0.15
    """One Depth Anything V2 Large forward pass at its 518-px input (each view runs two: flip test-time aug.)."""

    view_cpu_s_per_mpix: float = 2.3
    """Render, align, snap and fuse per view per megapixel (measured on CPU: 0.45 s per 512×384 view)."""

    splat_iter_s: float = 0.05
    """One splat-fitting iteration (fitted at ≤ 256 px per view)."""

    video_s: float = 4.0
    """The fly-through video (48 frames at ≤ 256 px)."""

    export_s: float = 3.0
    """Encoding PLY, .splat, PNG frames, zip and the extra exports."""

    safety: float = 1.5
    """Margin on the sum: a job cut off at its limit loses everything, an over-estimate only lowers priority."""


DEPTH_PASSES_PER_VIEW = 2  # flip test-time augmentation (models.depth.DepthOptions.flip_tta)


def estimate_gpu_seconds(
    mode: str,
    steps: int,
    splat_iters: int,
    size: tuple[int, int],  # (W, H)
    num_views: int | None = None,
    costs: GpuStageCosts = GpuStageCosts(),
    video: bool = True,
) -> float:
    """Unbounded estimate of one job's GPU seconds (generative profile), margin included.

    Args:
        mode: "single", "stage", "360", "sphere", or anything else with ``num_views`` given (a path file).
        steps: diffusion steps per outpainted view.
        splat_iters: splat-fitting iterations (0 = none).
        size: working size (width, height) in pixels.
        num_views: the number of views; required for a custom path, read from the mode otherwise.
        costs: seconds per unit of work.
        video: whether the fly-through video is rendered.

    Raises:
        ValueError: unknown mode without ``num_views``, or non-positive sizes / negative counts.
    """
    width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive (width, height), got {size}")
    if steps < 0 or splat_iters < 0:
        raise ValueError(f"steps and splat_iters must be >= 0, got {steps} and {splat_iters}")
    if num_views is None:
        num_views = len(path_views(mode))  # raises ValueError naming the mode
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    mpix = width * height / 1e6
    outpainted = num_views - 1
    total = (
        costs.startup_s
        + outpainted * steps * costs.diffusion_step_s_per_mpix * mpix
        + num_views * DEPTH_PASSES_PER_VIEW * costs.depth_pass_s
        + outpainted * costs.view_cpu_s_per_mpix * mpix
        + splat_iters * costs.splat_iter_s
        + (costs.video_s if video else 0.0)
        + costs.export_s
    )
    return total * costs.safety


def zero_gpu_duration(
    mode: str,
    preset,
    size: tuple[int, int] | None = None,  # (W, H); None = the preset's size
    num_views: int | None = None,
    costs: GpuStageCosts = GpuStageCosts(),
    video: bool = True,
) -> int:
    """Seconds to ask ``spaces.GPU(duration=...)`` for, between :data:`ZERO_GPU_MIN_S` and :data:`ZERO_GPU_MAX_S`.

    Args:
        mode: camera path name, or a path file with ``num_views`` given.
        preset: a name in :data:`pipeline.config.PRESETS` or a :class:`pipeline.config.QualityPreset`; its
            splat preset's step budget for this many views gives the fitting iterations.
        size: working size (width, height); None uses the preset's.
        num_views: number of views of a custom path.
        costs: seconds per unit of work.
        video: whether the fly-through video is rendered.

    Returns:
        Whole seconds, rounded up, bounded. A job whose estimate exceeds the maximum gets the maximum: check
        :func:`estimate_gpu_seconds` first to warn the visitor.

    Example:
        >>> zero_gpu_duration("single", "draft")
        60
    """
    from pipeline.config import PRESETS
    from pipeline.splats import splat_preset, step_budget

    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown quality preset {preset!r}: expected one of {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    if num_views is None:
        num_views = len(path_views(mode))  # raises ValueError naming the mode
    size = size if size is not None else preset.size
    iterations = step_budget(splat_preset(preset.splats), num_views)
    seconds = estimate_gpu_seconds(mode, preset.steps, iterations, size, num_views, costs, video)
    return min(ZERO_GPU_MAX_S, max(ZERO_GPU_MIN_S, math.ceil(seconds)))
