"""Command line: ``python -m pipeline --image photo.png --mode 360 --out out/`` (also the ``worldstitch`` command).

The flags live in :mod:`pipeline.cli` (generated from the run-configuration dataclasses; ``--help`` lists them).
This module imports nothing heavy itself, so an entry point can set up threads before torch is loaded.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


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
    """Run the command line; returns the exit status (0 on success, 2 on a problem the user can fix)."""
    from core.threads import configure_threads

    configure_threads()  # first: before torch loads, so idle OpenMP threads sleep on a shared CPU
    from pipeline.cli import parse_args, run_config_from_args  # loads torch (the config's model options)

    args = parse_args(argv)
    try:
        config = run_config_from_args(args)
    except ValueError as err:
        return _fail(str(err))
    # heavy imports after argument parsing
    from core.images import ImageError, load_depth_file, load_image
    from pipeline.cleanup import remove_staging_dirs
    from pipeline.config import is_path_file
    from pipeline.job import JobError, JobRequest, load_components, run_job

    for leftover in remove_staging_dirs(args.out):  # a killed earlier run into the same folder left these
        print(f"removed an unfinished earlier run's staging folder {leftover.name}", file=sys.stderr)

    if is_path_file(config.scene.mode) and not Path(config.scene.mode).is_file():
        return _fail(f"path file not found: {config.scene.mode}")
    if not args.image.is_file():
        return _fail(f"image not found: {args.image}")
    try:
        image = load_image(args.image)
        depth = load_depth_file(args.depth, None) if args.depth else None
    except ImageError as err:
        return _fail(str(err))
    objects = []
    if args.objects is not None:
        from pipeline.objects import load_objects_json

        try:
            objects = load_objects_json(args.objects)
        except ValueError as err:  # names the file and the bad field
            return _fail(str(err))
    if depth is not None:
        for warning in depth.warnings:
            print(f"warning: {warning}", file=sys.stderr)

    try:
        components = load_components(config)
    except (ValueError, OSError) as err:
        return _fail(str(err))
    print(f"profile: {components.description}", file=sys.stderr)

    started = time.perf_counter()
    try:
        request = JobRequest(image, config, depth, objects)
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
    views = len(outputs.gallery) // 2
    return [path.name for path in [*outputs.downloads, outputs.transforms_json]] + [_count(views, "frame")]


def _count(number: int, noun: str) -> str:
    """``1 frame``, ``13 frames``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
