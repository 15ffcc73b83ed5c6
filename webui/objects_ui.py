"""Placing virtual objects from the app: the panel's choices checked on the server, the click turned into an object
standing on the clicked surface, and the cheap preview (the object drawn into the clicked view).

The geometry is :mod:`pipeline.objects`; this module only turns what the panel sends into its types. An uploaded
mesh is read once, with :func:`pipeline.objects.load_mesh_file`'s limits, and kept in memory with the object
(:class:`SceneObject`), so the object survives Gradio emptying its upload cache and later re-exports ("grow where I
look") need no file.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
import numpy as np

from core.images import to_uint8
from core.types import Frame
from pipeline.objects import (
    HardDepthOcclusion,
    LoadedMesh,
    MeshError,
    ObjectSpec,
    PlacedObject,
    build_object,
    composite_frame,
    load_mesh_file,
    merge_objects,
    place_at_pixel,
)

KINDS = ("box", "sphere", "cylinder", "mesh")
"""What the panel offers: three primitives and an uploaded GLB/OBJ."""
MAX_SCENE_OBJECTS = 8
"""Objects one session may place in its scene: each is ray-cast into every view and every video frame again at
each re-export."""
SIZE_RANGE = (0.05, 5.0)
"""The object's largest side in scene units (the scene's depth unit: metres for metric depth)."""
DEFAULT_SIZE = 0.5
OFFSET_RANGE = (-3.0, 3.0)
"""Fine adjustment after the click, scene units, along the clicked view's right, the world's up and the clicked
view's forward direction (both horizontal)."""
SCALE_RANGE = (0.1, 10.0)
"""Fine adjustment of the size after the click (a factor)."""
TURN_RANGE = (-180.0, 180.0)
"""The object's yaw in degrees (turned to the right as seen from above)."""
DEFAULT_COLOR = "#d03030"
OCCLUSION_CHOICES = ("depth test", "learned")
"""How the downloaded frames hide an object behind the scene: the hard test against the scene's depth, or the
learned implicit-depth model (:class:`models.occlusion.LearnedOcclusion`, soft at edges). The splats (viewer,
video, splat downloads) are hidden by the rasteriser either way."""
WORLD_UP = np.array([0.0, -1.0, 0.0])
"""The world's up (OpenCV axes: y down)."""

_HEX = re.compile(r"^#([0-9a-fA-F]{6})$")
_RGB = re.compile(r"^rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*[\d.]+\s*)?\)$")


@dataclass(frozen=True)
class SceneObject:
    """An object placed in a session's scene: its spec and, for ``mesh``, the mesh read from the upload."""

    spec: ObjectSpec
    mesh: LoadedMesh | None = None

    def build(self) -> PlacedObject:
        return build_object(self.spec, self.mesh)


@dataclass(frozen=True)
class Click:
    """A pixel a user clicked in a generated view (0-based column and row)."""

    view: int
    column: int
    row: int


@dataclass(frozen=True)
class ObjectChoice:
    """The panel's controls, checked."""

    kind: str
    size: float
    color: tuple[float, float, float]
    turn_deg: float
    offset: tuple[float, float, float]
    """(right, up, forward) in scene units; see :data:`OFFSET_RANGE`."""
    scale: float
    mesh_path: str | None
    occlusion: str


def _number(value, name: str, bounds: tuple[float, float]) -> float:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise gr.Error(f"{name} must be a number between {low:g} and {high:g}.")
    if not low <= value <= high:
        raise gr.Error(f"{name} must be between {low:g} and {high:g}.")
    return float(value)


def parse_color(value) -> tuple[float, float, float]:
    """``#rrggbb`` or ``rgb(r, g, b)`` / ``rgba(r, g, b, a)`` (0-255) as RGB in [0, 1]; ``gr.Error`` otherwise."""
    text = value.strip() if isinstance(value, str) else ""
    if match := _HEX.match(text):
        digits = match.group(1)
        return tuple(int(digits[i : i + 2], 16) / 255.0 for i in (0, 2, 4))
    if (match := _RGB.match(text)) and all(float(c) <= 255 for c in match.groups()):
        return tuple(float(c) / 255.0 for c in match.groups())
    raise gr.Error("Colour must be a colour like #d03030.")


def check_choice(kind, size, color, turn, right, up, forward, scale, mesh, occlusion) -> ObjectChoice:
    """The panel's values checked on the server (API callers skip the widgets); ``gr.Error`` names the field."""
    if kind not in KINDS:
        raise gr.Error(f"Object must be one of {', '.join(KINDS)}.")
    check_occlusion(occlusion)
    mesh_path = mesh if isinstance(mesh, str) and mesh else None
    if kind == "mesh" and mesh_path is None:
        raise gr.Error("Upload a mesh file (GLB or OBJ) for the object kind 'mesh'.")
    offsets = tuple(
        _number(v, f"Move {name}", OFFSET_RANGE) for v, name in ((right, "right"), (up, "up"), (forward, "away"))
    )
    return ObjectChoice(
        kind=kind,
        size=_number(size, "Size", SIZE_RANGE),
        color=parse_color(color),
        turn_deg=_number(turn, "Turn", TURN_RANGE),
        offset=offsets,
        scale=_number(scale, "Scale", SCALE_RANGE),
        mesh_path=mesh_path if kind == "mesh" else None,
        occlusion=occlusion,
    )


def check_occlusion(value) -> str:
    """One of :data:`OCCLUSION_CHOICES`, else ``gr.Error``."""
    if value not in OCCLUSION_CHOICES:
        raise gr.Error(f"Occlusion must be one of {', '.join(OCCLUSION_CHOICES)}.")
    return value


def check_click(click, num_views: int) -> Click:
    """The pending click kept in the session's state, or ``gr.Error`` asking for one."""
    if not isinstance(click, Click):
        raise gr.Error("Click a view first, where the object should stand.")
    if not 0 <= click.view < num_views:
        raise gr.Error("The clicked view is no longer in the scene: click a view again.")
    return click


@functools.lru_cache(maxsize=4)
def _read_mesh(path: str, size: int, mtime_ns: int) -> LoadedMesh:  # keyed by the file's size and time too
    return load_mesh_file(path)


def read_mesh(path: str) -> LoadedMesh:
    """The uploaded mesh, read with :func:`pipeline.objects.load_mesh_file`'s limits (cached per upload).

    Raises:
        gr.Error: the file cannot be used; the message names the file (not its folder) and the problem.
    """
    try:
        stat = Path(path).stat()
        return _read_mesh(path, stat.st_size, stat.st_mtime_ns)
    except MeshError as err:
        raise gr.Error(f"Cannot use this mesh: {err}.") from None
    except OSError:
        raise gr.Error(f"Cannot use this mesh: {Path(path).name} could not be read; upload it again.") from None


def place_object(frame: Frame, click: Click, choice: ObjectChoice) -> SceneObject:
    """The object the panel describes, standing on the surface under the clicked pixel (at that pixel's depth),
    then moved by the choice's offsets.

    Raises:
        gr.Error: the pixel has no depth, the mesh cannot be used, or the result is out of bounds.
    """
    mesh = read_mesh(choice.mesh_path) if choice.kind == "mesh" else None
    # 1. The size: primitives are 1 unit across; a mesh is scaled so its largest side has the chosen size
    extent = 1.0
    if mesh is not None:
        extent = float((mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)).max())
        if not extent > 0:
            raise gr.Error("Cannot use this mesh: it has no extent (all its vertices are at one point).")
    factor = choice.size * choice.scale / extent
    try:
        spec = ObjectSpec(
            kind=choice.kind,
            position=(0.0, 0.0, 0.0),
            rotation_deg=(choice.turn_deg, 0.0, 0.0),
            scale=(factor, factor, factor),
            color=choice.color if mesh is None else None,
            mesh_path=Path(choice.mesh_path).name if mesh is not None else None,
        )
        # 2. The surface point under the click; the object's bottom touches it (y is down: the bottom is max y)
        point = np.asarray(place_at_pixel(frame, click.column, click.row, spec, anchor="center").position)
    except ValueError as err:
        raise gr.Error(f"Cannot place the object there: {err}.") from None
    bottom = build_object(spec, mesh).bounds[1, 1]
    point[1] -= bottom
    # 3. The adjustment: along the view's right, the world's up and the view's forward, both kept horizontal
    c2w = frame.camera.cam_to_world.double().cpu().numpy()
    right, forward = _horizontal(c2w[:3, 0]), _horizontal(c2w[:3, 2])
    offset_right, offset_up, offset_forward = choice.offset
    point = point + offset_right * right + offset_up * WORLD_UP + offset_forward * forward
    try:
        return SceneObject(replace(spec, position=tuple(float(c) for c in point)), mesh)
    except ValueError as err:
        raise gr.Error(f"Cannot place the object there: {err}.") from None


def _horizontal(direction: np.ndarray) -> np.ndarray:  # [3] -> [3] unit, perpendicular to the world's up
    flat = direction - (direction @ WORLD_UP) * WORLD_UP
    norm = np.linalg.norm(flat)
    return flat / norm if norm > 1e-9 else flat


@functools.lru_cache(maxsize=1)
def _learned_occlusion():
    from models.occlusion import LearnedOcclusion  # noqa: PLC0415 - loads weights: only when asked for

    return LearnedOcclusion.from_file()


def occluder_for(name: str):
    """The :class:`pipeline.objects.Occluder` an occlusion choice names (the learned weights loaded once)."""
    if name == "learned":
        try:
            return _learned_occlusion()
        except (OSError, ValueError) as err:
            raise gr.Error(f"The learned occlusion model is not available here ({type(err).__name__}).") from None
    return HardDepthOcclusion()


def view_with_objects(frame: Frame, objects: list[SceneObject], occlusion: str) -> np.ndarray:  # -> [H, W, 3] uint8
    """The view as it will be downloaded: the objects drawn in, hidden where the scene is in front."""
    if not objects:
        return to_uint8(frame.rgb)
    placed = merge_objects([obj.build() for obj in objects])
    return to_uint8(composite_frame(frame, placed, occluder_for(occlusion)).rgb)


def object_rows(objects: list[SceneObject]) -> list[list]:
    """One row per object for the panel's table: number, kind, size (largest side of its bounding box), position
    (its centre in the world frame), colour."""
    rows = []
    for number, obj in enumerate(objects, start=1):
        spec = obj.spec
        name = spec.kind if spec.mesh_path is None else f"mesh {spec.mesh_path}"
        lo, hi = obj.build().bounds
        size = float((hi - lo).max())
        color = "#" + "".join(f"{round(c * 255):02x}" for c in spec.color) if spec.color else "mesh colours"
        position = ", ".join(f"{c:.2f}" for c in spec.position)
        rows.append([number, name, round(size, 3), position, color])
    return rows
