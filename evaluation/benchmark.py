"""The geometry benchmark (Invisible Stitch protocol): depth completers and aligners on held-out view pairs, and
the first-vs-last seam error of grown 360° rings.

Rows are (method, estimator). Methods that need a monocular estimate (raw, global scale/shift, aligned + harmonic)
are run with each estimator in :data:`ESTIMATORS`:

* ``prior`` — the offline profile's :class:`models.offline.GeometricPriorDepth` (ground plane + far backdrop);
* ``truth×warp`` — NOT a network: the true depth times a smooth random warp of up to ±10 % (a 3x4 grid, bicubic),
  a metric estimator with a known, smooth error.

Learned completers (``light``, ``light + harmonic``, an Invisible Stitch checkpoint) see only the image and the
known depth: their rows have no estimator. Sets come from :mod:`evaluation.pairs` (held out: never trained on).
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from core.components import DepthEstimate
from evaluation.metrics import Tally, ring_seam_errors, score_pair
from evaluation.pairs import ViewPair

WARP_AMPLITUDE = 0.10
"""The ``truth×warp`` estimator is off by up to 10 % in a smooth way (the issue's "metric estimator with a known
smooth error")."""

WARP_GRID = (3, 4)
"""Rows x columns of the warp's random control grid: one smooth bump or dip per third of the image."""

METRIC_KEYS = ("mae_ext", "absrel_ext", "mae_seam", "absrel_seam", "seam_step", "sc")


def warped_truth(truth: Tensor, seed: int, amplitude: float = WARP_AMPLITUDE) -> DepthEstimate:  # [H, W]
    """The true depth times ``exp(smooth warp)``, |warp| <= amplitude; pixels without truth get the median."""
    generator = torch.Generator().manual_seed(seed)
    grid = (2 * torch.rand(1, 1, *WARP_GRID, generator=generator, dtype=torch.float64) - 1) * amplitude
    warp = F.interpolate(grid, size=tuple(truth.shape), mode="bicubic", align_corners=True)[0, 0].clamp(
        -amplitude, amplitude
    )
    valid = truth > 0
    fallback = truth[valid].median() if bool(valid.any()) else torch.tensor(1.0)
    base = torch.where(valid, truth, fallback.to(truth))
    return DepthEstimate((base.double() * warp.exp()).float(), "metric")


@dataclass
class Row:
    """One row of the table."""

    method: str
    estimator: str  # "—" for learned completers
    tally: Tally = field(default_factory=Tally)
    pairs: int = 0
    seconds: float = 0.0
    missing: str = ""  # why the row has no numbers (e.g. weights not found)


Completer = Callable[[ViewPair], Tensor]  # pair -> completed depth [H, W]


def estimator_methods(name: str, estimate_fn: Callable[[ViewPair, bool], DepthEstimate]) -> dict[str, Completer]:
    """The three estimator-based methods for one estimator. ``estimate_fn(pair, of_a)`` estimates B (or A)."""
    from models.depth_align import align_depth, apply_scale_shift, fit_scale_shift

    def space(estimate: DepthEstimate) -> str:
        return "inverse" if estimate.kind == "relative_inverse" else "depth"

    def raw(pair: ViewPair) -> Tensor:
        return estimate_fn(pair, False).values

    def scale_shift(pair: ViewPair) -> Tensor:
        estimate = estimate_fn(pair, False)
        fit = fit_scale_shift(estimate.values, pair.known_depth, pair.known_mask, space(estimate))
        scaled = apply_scale_shift(estimate.values, fit, space(estimate)).clamp_min(1e-3)
        return torch.where(pair.known_mask, pair.known_depth, scaled)

    def aligned(pair: ViewPair) -> Tensor:
        return align_depth(estimate_fn(pair, False), pair.known_depth, pair.known_mask)

    return {"raw estimate": raw, "global scale/shift": scale_shift, "aligned + harmonic": aligned}


def run_pairs(
    pairs: Iterable[ViewPair],
    estimators: dict[str, Callable[[ViewPair, bool], DepthEstimate]],
    completers: dict[str, Completer | str],
) -> tuple[list[Row], int]:
    """Score every method on every pair.

    Args:
        pairs: the set.
        estimators: name -> ``estimate_fn(pair, of_a)``.
        completers: name -> completer, or a string saying why it is missing (the row is printed as missing).

    Returns:
        The rows and the number of pairs.
    """
    rows: list[Row] = []
    methods: list[tuple[Row, Completer | None, Callable | None]] = []
    for name, estimate_fn in estimators.items():
        for method, run in estimator_methods(name, estimate_fn).items():
            row = Row(method, name)
            rows.append(row)
            own_a = (lambda pair, fn=estimate_fn: fn(pair, True).values) if method == "raw estimate" else None
            methods.append((row, run, own_a))
    for name, completer in completers.items():
        row = Row(name, "—", missing=completer if isinstance(completer, str) else "")
        rows.append(row)
        methods.append((row, None if isinstance(completer, str) else completer, None))
    count = 0
    for pair in pairs:
        count += 1
        for row, run, own_a in methods:
            if run is None:
                continue
            start = time.perf_counter()
            pred = run(pair)
            row.seconds += time.perf_counter() - start
            score_pair(row.tally, pred, pair, own_a(pair) if own_a is not None else None)
            row.pairs += 1
    return rows, count


def format_table(title: str, rows: list[Row]) -> str:
    """A markdown table of the rows."""
    lines = [
        f"**{title}**",
        "",
        "| method | estimator | MAE ext | AbsRel ext | MAE seam | AbsRel seam | seam step | SC | s/view |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.missing:
            lines.append(f"| {row.method} | {row.estimator} | missing: {row.missing} |  |  |  |  |  |  |")
            continue
        values = [row.tally.mean(key) for key in METRIC_KEYS]
        per_view = row.seconds / max(row.pairs, 1)
        lines.append(
            f"| {row.method} | {row.estimator} | {values[0]:.3f} | {values[1]:.3f} | {values[2]:.3f} | "
            f"{values[3]:.3f} | {100 * values[4]:.2f} % | {_fmt(values[5])} | {per_view:.3f} |"
        )
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


# --- rings ---------------------------------------------------------------------------------------------------------


class TrueColours:
    """An outpainter that returns the world's true colours (a perfect outpainting), in path order."""

    def __init__(self, render_rgb: Callable, cameras: list):
        self.render_rgb = render_rgb
        self.queue = list(cameras[1:])

    def outpaint(self, image, fill_mask, prompt, negative_prompt, seed, cancel=None, **where):
        truth = self.render_rgb(self.queue.pop(0))
        return torch.where(fill_mask[..., None], truth, image)


class WarpedTruthEstimator:
    """The ``truth×warp`` estimator as a :class:`~core.components.DepthEstimator` over a renderable world.

    Each view gets its own smooth warp, seeded by the camera's pose, so the same view always gets the same
    estimate (like a network given the same image).
    """

    def __init__(self, render_depth: Callable, seed: int = 0):
        self.render_depth = render_depth
        self.seed = seed

    def estimate(self, image, camera):
        pose_key = zlib.crc32(camera.world_to_cam.double().numpy().round(6).tobytes())
        return warped_truth(self.render_depth(camera), self.seed * 1_000_003 + pose_key)


@dataclass
class RingResult:
    """Seam errors of one grown ring."""

    label: str
    seam: list[float]  # per grown view: median relative error of the new pixels in the seam band
    new: list[float]  # per grown view: median relative error of all new pixels
    seconds: float


def grow_ring(label: str, world, size: tuple[int, int], estimator, completer_factory, close: bool = True) -> RingResult:
    """Grow the 360 ring over ``world`` (true colours, view 0 given its true depth) and measure its seams.

    Args:
        label: the row's name.
        world: a :class:`~evaluation.random_worlds.ProceduralWorld`.
        size: ``(width, height)``.
        estimator: the depth estimator (also the ring closure's scale reference).
        completer_factory: ``estimator -> DepthCompleter``.
        close: ``GrowConfig.close_ring``.
    """
    from core.cameras import make_cameras
    from evaluation.random_worlds import render_view
    from pipeline.config import GrowConfig
    from pipeline.grow import ScenePipeline
    from renderers import get_point_renderer

    cameras = make_cameras("360", size)
    image, depth0, _ = render_view(world, cameras[0])
    start = time.perf_counter()
    pipe = ScenePipeline(
        TrueColours(lambda camera: render_view(world, camera)[0], cameras),
        estimator,
        completer_factory(estimator),
        get_point_renderer("torch"),
        GrowConfig(close_ring=close),
    )
    result = pipe(image, cameras, initial_depth=torch.where(depth0 > 0, depth0, torch.zeros(())))
    seconds = time.perf_counter() - start
    errors = ring_seam_errors(result.frames, lambda camera: render_view(world, camera, color=False)[1])
    return RingResult(label, [e[0] for e in errors], [e[1] for e in errors], seconds)


def format_rings(rings: list[RingResult]) -> str:
    lines = [
        "**360 ring (14 views), median relative depth error of the new pixels in the 8-px seam band**",
        "",
        "| ring | first seam | last seam | last / first | worst seam | new pixels, mean over views | s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for ring in rings:
        ratio = ring.seam[-1] / ring.seam[0] if ring.seam[0] > 0 else float("inf")
        lines.append(
            f"| {ring.label} | {100 * ring.seam[0]:.2f} % | {100 * ring.seam[-1]:.2f} % | {ratio:.1f} | "
            f"{100 * max(ring.seam):.2f} % | {100 * sum(ring.new) / len(ring.new):.2f} % | {ring.seconds:.1f} |"
        )
    return "\n".join(lines)


def plot(results: dict[str, list[Row]], rings: list[RingResult], path) -> None:
    """Bar chart of AbsRel on extrapolated pixels per set and method, and the rings' per-view seam errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(results)
    labels = []
    for rows in results.values():
        for row in rows:
            label = row.method if row.estimator == "—" else f"{row.method} ({row.estimator})"
            if label not in labels:
                labels.append(label)
    figure, (bars, curves) = plt.subplots(1, 2, figsize=(15, 6.5), gridspec_kw={"width_ratios": [2.0, 1]})
    width = 0.8 / max(len(labels), 1)
    colours = plt.get_cmap("tab10")
    for i, label in enumerate(labels):
        values = []
        for name in sets:
            match = [
                r for r in results[name] if (r.method if r.estimator == "—" else f"{r.method} ({r.estimator})") == label
            ]
            values.append(match[0].tally.mean("absrel_ext") if match and not match[0].missing else float("nan"))
        positions = [k + (i - len(labels) / 2 + 0.5) * width for k in range(len(sets))]
        bars.bar(positions, values, width, label=label, color=colours(i % 10))
    bars.set_xticks(range(len(sets)), [s.split(" (")[0] for s in sets], fontsize=9)
    bars.set_ylabel("AbsRel on extrapolated pixels (lower is better)")
    bars.set_yscale("log")
    bars.set_title("Depth completion on held-out view pairs")
    bars.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.07))
    bars.grid(axis="y", alpha=0.3)
    for ring in rings:
        style = "o-" if "closed" in ring.label else "x--"
        curves.plot(range(1, len(ring.seam) + 1), [100 * v for v in ring.seam], style, label=ring.label)
    curves.set_xlabel("view of the 360 ring (generation order)")
    curves.set_ylabel("seam-band depth error, median % of depth")
    curves.set_yscale("log")
    curves.set_title("Grown ring: first vs last seam")
    curves.grid(alpha=0.3)
    if rings:
        curves.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
