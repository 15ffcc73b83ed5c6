"""Render the example inputs in ``examples/`` from the procedural worlds of :mod:`evaluation.worlds`.

Each world is rendered from view 0 (the camera at the origin looking along +z, focal length = image width) and
written as::

    examples/<name>/image.png    8-bit RGB, anti-aliased (3 x 3 rays per pixel), like a photo
    examples/<name>/depth.png    16-bit grey, ground-truth z-depth in millimetres through each pixel centre
    examples/<name>/prompt.txt   one line describing the scene
    examples/<name>/camera.json  the camera (K, world_to_cam, size) and the depth unit

Same code, same bytes: the worlds are deterministic and PNG encoding has no timestamps.

Usage:
    python scripts/make_examples.py [--out examples] [--width 512] [--height 384] [--worlds room street]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluation.examples import (
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    SUPERSAMPLE,
    camera_json,
    example_arrays,
    example_camera,
    png_bytes,
    write_example,
)
from evaluation.worlds import WORLD_NAMES

__all__ = ["SUPERSAMPLE", "camera_json", "example_arrays", "example_camera", "main", "png_bytes", "write_example"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "examples", help="output folder")
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    parser.add_argument("--height", type=int, default=DEFAULT_HEIGHT)
    parser.add_argument("--worlds", nargs="+", choices=WORLD_NAMES, default=list(WORLD_NAMES))
    args = parser.parse_args(argv)
    for name in args.worlds:
        for path in write_example(name, args.out, args.height, args.width):
            print(f"{path}  {path.stat().st_size / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
