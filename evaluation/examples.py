"""Example inputs rendered from the procedural worlds of :mod:`evaluation.worlds` (written by
``scripts/make_examples.py`` into ``examples/``).

Each world is rendered from view 0 (the camera at the origin looking along +z, focal length = image width) as an
anti-aliased 8-bit image, a 16-bit millimetre z-depth, a one-line prompt and the camera. Same code, same bytes:
the worlds are deterministic and PNG encoding has no timestamps.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from core.cameras import Camera, make_cameras
from core.files import atomic_write
from core.images import to_uint8
from evaluation.worlds import make_world

DEFAULT_WIDTH, DEFAULT_HEIGHT = 512, 384  # 4:3, sides multiples of 8, small enough to keep the repo light
SUPERSAMPLE = 3  # 3 x 3 colour rays per pixel: edges anti-aliased like a photo's; depth stays pixel-centre truth
DEPTH_UNITS_PER_METRE = 1000  # depth.png stores millimetres
DEPTH_MAX_STORED = 65535  # uint16: depths must stay below 65.535 m (the worlds' sky boxes end at 60 m)
PNG_COMPRESS_LEVEL = 9  # smallest files; zlib at a fixed level is deterministic


def example_camera(height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH) -> Camera:
    """View 0: at the origin, looking along +z, the project's default intrinsics (focal = width)."""
    return make_cameras("single", (width, height))[0]


def example_arrays(
    name: str, height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH, supersample: int = SUPERSAMPLE
) -> tuple[np.ndarray, np.ndarray]:
    """Render one world's example: (rgb uint8 [H, W, 3], depth uint16 [H, W] in millimetres)."""
    rgb, depth = make_world(name).render(example_camera(height, width), supersample=supersample)
    rgb8 = to_uint8(rgb)
    millimetres = np.round(depth.double().numpy() * DEPTH_UNITS_PER_METRE)
    if millimetres.min() < 1 or millimetres.max() > DEPTH_MAX_STORED:
        raise ValueError(
            f"world {name!r}: depth range [{depth.min():.3f}, {depth.max():.3f}] m does not fit 16-bit millimetres"
        )
    return rgb8, millimetres.astype(np.uint16)


def png_bytes(array: np.ndarray) -> bytes:
    """PNG-encode an 8-bit RGB [H, W, 3] or 16-bit grey [H, W] array."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def camera_json(name: str, camera: Camera) -> str:
    """The example's camera.json text (intrinsics, pose, size, axes and depth unit)."""
    description = {
        "world": name,
        "width": camera.width,
        "height": camera.height,
        "K": [[round(float(v), 6) for v in row] for row in camera.K],
        "world_to_cam": [[round(float(v), 6) for v in row] for row in camera.world_to_cam],
        "axes": "OpenCV: x right, y down, z forward; world = this camera's frame",
        "depth_png": "16-bit z-depth (not ray length) in millimetres; 0 = unknown (never, here)",
    }
    return json.dumps(description, indent=2) + "\n"


def write_example(name: str, out_dir: Path, height: int = DEFAULT_HEIGHT, width: int = DEFAULT_WIDTH) -> list[Path]:
    """Render and write one example folder; returns the files written."""
    folder = out_dir / name
    rgb8, depth16 = example_arrays(name, height, width)
    files = {
        folder / "image.png": png_bytes(rgb8),
        folder / "depth.png": png_bytes(depth16),
        folder / "prompt.txt": (make_world(name).prompt + "\n").encode(),
        folder / "camera.json": camera_json(name, example_camera(height, width)).encode(),
    }
    for path, data in files.items():
        atomic_write(path, data)
    return list(files)
