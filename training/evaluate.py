"""Score depth completers on held-out view pairs: ``python -m training.evaluate [--weights PATH]``.

Sets (:mod:`evaluation.pairs`, none of them ever trained on): held-out procedural worlds (benchmark seeds 0-99),
the bathroom mesh, ICL-NUIM pairs with real poses, TUM with synthetic outpainting masks (the real sets are skipped
when ``../shared/data`` is absent). Methods: the training-free aligned completer around the offline profile's
estimator (``prior``), the light completer, and the light completer with the harmonic residual.

Metrics, pooled over all scored pixels of all pairs of a set (as ``scripts/bench_completion.py`` does):

* ``AbsRel ext`` / ``MAE ext`` — on extrapolated pixels (``ViewPair.extrapolated``: not known, with ground truth);
* ``AbsRel seam`` — extrapolated pixels within :data:`SEAM_PX` of the known region;
* ``seam step`` — median over 4-neighbour (known, unknown) pixel pairs on continuous true surfaces of
  ``|d_new / d_known - 1|``: the jump the completion makes where it meets the known depth;
* time per view at 512 x 384 (printed separately, on the threads given).

It also writes a picture per set (image, known depth, truth, each method) for looking at the results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from core.files import atomic_write
from core.images import encode_png
from core.masks import dilate
from evaluation.pairs import DEFAULT_SIZE, ViewPair, bathroom_pairs, icl_pairs, procedural_pairs, tum_pairs
from models.depth_align import AlignedCompleter
from models.light_completer import DEFAULT_WEIGHTS, LightOptions, load_light_completer
from models.offline import GeometricPriorDepth

SEAM_PX = 8
"""Width of the seam band (the benchmark's)."""

CONTINUOUS_STEP = 0.01
"""Seam pairs whose true depths differ by less than 1 % count as one continuous surface (at 128 x 96 a floor seen
at 30° below the horizon changes by ~1.5 % per pixel row, a wall by far less)."""

TIMING_SIZE = (512, 384)
"""(width, height) of the view the per-view time is measured at (the issue's budget: 0.2 s on 2 cores)."""

TIMING_REPEATS = 5


def seam_steps(depth: Tensor, known: Tensor, truth: Tensor) -> Tensor:  # [H, W], [H, W] bool, [H, W] -> [M]
    """``|d_unknown / d_known - 1|`` over every 4-neighbour pair of one known and one unknown pixel where the true
    surface is continuous (true relative step below :data:`CONTINUOUS_STEP`): the jump the completion makes where
    it meets the known depth, on surfaces that have none (true depth edges are left out)."""
    steps = []
    pairs = (
        ((slice(None), slice(0, -1)), (slice(None), slice(1, None))),
        ((slice(0, -1), slice(None)), (slice(1, None), slice(None))),
    )
    has_truth = truth > 0
    for first, second in pairs:
        for p, q in ((first, second), (second, first)):
            edge = known[p] & ~known[q] & has_truth[p] & has_truth[q]
            smooth = (truth[q][edge] / truth[p][edge] - 1).abs() < CONTINUOUS_STEP
            steps.append((depth[q][edge] / depth[p][edge] - 1).abs()[smooth])
    return torch.cat(steps)


class Tally:
    """Pixel-pooled sums per metric."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.steps: list[Tensor] = []

    def add(self, key: str, values: Tensor) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(values.double().sum())
        self.counts[key] = self.counts.get(key, 0) + int(values.numel())

    def mean(self, key: str) -> float:
        return self.sums.get(key, 0.0) / max(1, self.counts.get(key, 0))

    def summary(self) -> dict[str, float]:
        out = {k: self.mean(k) for k in self.sums}
        steps = torch.cat(self.steps) if self.steps else torch.zeros(0)
        out["seam_step_median"] = float(steps.median()) if steps.numel() else float("nan")
        out["seam_step_mean"] = float(steps.mean()) if steps.numel() else float("nan")
        return out


def score_pair(tally: Tally, pair: ViewPair, depth: Tensor) -> None:
    ext = pair.extrapolated
    seam = ext & dilate(pair.known_mask, SEAM_PX)
    truth = pair.target_depth
    for key, region in (("ext", ext), ("seam", seam)):
        error = (depth[region] - truth[region]).abs()
        tally.add(f"mae_{key}", error)
        tally.add(f"absrel_{key}", error / truth[region])
    tally.steps.append(seam_steps(depth, pair.known_mask, truth))


def depth_picture(pair: ViewPair, outputs: dict[str, Tensor]) -> np.ndarray:  # -> [H, W * k, 3] float
    """Image | known | truth | each method's depth, on one shared inverse-depth colour scale."""
    import cv2

    truth = pair.target_depth
    valid = truth[truth > 0]
    near, far = float(valid.min()), float(valid.max())

    def colour(depth: Tensor) -> np.ndarray:
        inverse = torch.where(depth > 0, 1.0 / depth.clamp_min(1e-6), torch.zeros_like(depth))
        t = ((inverse - 1 / far) / max(1 / near - 1 / far, 1e-9)).clamp(0, 1).numpy()
        rgb = cv2.applyColorMap((t * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1] / 255.0
        rgb[depth.numpy() <= 0] = 0
        return rgb

    tiles = [pair.image.numpy(), colour(pair.known_depth), colour(truth)] + [colour(d) for d in outputs.values()]
    return np.concatenate(tiles, axis=1)


def evaluate(
    weights: Path,
    sets: list[str],
    procedural_count: int,
    picture_dir: Path | None,
    size: tuple[int, int] = DEFAULT_SIZE,
    log=print,
) -> dict[str, dict[str, dict[str, float]]]:
    """Scores per set and method (see module docstring)."""
    methods = {
        "aligned (prior)": AlignedCompleter(GeometricPriorDepth()),
        "light": load_light_completer(weights),
        "light + harmonic": load_light_completer(weights, LightOptions(harmonic=True)),
    }
    sources = {
        "procedural-heldout": lambda: procedural_pairs(0, procedural_count, size),
        "bathroom": lambda: bathroom_pairs(size),
        "icl": lambda: icl_pairs(size),
        "tum": lambda: tum_pairs(size),
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name in sets:
        tallies = {method: Tally() for method in methods}
        pictures, count = [], 0
        for pair in sources[name]():
            if not bool(pair.extrapolated.any()) or not bool(pair.known_mask.any()):
                continue
            outputs = {
                m: c.complete(pair.image, pair.known_depth, pair.known_mask, pair.camera) for m, c in methods.items()
            }
            for method, depth in outputs.items():
                score_pair(tallies[method], pair, depth)
            if len(pictures) < 4 and count % 3 == 0:
                pictures.append(depth_picture(pair, outputs))
            count += 1
        if not count:
            log(f"{name}: no pairs (data absent), skipped")
            continue
        results[name] = {m: t.summary() | {"pairs": count} for m, t in tallies.items()}
        if picture_dir is not None and pictures:
            suffix = "" if size == DEFAULT_SIZE else f"_{size[0]}x{size[1]}"
            atomic_write(picture_dir / f"light_eval_{name}{suffix}.png", encode_png(np.concatenate(pictures, axis=0)))
    return results


def time_per_view(weights: Path, threads: int) -> dict[str, float]:
    """Median seconds per ``complete`` call on a 512 x 384 procedural pair."""
    torch.set_num_threads(threads)
    pair = next(procedural_pairs(0, 1, TIMING_SIZE))
    out = {}
    for name, completer in (
        ("light", load_light_completer(weights)),
        ("light + harmonic", load_light_completer(weights, LightOptions(harmonic=True))),
        ("aligned (prior)", AlignedCompleter(GeometricPriorDepth())),
    ):
        completer.complete(pair.image, pair.known_depth, pair.known_mask, pair.camera)
        times = []
        for _ in range(TIMING_REPEATS):
            start = time.perf_counter()
            completer.complete(pair.image, pair.known_depth, pair.known_mask, pair.camera)
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times)
    return out


def format_results(results: dict, timing: dict[str, float] | None) -> str:
    lines = []
    header = (
        f"{'set':<20} {'method':<18} {'pairs':>5} {'AbsRel ext':>10} {'MAE ext':>8} {'AbsRel seam':>11} {'step med':>8}"
    )
    lines.append(header)
    for name, per_method in results.items():
        for method, s in per_method.items():
            lines.append(
                f"{name:<20} {method:<18} {s['pairs']:>5} {s['absrel_ext']:>10.4f} {s['mae_ext']:>8.3f} "
                f"{s['absrel_seam']:>11.4f} {100 * s['seam_step_median']:>7.2f}%"
            )
        aligned, light = per_method["aligned (prior)"]["absrel_ext"], per_method["light"]["absrel_ext"]
        lines.append(f"{'':<20} light / aligned AbsRel ext = {light / aligned:.2f}")
    if timing:
        lines.append("time per 512x384 view: " + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in timing.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score the light completer against the aligned one on held-out pairs.")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="light completer safetensors")
    parser.add_argument("--sets", nargs="+", default=["procedural-heldout", "bathroom", "icl", "tum"])
    parser.add_argument("--procedural-count", type=int, default=96, help="held-out procedural pairs (seeds 0-99)")
    parser.add_argument("--pictures", type=Path, default=None, help="folder for light_eval_<set>.png pictures")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (timing and scoring)")
    parser.add_argument("--size", type=int, nargs=2, default=list(DEFAULT_SIZE), help="pair size: width height")
    parser.add_argument("--no-timing", action="store_true", help="skip the 512x384 timing")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = evaluate(args.weights, args.sets, args.procedural_count, args.pictures, tuple(args.size))
    timing = None if args.no_timing else time_per_view(args.weights, args.threads)
    print(format_results(results, timing))
    if args.json is not None:
        atomic_write(args.json, (json.dumps({"results": results, "timing_s": timing}, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
