"""The geometry benchmark, one command: depth completion on held-out view pairs and grown 360° rings.

Invisible Stitch's protocol (A's true geometry rendered into B = the known depth; B's true depth = the target),
with the project's pair sets from :mod:`evaluation.pairs` and metrics from :mod:`evaluation.metrics`; see
:mod:`evaluation.benchmark` for the methods and estimators. Prints markdown tables and writes a PNG.

    python scripts/bench_completion.py                         # all sets, rings, docs/img/bench_completion.png
    python scripts/bench_completion.py --quick                 # fewer pairs, no rings
    python scripts/bench_completion.py --invisible-stitch invisible-stitch.pt
    python scripts/bench_completion.py --scannet /data/ScanNet --hypersim /data/hypersim --rgbd DIR
"""

from __future__ import annotations

import argparse
import time
import zlib
from pathlib import Path

import torch

from evaluation import benchmark, pairs
from evaluation.random_worlds import random_world

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PLOT = ROOT / "docs" / "img" / "bench_completion.png"
RING_WORLDS = ((0, "room"), (1, "street"))  # held-out benchmark seeds


def _seed(pair: pairs.ViewPair, of_a: bool) -> int:
    return zlib.crc32(f"{pair.source}/{'a' if of_a else 'b'}".encode())


def make_estimators() -> dict:
    from models.offline import GeometricPriorDepth

    prior = GeometricPriorDepth()

    def prior_fn(pair, of_a):
        return prior.estimate(pair.image, pair.camera_a if of_a else pair.camera)

    def warped_fn(pair, of_a):
        return benchmark.warped_truth(pair.depth_a if of_a else pair.target_depth, _seed(pair, of_a))

    return {"prior": prior_fn, "truth×warp": warped_fn}


def make_completers(invisible_stitch: str | None) -> dict:
    from models.registry import build_completer

    completers: dict = {}
    for name, reference in (("light", "light"), ("light + harmonic", "light-harmonic")):
        try:
            completer = build_completer(reference, None, device="cpu")
            completers[name] = lambda pair, c=completer: c.complete(
                pair.image, pair.known_depth, pair.known_mask, pair.camera
            )
        except (ValueError, FileNotFoundError, ImportError) as err:
            completers[name] = f"{type(err).__name__}: {str(err)[:80]}"
    if invisible_stitch:
        completer = build_completer(invisible_stitch, None, device="cpu")
        completers["Invisible Stitch"] = lambda pair: completer.complete(
            pair.image, pair.known_depth, pair.known_mask, pair.camera
        )
    else:
        completers["Invisible Stitch"] = "no checkpoint given (--invisible-stitch PATH)"
    return completers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="128x96", help="working size WIDTHxHEIGHT")
    parser.add_argument("--procedural", type=int, default=48, help="held-out procedural pairs (world seeds from 0)")
    parser.add_argument("--quick", action="store_true", help="16 procedural pairs, no rings")
    parser.add_argument("--no-real", action="store_true", help="skip the bathroom, ICL-NUIM and TUM sets")
    parser.add_argument("--no-rings", action="store_true", help="skip the grown 360 rings")
    parser.add_argument("--invisible-stitch", default=None, help="Invisible Stitch checkpoint (.pt or folder)")
    parser.add_argument("--scannet", type=Path, default=None, help="ScanNet root (Invisible Stitch layout)")
    parser.add_argument("--hypersim", type=Path, default=None, help="Hypersim root with <scene>_pairs.csv files")
    parser.add_argument("--rgbd", type=Path, action="append", default=[], help="generic RGB-D folder (meta.json)")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="where to write the PNG")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    size = (width, height)
    count = 16 if args.quick else args.procedural
    if count > len(pairs.BENCHMARK_SEEDS) * pairs.PAIRS_PER_WORLD:
        parser.error(f"--procedural {count} would draw worlds beyond the held-out seeds {pairs.BENCHMARK_SEEDS}")

    sets = [(f"procedural (held-out seeds, {count} pairs)", pairs.procedural_pairs(0, count, size))]
    if not args.no_real:
        sets += [
            ("bathroom (reference camera + room centre)", pairs.bathroom_pairs(size)),
            ("ICL-NUIM (real poses)", pairs.icl_pairs(size)),
            ("TUM (synthetic outpainting masks)", pairs.tum_pairs(size)),
        ]
    for folder in args.rgbd:
        sets.append((f"RGB-D {folder}", pairs.rgbd_folder_pairs(folder, size)))
    if args.scannet is not None:
        sets.append((f"ScanNet ({args.scannet})", pairs.scannet_pairs(args.scannet, size)))
    if args.hypersim is not None:
        sets.append((f"Hypersim ({args.hypersim})", pairs.hypersim_pairs(args.hypersim, size)))

    estimators, completers = make_estimators(), make_completers(args.invisible_stitch)
    results = {}
    for title, pair_iter in sets:
        start = time.perf_counter()
        rows, n = benchmark.run_pairs(pair_iter, estimators, completers)
        if n == 0:
            print(f"\n{title}: no pairs (data absent: ../shared/data)")
            continue
        results[title] = rows
        print(
            "\n"
            + benchmark.format_table(
                f"{title}: {n} pairs at {width}x{height}, {time.perf_counter() - start:.0f} s", rows
            )
        )

    rings = []
    if not (args.quick or args.no_rings):
        from models.depth_align import AlignedCompleter
        from models.offline import GeometricPriorDepth

        for seed, kind in RING_WORLDS:
            world = random_world(seed, kind)
            estimators = {
                "truth×warp": benchmark.WarpedTruthEstimator(lambda c, w=world: _depth(w, c), seed),
                "prior": GeometricPriorDepth(),
            }
            for name, estimator in estimators.items():
                for close in (False, True):
                    label = f"{kind} {seed}, aligned + harmonic, {name}, {'closed' if close else 'open'}"
                    rings.append(benchmark.grow_ring(label, world, size, estimator, AlignedCompleter, close))
        print("\n" + benchmark.format_rings(rings))
    print(
        "\next = pixels B does not see from A (with ground truth); seam = ext within 8 px of the known region; "
        "seam step = mean |(new − old) − (true new − true old)| / true old across known/extrapolated neighbours on "
        "continuous true surfaces; SC = |d_a→b − d_b| / (d_a→b + d_b) on pixels of B seen from A but not given; "
        "s/view = method time per view. Machine: 2 shared CPU cores."
    )
    if results:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        benchmark.plot(results, rings, args.plot)
        print(f"plot: {args.plot}")
    return 0


def _depth(world, camera):
    from evaluation.random_worlds import render_view

    return render_view(world, camera, color=False)[1]


if __name__ == "__main__":
    raise SystemExit(main())
