"""End-to-end benchmark of the offline profile: per-stage seconds per mode, quiet and with a competing process.

    python scripts/benchmark.py                        # single, stage, 360 at 512x384, examples/room + depth.png
    python scripts/benchmark.py --modes 360 --splat-iters 0 --size 256x192
    python scripts/benchmark.py --no-load              # skip the runs with a competing process

Each run is a fresh child process (so its peak resident memory is its own, and its threads are configured by
:func:`core.threads.configure_threads` before torch is imported, as the CLI does). Every mode runs twice in the
same invocation: on its own, and beside one competing CPU-bound process (``python -c "while True: pass"``), and
the table gives the ratio. Absolute seconds move with whatever else the machine runs; the ratios within one run
are the comparable figures. Prints markdown ready for docs/benchmarks.md, and checks issue 10's goals.
Add ``--with-components`` to also print the renderer, depth and splat-fitting micro-benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from evaluation.cpu_load import competing_processes

ROOT = Path(__file__).resolve().parents[1]

STAGE_ORDER = ("depth", "render", "outpaint", "complete", "snap", "fuse", "splats", "export", "video")
GOAL_360_S = 30.0
"""Issue 10: offline 360 at 512×384 end to end on 2 cores."""
GOAL_SINGLE_S = 5.0
"""Issue 10: ``single`` end to end."""
GOAL_SLOWDOWN = 1.5
"""Issue 10: at most this slowdown with one competing CPU-bound process."""


def run_one(mode: str, size: str, splat_iters: int | None, example: str, out: Path, video: bool) -> dict:
    """Runs one job in this process and returns its figures (called in a child process)."""
    from core.threads import configure_threads  # noqa: PLC0415 - first: before anything imports torch

    settings = configure_threads()

    from core.cameras import make_cameras  # noqa: PLC0415
    from core.images import load_depth_file, load_image  # noqa: PLC0415
    from models.registry import build_components  # noqa: PLC0415
    from pipeline.config import build_run_config  # noqa: PLC0415
    from pipeline.job import JobRequest, run_job  # noqa: PLC0415

    width, height = (int(v) for v in size.split("x"))
    components = build_components("offline")
    folder = ROOT / "examples" / example
    image = load_image(folder / "image.png")
    depth = load_depth_file(folder / "depth.png") if (folder / "depth.png").exists() else None
    config = build_run_config(
        mode=mode, size=(width, height), aspect="crop", splat_iters=splat_iters, video=video, seed=0
    )
    request = JobRequest(image, config, depth)
    start = time.perf_counter()
    outputs = run_job(request, components, out)
    total = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "mode": mode,
        "views": len(make_cameras(mode, (width, height))),
        "points": sum(outputs.points_per_view),
        "timings": outputs.timings,
        "total_s": total,
        "peak_rss_mb": peak_mb,
        "threads": settings.torch_threads,
        "splat_iterations": config.splats.iterations,
    }


def _child(args: argparse.Namespace, mode: str, load: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--size", args.size, "--example", args.example]
    cmd += ["--out", str(Path(args.out) / f"{mode}-load{load}")] + (["--no-video"] if args.no_video else [])
    if args.splat_iters is not None:
        cmd += ["--splat-iters", str(args.splat_iters)]
    with competing_processes(load):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        print(done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"benchmark of mode {mode} (competing processes: {load}) failed")
    return json.loads(lines[-1][len("RESULT ") :])


def _table(rows: list[dict], title: str) -> list[str]:
    lines = [title, "", "| stage | " + " | ".join(r["mode"] for r in rows) + " |", "|---|" + "---:|" * len(rows)]
    for stage in [s for s in STAGE_ORDER if any(s in r["timings"] for r in rows)]:
        lines.append(f"| {stage} | " + " | ".join(f"{r['timings'].get(stage, 0.0):.2f}" for r in rows) + " |")
    lines.append("| **total s** | " + " | ".join(f"**{r['total_s']:.2f}**" for r in rows) + " |")
    lines.append("| peak RSS MB | " + " | ".join(f"{r['peak_rss_mb']:.0f}" for r in rows) + " |")
    lines.append("| views | " + " | ".join(str(r["views"]) for r in rows) + " |")
    lines.append("| points | " + " | ".join(str(r["points"]) for r in rows) + " |")
    return lines


def _goals(quiet: dict[str, dict], loaded: dict[str, dict]) -> list[str]:
    lines = ["| goal (issue 10) | measured | met |", "|---|---:|---|"]

    def add(goal: str, value: float, ok: bool, unit: str = "s") -> None:
        lines.append(f"| {goal} | {value:.2f}{unit} | {'yes' if ok else 'no'} |")

    if "360" in quiet:
        add(f"360 end to end ≤ {GOAL_360_S:g} s", quiet["360"]["total_s"], quiet["360"]["total_s"] <= GOAL_360_S)
        fit, outpaint = quiet["360"]["timings"].get("splats", 0.0), quiet["360"]["timings"].get("outpaint", 0.0)
        add("360 splat fit ≤ outpainting", fit / max(outpaint, 1e-9), fit <= outpaint, "× of outpainting")
    if "single" in quiet:
        total = quiet["single"]["total_s"]
        add(f"single end to end ≤ {GOAL_SINGLE_S:g} s", total, total <= GOAL_SINGLE_S)
    for mode in loaded:
        ratio = loaded[mode]["total_s"] / quiet[mode]["total_s"]
        add(f"{mode}: slowdown with a competing process ≤ {GOAL_SLOWDOWN:g}×", ratio, ratio <= GOAL_SLOWDOWN, "×")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=["single", "stage", "360"])
    parser.add_argument("--size", default="512x384")
    parser.add_argument("--splat-iters", type=int, default=None, help="most fit steps (default: the preset's)")
    parser.add_argument("--example", default="room")
    parser.add_argument("--out", default="/tmp/worldstitch-bench")
    parser.add_argument("--no-video", action="store_true")
    parser.add_argument("--no-load", action="store_true", help="skip the runs beside a competing process")
    parser.add_argument("--with-components", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        row = run_one(args.child, args.size, args.splat_iters, args.example, Path(args.out), not args.no_video)
        print("RESULT " + json.dumps(row))
        return

    quiet, loaded = {}, {}
    for mode in args.modes:
        quiet[mode] = _child(args, mode, 0)
        print(f"{mode} quiet: {quiet[mode]['total_s']:.1f} s", file=sys.stderr, flush=True)
        if not args.no_load:
            loaded[mode] = _child(args, mode, 1)
            print(f"{mode} loaded: {loaded[mode]['total_s']:.1f} s", file=sys.stderr, flush=True)

    first = next(iter(quiet.values()))
    print(
        f"<!-- benchmark.py: {os.cpu_count()} CPUs, {first['threads']} torch threads (core.threads), load "
        f"{os.getloadavg()[0]:.1f} at the end -->\n"
    )
    iters = "the preset's" if args.splat_iters is None else str(args.splat_iters)
    title = f"Offline profile, {args.size}, example '{args.example}' with its depth.png, splat steps: {iters}."
    print("\n".join(_table(list(quiet.values()), f"{title} Seconds, quiet.")))
    if loaded:
        print()
        print("\n".join(_table(list(loaded.values()), f"{title} Seconds, one competing CPU-bound process.")))
        print("\n| mode | quiet s | loaded s | slowdown |\n|---|---:|---:|---:|")
        for mode in loaded:
            q, lo = quiet[mode]["total_s"], loaded[mode]["total_s"]
            print(f"| {mode} | {q:.2f} | {lo:.2f} | {lo / q:.2f}× |")
    print()
    print("\n".join(_goals(quiet, loaded)))

    if args.with_components:
        for module in ("bench_render", "bench_depth", "bench_splats"):
            print(f"\n## {module}")
            subprocess.run([sys.executable, str(ROOT / "scripts" / f"{module}.py")], check=False)


if __name__ == "__main__":
    main()
