"""Command line: ``python -m pipeline --image photo.png --mode 360 --out out/``."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from pipeline.config import MODES, PRESETS, GrowConfig


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x384, got {text!r}") from None
    return width, height


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Grow an explorable 3D scene (Gaussian splats, point cloud, frames) around one photo.",
    )
    parser.add_argument("--image", required=True, help="input photo (PNG, JPEG or WEBP)")
    parser.add_argument("--out", required=True, help="output folder (created; files appear only on success)")
    parser.add_argument("--prompt", default="", help="what the scene should contain")
    parser.add_argument("--negative-prompt", default=None, help="what the outpainter should avoid")
    parser.add_argument("--mode", default="360", help=f"camera path: {', '.join(MODES)} or a path .json file")
    parser.add_argument("--depth", default=None, help="depth for the photo: 16-bit PNG in mm, or .npy/.npz in m")
    parser.add_argument("--profile", default="offline", choices=("offline", "generative", "auto"))
    parser.add_argument("--outpainter", default=None, help="offline name (patchmatch), local dir or Hub id")
    parser.add_argument("--depth-model", default=None, help="offline name (prior), local dir or Hub id")
    parser.add_argument("--completer", default=None, help="offline name (aligned), local dir or Hub id")
    parser.add_argument("--quality", default="default", choices=sorted(PRESETS), help="size / iteration preset")
    parser.add_argument("--size", type=parse_size, default=None, help="working size WxH (overrides --quality)")
    parser.add_argument("--fov", type=float, default=None, help="horizontal field of view in degrees")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="diffusion steps (generative outpainters)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (generative outpainters)")
    parser.add_argument("--splat-iters", type=int, default=None, help="splat fitting iterations (overrides --quality)")
    parser.add_argument("--no-fit", action="store_true", help="export splats initialised from the cloud, unfitted")
    parser.add_argument("--no-video", action="store_true", help="skip the fly-through MP4")
    parser.add_argument("--renderer", default="torch", choices=("torch", "pytorch3d"), help="reprojection backend")
    return parser


class TerminalProgress:
    """Prints one line per stage change with elapsed time."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.start = time.perf_counter()
        self.last = None

    def __call__(self, event) -> None:
        key = (event.stage, event.view)
        if key == self.last:
            return
        self.last = key
        elapsed = time.perf_counter() - self.start
        print(f"[{elapsed:6.1f}s] {event.fraction * 100:5.1f}%  {event.message or event.stage}", file=self.stream)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # heavy imports after argument parsing so --help is instant
    from core.images import ImageError, load_depth_file, load_image
    from models.registry import build_components
    from pipeline.job import JobError, JobRequest, run_job

    preset = PRESETS[args.quality]
    if args.mode not in MODES and not args.mode.endswith(".json"):
        return _fail(f"unknown mode {args.mode!r}: expected {', '.join(MODES)} or a path .json file")
    if args.mode.endswith(".json") and not Path(args.mode).is_file():
        return _fail(f"path file not found: {args.mode}")
    if not Path(args.image).is_file():
        return _fail(f"image not found: {args.image}")
    try:
        image = load_image(args.image)
        depth = load_depth_file(args.depth, None) if args.depth else None
    except ImageError as err:
        return _fail(str(err))
    if depth is not None:
        for warning in depth.warnings:
            print(f"warning: {warning}", file=sys.stderr)

    try:
        components = build_components(
            args.profile, outpainter=args.outpainter, depth_model=args.depth_model, completer=args.completer
        )
    except (ValueError, OSError) as err:
        return _fail(str(err))
    print(f"profile: {components.description}", file=sys.stderr)

    splat_iters = 0 if args.no_fit else (args.splat_iters if args.splat_iters is not None else preset.splat_iters)
    request = JobRequest(
        image=image,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt if args.negative_prompt is not None else JobRequest.negative_prompt,
        mode=args.mode,
        seed=args.seed,
        size=args.size or preset.size,
        hfov_deg=args.fov,
        depth=depth,
        splat_iters=splat_iters,
        video=not args.no_video,
        steps=args.steps,
        guidance=args.guidance,
        grow=replace(GrowConfig(), renderer=args.renderer),
    )
    started = time.perf_counter()
    try:
        outputs = run_job(request, components, args.out, progress=TerminalProgress())
    except (JobError, ValueError) as err:
        return _fail(str(err))
    total = time.perf_counter() - started

    print(f"\n{'stage':<10} {'seconds':>8}")
    for stage, seconds in outputs.timings.items():
        print(f"{stage:<10} {seconds:8.2f}")
    print(f"{'total':<10} {total:8.2f}")
    print(f"points per view: {outputs.points_per_view}  (total {sum(outputs.points_per_view)})")
    print(f"wrote {outputs.out_dir}: " + ", ".join(_names(outputs)))
    return 0


def _names(outputs) -> list[str]:
    paths = [outputs.splat_ply, outputs.dotsplat, outputs.points_ply, outputs.transforms_json, outputs.frames_zip]
    paths.append(outputs.video)
    return [p.name for p in paths if p is not None] + [f"{len(outputs.gallery) // 2} frames"]


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
