"""End-to-end benchmark of the offline profile: per-stage seconds and peak RSS per mode, printed as a table.

    python scripts/benchmark.py                       # stage and 360 at 512x384, 300 splat iterations
    python scripts/benchmark.py --modes 360 --splat-iters 0 --size 256x192

Each mode runs in its own process so its peak resident memory is its own. Add ``--with-components`` to also print
the renderer (vs PyTorch3D), depth and splat-fitting micro-benchmarks.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STAGE_ORDER = ("depth", "render", "outpaint", "complete", "snap", "fuse", "splats", "export", "video")


def run_one(mode: str, size: str, splat_iters: int, example: str, out: Path, video: bool) -> dict:
    """Runs one job in this process and returns its figures (called in a child process)."""
    import torch

    from core.cameras import make_cameras
    from core.images import load_image
    from models.registry import build_components
    from pipeline.config import build_run_config
    from pipeline.job import JobRequest, run_job

    torch.set_num_threads(2)
    width, height = (int(v) for v in size.split("x"))
    components = build_components("offline")
    image = load_image(ROOT / "examples" / example / "image.png")
    config = build_run_config(
        mode=mode, size=(width, height), aspect="crop", splat_iters=splat_iters, video=video, seed=0
    )
    request = JobRequest(image, config)
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
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=["stage", "360"])
    parser.add_argument("--size", default="512x384")
    parser.add_argument("--splat-iters", type=int, default=300)
    parser.add_argument("--example", default="room")
    parser.add_argument("--out", default="/tmp/worldstitch-bench")
    parser.add_argument("--no-video", action="store_true")
    parser.add_argument("--with-components", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        row = run_one(
            args.child, args.size, args.splat_iters, args.example, Path(args.out) / args.child, not args.no_video
        )
        print("RESULT " + json.dumps(row))
        return

    rows = []
    for mode in args.modes:
        cmd = [sys.executable, __file__, "--child", mode, "--size", args.size, "--splat-iters", str(args.splat_iters)]
        cmd += ["--example", args.example, "--out", args.out] + (["--no-video"] if args.no_video else [])
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"benchmark of mode {mode} failed")
        rows.append(json.loads(lines[-1][len("RESULT ") :]))

    print(f"\nOffline profile, {args.size}, {args.splat_iters} splat iterations, example '{args.example}', 2 threads\n")
    header = f"| {'stage':<10} | " + " | ".join(f"{r['mode']:>8}" for r in rows) + " |"
    print(header)
    print("|" + "-" * 12 + "|" + "|".join("-" * 10 for _ in rows) + "|")
    stages = [s for s in STAGE_ORDER if any(s in r["timings"] for r in rows)]
    for stage in stages:
        cells = " | ".join(f"{r['timings'].get(stage, 0.0):8.2f}" for r in rows)
        print(f"| {stage:<10} | {cells} |")
    print(f"| {'total s':<10} | " + " | ".join(f"{r['total_s']:8.2f}" for r in rows) + " |")
    print(f"| {'peak RSS MB':<10} | " + " | ".join(f"{r['peak_rss_mb']:8.0f}" for r in rows) + " |")
    print(f"| {'views':<10} | " + " | ".join(f"{r['views']:8d}" for r in rows) + " |")
    print(f"| {'points':<10} | " + " | ".join(f"{r['points']:8d}" for r in rows) + " |")

    if args.with_components:
        for module in ("bench_render", "bench_depth", "bench_splats"):
            print(f"\n## {module}")
            subprocess.run([sys.executable, str(ROOT / "scripts" / f"{module}.py")], check=False)


if __name__ == "__main__":
    main()
