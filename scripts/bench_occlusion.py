"""Occlusion of virtual objects on the held-out bathroom: the hard depth test vs the learned model.

Usage (from the repository root)::

    python -m scripts.bench_occlusion [--frames 8] [--threads 2] [--weights models/weights/occlusion.safetensors]

Six objects are placed behind, in front of and through the bathroom's bathtub and vanity; a camera slides past
them over ``--frames`` frames at 512 x 384. The scene depth each method sees is the exact ray-cast depth degraded
like generated depth (:func:`evaluation.occlusion.degrade_depth`): ``blur`` (the family the model was trained on,
new random draws) and ``fatten`` (foreground-fattened edges, never trained on). Prints a markdown table (occlusion
IoU, accuracy in a 4-px band around true occlusion edges, whole-object accuracy, spurious flips between
consecutive frames, time per view) and writes ``docs/img/occlusion_bathtub.png``: the object behind the bathtub
with the hard test, the learned model and the truth side by side, and each one's errors below. Skips cleanly when
the data is absent.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from core.files import atomic_write
from core.images import to_uint8
from evaluation.occlusion import BATHROOM_CASES, load_bathroom, run_bathroom_benchmark
from models.occlusion import DEFAULT_WEIGHTS, LearnedOcclusion, occlusion_features
from pipeline.objects import composite_image

PICTURE = Path("docs/img/occlusion_bathtub.png")
ZOOM = 2
"""The picture shows a crop around the object at 2x (nearest neighbour), so edge pixels are visible."""
CROP = (200, 150)
"""(width, height) of the crop around the object in the 512 x 384 view."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_occlusion", description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=8, help="frames of the camera path (>= 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--picture", type=Path, default=PICTURE)
    parser.add_argument("--seed", type=int, default=0, help="seed of the depth degradations")
    args = parser.parse_args(argv)
    if args.frames < 2:
        parser.error("--frames must be >= 2")
    torch.set_num_threads(args.threads)
    scene = load_bathroom()
    if scene is None:
        print("skipped: ../shared/data/bathroom is absent")
        return 0
    learned = LearnedOcclusion.from_file(args.weights)
    print(f"bathroom: {len(scene.faces)} triangles; {len(BATHROOM_CASES)} objects; {args.frames} frames at 512x384")
    results, picture = run_bathroom_benchmark(scene, learned, frames=args.frames, seed=args.seed)
    print()
    print(table(results))
    print()
    print(full_view_timing(learned, picture))
    write_picture(args.picture, picture)
    print(f"\npicture: {args.picture}")
    return 0


def table(results) -> str:
    lines = [
        "| scene depth | method | occlusion IoU | edge-band acc (4 px) | object acc | flicker (edge flips) "
        "| ms / view (wall) | ms / view (CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"blur": "generated-like (blur)", "fatten": "generated-like (fattened, unseen)"}
    for (method, mode), result in sorted(results.items(), key=lambda item: (item[0][1], item[0][0])):
        c = result.counts
        lines.append(
            f"| {names.get(mode, mode)} | {method} | {c.iou:.3f} | {c.band_accuracy:.3f} | {c.accuracy:.3f} "
            f"| {c.flicker:.4f} | {1000 * statistics.median(result.seconds):.1f} "
            f"| {1000 * statistics.median(result.cpu_seconds):.1f} |"
        )
    return "\n".join(lines)


def full_view_timing(learned: LearnedOcclusion, picture: dict, runs: int = 5) -> str:
    """The network on a whole 512 x 384 view (the worst case: an object filling the view), median of ``runs``."""
    rgb, depth = picture["rgb"], picture["depth"]
    coverage = torch.ones_like(depth)
    object_depth = depth.clamp(min=0.5) * 1.05
    features = occlusion_features(rgb, object_depth, coverage, depth)[None]
    with torch.no_grad():
        learned.net(features)
        wall, cpu = [], []
        for _ in range(runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            occlusion_features(rgb, object_depth, coverage, depth)
            learned.net(features)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return (
        f"learned model on a whole 512x384 view (features + network, {torch.get_num_threads()} threads): "
        f"{1000 * statistics.median(wall):.0f} ms wall, {1000 * statistics.median(cpu):.0f} ms CPU (shared machine)"
    )


FALSE_SHOWN = (1.0, 0.0, 1.0)
"""Error colour: the object is drawn where the scene should hide it (magenta)."""
FALSE_HIDDEN = (0.0, 0.9, 1.0)
"""Error colour: the object is hidden where it should show (cyan)."""


def write_picture(path: Path, picture: dict) -> None:
    """Hard test | learned | truth for the object behind the bathtub (blur-degraded depth), cropped and zoomed.

    The second row marks each method's errors on the object: magenta = shown but should be hidden, cyan = hidden
    but should show; light grey = rightly shown, dark grey = rightly hidden.
    """
    rgb, render, truth = picture["rgb"], picture["render"], picture["truth"]
    truth_visibility = (render.mask & ~truth).float()
    panels = [
        ("hard depth test (generated-like depth)", picture["visibility"][("hard", "blur")]),
        ("learned occlusion (same depth)", picture["visibility"][("learned", "blur")]),
        ("truth (exact depth)", truth_visibility),
    ]
    rows, cols = torch.nonzero(render.mask, as_tuple=True)
    center_v, center_u = int(rows.float().mean()), int(cols.float().mean())
    width, height = CROP
    v0 = min(max(center_v - height // 2, 0), rgb.shape[0] - height)
    u0 = min(max(center_u - width // 2, 0), rgb.shape[1] - width)
    label_h = 22
    tile_w, tile_h = width * ZOOM, height * ZOOM
    canvas = Image.new("RGB", (len(panels) * tile_w, 2 * (tile_h + label_h)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, visibility) in enumerate(panels):
        composite, _ = composite_image(rgb, None, render, visibility)
        errors = 0.25 * rgb.mean(dim=-1, keepdim=True).expand_as(rgb).clone()  # dimmed view
        shown = render.mask & (visibility >= 0.5)
        errors[render.mask & ~truth] = 0.75  # right, and visible
        errors[render.mask & truth] = 0.4  # right, and hidden
        errors[shown & truth] = torch.tensor(FALSE_SHOWN)
        errors[~shown & render.mask & ~truth] = torch.tensor(FALSE_HIDDEN)
        wrong = int(((shown & truth) | (~shown & render.mask & ~truth)).sum())
        for row, (image, text) in enumerate(((composite, label), (errors, f"errors: {wrong} px"))):
            crop = to_uint8(image[v0 : v0 + height, u0 : u0 + width])
            tile = Image.fromarray(np.ascontiguousarray(crop)).resize((tile_w, tile_h), Image.NEAREST)
            top = row * (tile_h + label_h)
            canvas.paste(tile, (i * tile_w, top + label_h))
            draw.text((i * tile_w + 6, top + 5), text, fill=(0, 0, 0))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    atomic_write(path, out.getvalue())


if __name__ == "__main__":
    sys.exit(main())
