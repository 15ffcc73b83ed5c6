"""Virtual objects in a generated world: specs, safe mesh loading, drawing into any camera, compositing, splats.

An object is a primitive (box, sphere, cylinder) or a user mesh (GLB/OBJ), placed in the world frame of the scene
(the frame of view 0's camera, OpenCV axes: x right, y down, z forward, so "up" is -y). Everything here is a pure
function of its inputs: the job, the CLI and the app wire them together.

* :class:`ObjectSpec` / :func:`parse_objects` / :func:`load_objects_json`: what to insert, from a small JSON.
* :func:`load_mesh_file`: user meshes with the same hardening as images (size caps checked before loading,
  triangle caps read from the file's own header, no external references, clear errors for broken files).
* :func:`build_object`: the object's triangles in the world frame, with their shaded colours.
* :func:`render_object`: ray-cast the object into a :class:`~core.cameras.Camera` (embree through trimesh):
  colour, z-depth, and the pixel coverage (anti-aliased edges).
* :class:`HardDepthOcclusion`: the baseline occlusion test against the scene's depth; any object with the
  :class:`Occluder` method (e.g. :class:`models.occlusion.LearnedOcclusion`) can replace it.
* :func:`composite_image` / :func:`composite_frame`: draw the object over a view, hidden where the scene is in
  front, soft at its edges.
* :func:`place_at_pixel`: put an object where a user clicked, at that pixel's depth.
* :func:`object_splats` / :func:`append_splats`: the object as flat Gaussian splats sampled from its surface, to
  be added to the scene's splats so the downloads and the fly-through contain it.

Conventions are the project's (see :mod:`core.cameras`): pixel centres at +0.5, z-depth, 0 = unknown / no object.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor

from core.cameras import Camera
from core.checks import check_tensor
from core.types import Frame
from pipeline.splats import Splats
from renderers.gaussians import SH_C0

ObjectKind = Literal["box", "sphere", "cylinder", "mesh"]
OBJECT_KINDS: tuple[str, ...] = ("box", "sphere", "cylinder", "mesh")

MAX_OBJECTS = 32
"""Objects per JSON file: each one is ray-cast into every view and every video frame."""
MAX_OBJECTS_JSON_BYTES = 256 * 1024
"""A hand-written objects file is a few hundred bytes; anything this large is not one."""
MAX_MESH_BYTES = 32 * 1024 * 1024
"""32 MiB per mesh file, checked before reading: a detailed product model (~200k triangles with textures) fits."""
MAX_MESH_TRIANGLES = 200_000
"""Triangles per mesh, counted from the file's own header before it is loaded: bounds the memory of loading and
the ray-casting time per view (embree builds its tree in ~0.1 s at this size)."""
MAX_TEXTURE_PIXELS = 4096 * 4096
"""Pixels per embedded texture, read from the image header before trimesh decodes it (decompression bombs)."""
POSITION_LIMIT = 10_000.0
"""|coordinate| bound in scene units: larger values are typos, and make float32 depth tests meaningless."""
SCALE_RANGE = (1e-3, 1e3)
"""Allowed scale factors: a millimetre box to a kilometre building in metres."""
ROTATION_LIMIT_DEG = 720.0
"""|angle| bound: two full turns is already more than anyone means."""

PRIMITIVE_SPHERE_SUBDIVISIONS = 4
"""Icosphere level 4 (5120 triangles): facets are under a pixel for a sphere 300 px across."""
PRIMITIVE_CYLINDER_SECTIONS = 64
"""Cylinder sides: the silhouette error is 0.1 % of the radius."""
DEFAULT_COLOR = (0.75, 0.75, 0.75)
"""Light grey for meshes without colours and primitives without a ``color``."""
LIGHT_DIRECTION = (0.35, -0.8, -0.5)
"""Direction towards the light in the world frame (above, slightly right, towards view 0's camera). Fixed in the
world, so an object's shading is the same from every view, like the scene's baked lighting."""
AMBIENT = 0.55
"""Share of light that does not depend on the surface's orientation (faces turned away are not black)."""
SPLAT_THICKNESS_RATIO = 0.1
"""A surface splat's thickness (standard deviation along the normal) relative to its width."""
SPLAT_WIDTH_RATIO = 0.75
"""A surface splat's standard deviation relative to the mean spacing of the samples: random samples leave gaps
that an overlap of 1.5 spacings closes."""
SPLAT_OPACITY = 0.95
"""Opacity of the object's splats (the scene's initial splat opacity)."""
DEFAULT_SPLAT_POINTS = 30_000
"""Surface samples per object: about 2 mm apart on a 1 m box."""
MAX_SPLAT_POINTS = 500_000
"""Upper bound on surface samples (memory and rendering time of the downloads)."""

GLB_MAGIC = b"glTF"
GLB_JSON_CHUNK = 0x4E4F534A  # "JSON" little-endian
GLB_HEADER_BYTES = 12
GLB_CHUNK_HEADER_BYTES = 8
GLTF_TRIANGLES, GLTF_TRIANGLE_STRIP, GLTF_TRIANGLE_FAN = 4, 5, 6
GLTF_ALLOWED_REQUIRED_EXTENSIONS = frozenset({"KHR_materials_unlit", "KHR_texture_transform", "KHR_mesh_quantization"})
"""Required glTF extensions trimesh understands. Compressed geometry (Draco, meshopt) is refused: its real size is
unknown until it is decompressed."""

GLTF_TO_WORLD = np.diag([1.0, -1.0, -1.0])
"""glTF and OBJ files are +Y up, right-handed, with the model's front towards +Z. Our world is OpenCV (y down):
a half turn about x keeps the frame right-handed, puts "up" at -y and turns the model's front towards -z, i.e.
towards a camera looking along +z at it."""


class MeshError(ValueError):
    """A mesh file the user gave cannot be used; the message says why and names only the file's name."""


# --------------------------------------------------------------------------------------------------------------
# What to insert
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectSpec:
    """One virtual object, as the user describes it.

    The object's own frame has its bounding-box centre at the origin and our axes (y down); ``position`` moves
    that centre into the world. Primitives are 1 unit across before scaling: a box of side 1, a sphere of
    diameter 1, a cylinder of diameter 1 and height 1 standing upright (its axis along the world vertical).
    """

    kind: ObjectKind
    """``box``, ``sphere``, ``cylinder`` or ``mesh`` (then ``mesh_path`` names a GLB or OBJ file)."""
    position: tuple[float, float, float]
    """Bounding-box centre in the world frame (view 0's camera at the origin, OpenCV axes, up is -y)."""
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Yaw, pitch, roll in degrees, applied in that order about the object's own axes: yaw turns it to the right
    as seen from above (like a camera's yaw), pitch tips its front up, roll turns it about its front axis."""
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Size factors along the object's own x, y, z (scene units per unit of the primitive or of the mesh file)."""
    color: tuple[float, float, float] | None = None
    """RGB in [0, 1]; None = the mesh's own colours (textures sampled at the vertices), grey for primitives."""
    mesh_path: str | None = None
    """The GLB/OBJ file of a ``mesh`` object (relative paths are relative to the objects JSON file)."""

    def __post_init__(self):
        _check_spec(self, "object")

    @property
    def rotation_matrix(self) -> np.ndarray:  # [3, 3] object -> world
        """The object-to-world rotation (yaw about y, then pitch about the new x, then roll about the new z)."""
        return Rotation.from_euler("YXZ", self.rotation_deg, degrees=True).as_matrix()


def _check_spec(spec: ObjectSpec, where: str) -> None:
    _check_fields(spec.kind, spec.position, spec.rotation_deg, spec.scale, spec.color, spec.mesh_path, where)


def _check_fields(
    kind: object, position: object, rotation: object, scale: object, color: object, mesh: object, where: str
) -> None:
    """Raise ValueError naming the first bad field as ``{where}.{field}`` (the JSON field names)."""
    if kind not in OBJECT_KINDS:
        raise ValueError(f"{where}.kind must be one of {', '.join(OBJECT_KINDS)}, got {kind!r}")
    _check_vector(position, f"{where}.position", -POSITION_LIMIT, POSITION_LIMIT)
    _check_vector(rotation, f"{where}.rotation", -ROTATION_LIMIT_DEG, ROTATION_LIMIT_DEG)
    _check_vector(scale, f"{where}.scale", *SCALE_RANGE)
    if color is not None:
        _check_vector(color, f"{where}.color", 0.0, 1.0)
    if mesh is not None and (not isinstance(mesh, str) or not mesh.strip()):
        raise ValueError(f"{where}.mesh must be a file path string, got {mesh!r}")
    if kind == "mesh" and mesh is None:
        raise ValueError(f"{where}.mesh must name a .glb or .obj file for kind 'mesh'")
    if kind != "mesh" and mesh is not None:
        raise ValueError(f"{where}.mesh is only allowed with kind 'mesh', got kind {kind!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_vector(value: object, name: str, lo: float, hi: float) -> None:
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(_is_number(v) for v in value):
        raise ValueError(f"{name} must be 3 numbers, got {value!r}")
    if not all(lo <= v <= hi for v in value):
        raise ValueError(f"{name} must have every entry in [{lo:g}, {hi:g}], got {list(value)}")


_OBJECT_FIELDS = ("kind", "position", "rotation", "scale", "color", "mesh")


def parse_objects(data: object, base_dir: str | Path | None = None) -> list[ObjectSpec]:
    """Object specs from parsed JSON: ``{"objects": [{...}, ...]}`` (or the bare list).

    Each object: ``kind`` (required), ``position`` [x, y, z] (required, world frame, up is -y), ``rotation``
    [yaw, pitch, roll] degrees, ``scale`` (a number or 3 numbers), ``color`` [r, g, b] in [0, 1], ``mesh``
    (file path, for kind ``mesh``).

    Args:
        data: the parsed JSON value.
        base_dir: folder that relative ``mesh`` paths are resolved against (the JSON file's folder).

    Returns:
        One :class:`ObjectSpec` per entry, in order. Meshes are not loaded here.

    Raises:
        ValueError: naming the bad field, e.g. ``objects[1].position must be 3 numbers, got [0, 1]``.

    Example:
        >>> parse_objects({"objects": [{"kind": "box", "position": [0, 0, 3], "scale": 0.5}]})[0].scale
        (0.5, 0.5, 0.5)
    """
    items = data.get("objects") if isinstance(data, dict) else data
    if isinstance(data, dict) and set(data) - {"objects"}:
        raise ValueError(f"unknown top-level field(s) {sorted(set(data) - {'objects'})}: expected only 'objects'")
    if not isinstance(items, list) or not items:
        raise ValueError("objects must be a non-empty list of objects")
    if len(items) > MAX_OBJECTS:
        raise ValueError(f"objects has {len(items)} entries, more than the limit {MAX_OBJECTS}")
    specs = []
    for i, item in enumerate(items):
        where = f"objects[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be an object with fields {', '.join(_OBJECT_FIELDS)}")
        unknown = sorted(set(item) - set(_OBJECT_FIELDS))
        if unknown:
            raise ValueError(f"{where} has unknown field(s) {unknown}; allowed: {', '.join(_OBJECT_FIELDS)}")
        for required in ("kind", "position"):
            if required not in item:
                raise ValueError(f"{where}.{required} is missing")
        scale = item.get("scale", 1.0)
        if _is_number(scale):
            scale = [scale] * 3
        rotation, color, mesh = item.get("rotation", [0.0, 0.0, 0.0]), item.get("color"), item.get("mesh")
        _check_fields(item["kind"], item["position"], rotation, scale, color, mesh, where)
        if mesh is not None and base_dir is not None and not Path(mesh).is_absolute():
            mesh = str(Path(base_dir) / mesh)
        specs.append(
            ObjectSpec(
                kind=item["kind"],
                position=tuple(float(v) for v in item["position"]),
                rotation_deg=tuple(float(v) for v in rotation),
                scale=tuple(float(v) for v in scale),
                color=None if color is None else tuple(float(v) for v in color),
                mesh_path=mesh,
            )
        )
    return specs


def load_objects_json(path: str | Path) -> list[ObjectSpec]:
    """Read an objects file (see :func:`parse_objects`); relative mesh paths resolve against its folder.

    Raises:
        ValueError: the file is missing, too large, not JSON, or a field is wrong (the message names it).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ValueError(f"cannot read objects file {path.name}: {err.strerror}") from None
    if size > MAX_OBJECTS_JSON_BYTES:
        raise ValueError(f"objects file {path.name} is {size} bytes, more than the limit {MAX_OBJECTS_JSON_BYTES}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read objects file {path.name}: {err}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"objects file {path.name} is not valid JSON: {err}") from None
    return parse_objects(data, path.parent)


# --------------------------------------------------------------------------------------------------------------
# Mesh files
# --------------------------------------------------------------------------------------------------------------


class LoadedMesh(NamedTuple):
    """A mesh read from a user's file, in the file's own coordinates (not yet turned into our axes)."""

    vertices: np.ndarray  # [V, 3] float64
    faces: np.ndarray  # [F, 3] int64
    vertex_colors: np.ndarray | None  # [V, 3] float32 in [0, 1], None = the file has no colours


def load_mesh_file(
    path: str | Path,
    max_bytes: int = MAX_MESH_BYTES,
    max_triangles: int = MAX_MESH_TRIANGLES,
) -> LoadedMesh:
    """Read a GLB or OBJ mesh safely.

    The file size is checked before reading, the triangle count from the GLB's JSON header or the OBJ's face
    lines before trimesh parses anything, and the file is parsed from memory with no resolver, so it can reach
    no other file and no network. GLB files must embed everything (no ``uri`` references) and may not need
    compressed-geometry extensions.

    Args:
        path: a ``.glb`` or ``.obj`` file.
        max_bytes: largest file accepted.
        max_triangles: most triangles accepted.

    Returns:
        The concatenated triangles of every mesh in the file, with vertex colours when it has any.

    Raises:
        MeshError: naming the file (not its folder) and the problem.
    """
    path = Path(path)
    name = path.name
    suffix = path.suffix.lower()
    if suffix not in (".glb", ".obj"):
        raise MeshError(f"mesh {name}: only .glb and .obj files are accepted, got {suffix or 'no extension'!r}")
    try:
        stat = path.stat()
    except OSError as err:
        raise MeshError(f"mesh {name}: cannot read it ({err.strerror})") from None
    if not path.is_file():
        raise MeshError(f"mesh {name}: not a regular file")
    if stat.st_size == 0:
        raise MeshError(f"mesh {name}: the file is empty")
    if stat.st_size > max_bytes:
        raise MeshError(f"mesh {name}: {stat.st_size} bytes is more than the limit of {max_bytes} bytes")
    data = path.read_bytes()
    if suffix == ".glb":
        _check_glb(data, name, max_triangles)
    else:
        _check_obj(data, name, max_triangles)
    return _parse_mesh(data, suffix[1:], name, max_triangles)


def _check_glb(data: bytes, name: str, max_triangles: int) -> None:
    """Validate a GLB's container and JSON header without trimesh: structure, references, triangle count."""
    if len(data) < GLB_HEADER_BYTES + GLB_CHUNK_HEADER_BYTES or data[:4] != GLB_MAGIC:
        raise MeshError(f"mesh {name}: not a binary glTF file (bad header)")
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise MeshError(f"mesh {name}: glTF version {version} is not supported (only 2)")
    if length != len(data):
        raise MeshError(f"mesh {name}: the header says {length} bytes but the file has {len(data)} (truncated?)")
    chunk_length, chunk_type = struct.unpack_from("<II", data, GLB_HEADER_BYTES)
    start = GLB_HEADER_BYTES + GLB_CHUNK_HEADER_BYTES
    if chunk_type != GLB_JSON_CHUNK or start + chunk_length > len(data):
        raise MeshError(f"mesh {name}: the JSON chunk is missing or truncated")
    try:
        header = json.loads(data[start : start + chunk_length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MeshError(f"mesh {name}: the JSON chunk is corrupt ({err})") from None
    if not isinstance(header, dict):
        raise MeshError(f"mesh {name}: the JSON chunk is not an object")
    required = set(header.get("extensionsRequired") or []) - GLTF_ALLOWED_REQUIRED_EXTENSIONS
    if required:
        raise MeshError(f"mesh {name}: needs unsupported glTF extension(s) {sorted(required)} (compressed meshes?)")
    for group in ("buffers", "images"):
        for i, item in enumerate(_list(header, group, name)):
            if isinstance(item, dict) and "uri" in item:
                raise MeshError(
                    f"mesh {name}: {group}[{i}] refers to an outside file or URL; GLB files must embed everything"
                )
    triangles = _glb_triangles(header, name)
    if triangles == 0:
        raise MeshError(f"mesh {name}: contains no triangles")
    if triangles > max_triangles:
        raise MeshError(f"mesh {name}: {triangles} triangles is more than the limit of {max_triangles}")
    _check_glb_textures(data, header, name)


def _list(header: dict, key: str, name: str) -> list:
    value = header.get(key, [])
    if not isinstance(value, list):
        raise MeshError(f"mesh {name}: field '{key}' must be a list")
    return value


def _glb_triangles(header: dict, name: str) -> int:
    """Triangles the file will expand to: every node that instances a mesh counts that mesh's triangles."""
    accessors, meshes = _list(header, "accessors", name), _list(header, "meshes", name)

    def count(accessor_index: object) -> int:
        if not isinstance(accessor_index, int) or not 0 <= accessor_index < len(accessors):
            raise MeshError(f"mesh {name}: accessor index {accessor_index!r} is out of range")
        value = accessors[accessor_index].get("count") if isinstance(accessors[accessor_index], dict) else None
        if not isinstance(value, int) or value < 0:
            raise MeshError(f"mesh {name}: accessor {accessor_index} has no valid count")
        return value

    per_mesh = []
    for i, mesh in enumerate(meshes):
        primitives = mesh.get("primitives", []) if isinstance(mesh, dict) else None
        if not isinstance(primitives, list):
            raise MeshError(f"mesh {name}: meshes[{i}].primitives must be a list")
        total = 0
        for primitive in primitives:
            if not isinstance(primitive, dict) or not isinstance(primitive.get("attributes"), dict):
                raise MeshError(f"mesh {name}: meshes[{i}] has a primitive without attributes")
            mode = primitive.get("mode", GLTF_TRIANGLES)
            if mode not in (GLTF_TRIANGLES, GLTF_TRIANGLE_STRIP, GLTF_TRIANGLE_FAN):
                continue  # points and lines: trimesh loads no faces from them
            corners = (
                count(primitive["indices"])
                if "indices" in primitive
                else count(primitive["attributes"].get("POSITION"))
            )
            total += corners // 3 if mode == GLTF_TRIANGLES else max(corners - 2, 0)
        per_mesh.append(total)
    nodes = _list(header, "nodes", name)
    instanced = [node["mesh"] for node in nodes if isinstance(node, dict) and "mesh" in node]
    if not instanced:  # a file without nodes: trimesh loads each mesh once
        return sum(per_mesh)
    for index in instanced:
        if not isinstance(index, int) or not 0 <= index < len(per_mesh):
            raise MeshError(f"mesh {name}: a node refers to mesh {index!r}, which does not exist")
    return sum(per_mesh[index] for index in instanced)


def _check_glb_textures(data: bytes, header: dict, name: str) -> None:
    """Refuse embedded textures whose header announces more than MAX_TEXTURE_PIXELS (read without decoding)."""
    from PIL import Image  # noqa: PLC0415 - only needed for GLBs with textures

    views = _list(header, "bufferViews", name)
    binary_start = GLB_HEADER_BYTES + GLB_CHUNK_HEADER_BYTES + struct.unpack_from("<I", data, GLB_HEADER_BYTES)[0]
    binary_start += GLB_CHUNK_HEADER_BYTES  # skip the BIN chunk's own header
    for i, image in enumerate(_list(header, "images", name)):
        if not isinstance(image, dict) or "bufferView" not in image:
            continue
        view = (
            views[image["bufferView"]]
            if isinstance(image["bufferView"], int) and image["bufferView"] < len(views)
            else None
        )
        if not isinstance(view, dict):
            raise MeshError(f"mesh {name}: images[{i}] refers to a missing buffer view")
        offset, length = view.get("byteOffset", 0), view.get("byteLength", 0)
        if not (isinstance(offset, int) and isinstance(length, int) and offset >= 0 and length >= 0):
            raise MeshError(f"mesh {name}: images[{i}] has a buffer view with an invalid offset or length")
        blob = data[binary_start + offset : binary_start + offset + length]
        try:
            with Image.open(io.BytesIO(blob)) as picture:
                width, height = picture.size
        except Exception as err:  # noqa: BLE001 - any decoder failure is a corrupt texture
            raise MeshError(f"mesh {name}: images[{i}] is not a readable image ({type(err).__name__})") from None
        if width * height > MAX_TEXTURE_PIXELS:
            raise MeshError(f"mesh {name}: images[{i}] is {width}x{height}, more than {MAX_TEXTURE_PIXELS} pixels")


def _check_obj(data: bytes, name: str, max_triangles: int) -> None:
    """Count an OBJ's triangles (a face of n corners is n - 2 triangles) before trimesh parses it."""
    if b"\x00" in data[:4096]:
        raise MeshError(f"mesh {name}: not a text OBJ file (binary data)")
    triangles = 0
    for line in data.splitlines():
        if line.startswith(b"f ") or line.startswith(b"f\t"):
            triangles += max(len(line.split()) - 3, 0)
            if triangles > max_triangles:
                raise MeshError(f"mesh {name}: more than the limit of {max_triangles} triangles")
    if triangles == 0:
        raise MeshError(f"mesh {name}: contains no faces")


def _parse_mesh(data: bytes, file_type: str, name: str, max_triangles: int) -> LoadedMesh:
    import trimesh  # noqa: PLC0415 - heavy import, only when a mesh is loaded

    try:
        loaded = trimesh.load(io.BytesIO(data), file_type=file_type, resolver=None, allow_remote=False)
        geometries = list(loaded.dump()) if isinstance(loaded, trimesh.Scene) else [loaded]
        meshes = [g for g in geometries if isinstance(g, trimesh.Trimesh) and len(g.faces) > 0]
    except MeshError:
        raise
    except Exception as err:  # noqa: BLE001 - trimesh raises many types for broken files
        raise MeshError(
            f"mesh {name}: could not be read as {file_type.upper()} ({type(err).__name__}: {err})"
        ) from None
    if not meshes:
        raise MeshError(f"mesh {name}: contains no triangles")
    faces_total = sum(len(m.faces) for m in meshes)
    if faces_total > max_triangles:
        raise MeshError(f"mesh {name}: {faces_total} triangles is more than the limit of {max_triangles}")
    vertices, faces, colors, offset = [], [], [], 0
    has_colors = False
    for mesh in meshes:
        v = np.asarray(mesh.vertices, dtype=np.float64)
        f = np.asarray(mesh.faces, dtype=np.int64)
        if not np.isfinite(v).all():
            raise MeshError(f"mesh {name}: has non-finite vertex coordinates")
        if f.min() < 0 or f.max() >= len(v):
            raise MeshError(f"mesh {name}: a face refers to a vertex that does not exist")
        c = _vertex_colors(mesh)
        has_colors |= c is not None
        vertices.append(v)
        faces.append(f + offset)
        colors.append(c if c is not None else np.tile(np.float32(DEFAULT_COLOR), (len(v), 1)))
        offset += len(v)
    return LoadedMesh(np.concatenate(vertices), np.concatenate(faces), np.concatenate(colors) if has_colors else None)


def _vertex_colors(mesh) -> np.ndarray | None:  # -> [V, 3] float32 or None
    """The mesh's colours at its vertices (textures sampled there), or None when it has only a default colour."""
    visual = mesh.visual
    try:
        if visual.kind == "texture":
            visual = visual.to_color()
        if visual.kind not in ("vertex", "face"):
            return None
        colors = np.asarray(visual.vertex_colors, dtype=np.float32)[:, :3] / 255.0
    except Exception:  # noqa: BLE001 - a material trimesh cannot sample: fall back to the default colour
        return None
    return colors if colors.shape == (len(mesh.vertices), 3) else None


# --------------------------------------------------------------------------------------------------------------
# Geometry in the world
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PlacedObject:
    """An object's triangles in the world frame with the colour of every triangle corner, ready to draw.

    Colours are already shaded (Lambertian, fixed world light), so they are the same from every view.
    """

    vertices: np.ndarray  # [V, 3] float64 world
    faces: np.ndarray  # [F, 3] int64
    face_colors: np.ndarray  # [F, 3, 3] float32 shaded colour at each corner of each triangle, in [0, 1]

    @cached_property
    def _ray_caster(self) -> _RayCaster:
        return _RayCaster(self.vertices, self.faces)

    @property
    def bounds(self) -> np.ndarray:  # [2, 3] min and max corner in the world
        return np.stack([self.vertices.min(axis=0), self.vertices.max(axis=0)])

    @cached_property
    def face_normals(self) -> np.ndarray:  # [F, 3] unit, by the triangles' winding
        return _face_normals(self.vertices, self.faces)

    @cached_property
    def areas(self) -> np.ndarray:  # [F]
        corners = self.vertices[self.faces]
        return 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=-1)


def _face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:  # [V, 3], [F, 3] -> [F, 3] unit
    corners = vertices[faces]  # [F, 3, 3]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return normal / np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-20)


class _RayCaster:
    """Nearest-hit ray casting: embree (embreex) when installed, else trimesh's numpy engine (slow, same result).

    Embree works in float32: vertices and ray origins are shifted to the mesh's corner first, so precision does
    not depend on where the object sits in the world.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):  # [V, 3], [F, 3]
        self.origin = vertices.min(axis=0)
        self.vertices, self.faces = vertices, faces
        try:
            from embreex import rtcore_scene  # noqa: PLC0415
            from embreex.mesh_construction import TriangleMesh  # noqa: PLC0415
        except ImportError:
            self.scene = None
            return
        self.scene = rtcore_scene.EmbreeScene()
        TriangleMesh(
            scene=self.scene,
            vertices=(vertices - self.origin).astype(np.float32),
            indices=faces.astype(np.int32),
        )

    def cast(
        self, origin: np.ndarray, directions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # [3], [N, 3] -> t [N] (inf = miss), face [N], barycentric [N, 3]
        """Ray parameter (in units of each direction's length), hit triangle and barycentric weights per ray."""
        n = len(directions)
        if self.scene is not None:
            origins = np.broadcast_to((origin - self.origin).astype(np.float32), (n, 3))
            out = self.scene.run(np.ascontiguousarray(origins), directions.astype(np.float32), output=1)
            face = out["primID"].astype(np.int64)
            hit = face >= 0
            t = np.where(hit, out["tfar"], np.inf)
            u, v = out["u"], out["v"]
            weights = np.stack([1 - u - v, u, v], -1).clip(0, 1)
            return t, np.where(hit, face, 0), weights
        import trimesh  # noqa: PLC0415

        mesh = trimesh.Trimesh(self.vertices, self.faces, process=False)
        locations, ray_index, tri_index = mesh.ray.intersects_location(
            np.broadcast_to(origin, (n, 3)), directions, multiple_hits=False
        )
        t = np.full(n, np.inf)
        face = np.zeros(n, np.int64)
        weights = np.zeros((n, 3))
        if len(ray_index):
            t[ray_index] = ((locations - origin) * directions[ray_index]).sum(-1) / (directions[ray_index] ** 2).sum(-1)
            face[ray_index] = tri_index
            weights[ray_index] = _barycentric(self.vertices[self.faces[tri_index]], locations)
        return t, face, weights


@functools.lru_cache(maxsize=len(OBJECT_KINDS))
def _primitive(kind: str) -> tuple[np.ndarray, np.ndarray]:  # -> [V, 3], [F, 3] in our axes, 1 unit across
    """A primitive's triangles (built once per process; the arrays are read-only)."""
    import trimesh  # noqa: PLC0415

    if kind == "box":
        mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    elif kind == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=PRIMITIVE_SPHERE_SUBDIVISIONS, radius=0.5)
    else:  # cylinder: trimesh's axis is z; ours stands along y (the world vertical)
        mesh = trimesh.creation.cylinder(radius=0.5, height=1.0, sections=PRIMITIVE_CYLINDER_SECTIONS)
        mesh.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, (1.0, 0.0, 0.0)))
    vertices, faces = np.array(mesh.vertices, dtype=np.float64), np.array(mesh.faces, dtype=np.int64)
    vertices.flags.writeable = faces.flags.writeable = False
    return vertices, faces


def build_object(spec: ObjectSpec, mesh: LoadedMesh | None = None) -> PlacedObject:
    """The object's triangles in the world frame, with shaded colours.

    Args:
        spec: what and where.
        mesh: the loaded file for ``kind == "mesh"``; None loads ``spec.mesh_path`` with :func:`load_mesh_file`.

    Returns:
        The placed object.

    Raises:
        MeshError: the mesh file cannot be used.

    Example:
        >>> box = build_object(ObjectSpec("box", (0.0, 0.0, 3.0), scale=(2.0, 2.0, 2.0)))
        >>> box.bounds.round(3).tolist()
        [[-1.0, -1.0, 2.0], [1.0, 1.0, 4.0]]
    """
    if spec.kind == "mesh":
        mesh = mesh if mesh is not None else load_mesh_file(spec.mesh_path)
        local = mesh.vertices @ GLTF_TO_WORLD.T
        faces = mesh.faces
        colors = mesh.vertex_colors
    else:
        local, faces = _primitive(spec.kind)
        colors = None
    local = local - 0.5 * (local.min(axis=0) + local.max(axis=0))  # bounding-box centre at the origin
    world = (local * np.asarray(spec.scale)) @ spec.rotation_matrix.T + np.asarray(spec.position)
    if spec.color is not None or colors is None:
        albedo = np.tile(np.float32(spec.color if spec.color is not None else DEFAULT_COLOR), (len(world), 1))
    else:
        albedo = colors.astype(np.float32)
    if np.linalg.det(spec.rotation_matrix * np.asarray(spec.scale)) < 0:
        faces = faces[:, ::-1]  # a mirroring scale flips the winding; keep normals outward
    faces = np.ascontiguousarray(faces)
    shading = _shading(_face_normals(world, faces))  # [F]
    return PlacedObject(world, faces, (albedo[faces] * shading[:, None, None]).clip(0, 1).astype(np.float32))


def _shading(normals: np.ndarray) -> np.ndarray:  # [F, 3] -> [F]
    light = np.asarray(LIGHT_DIRECTION) / np.linalg.norm(LIGHT_DIRECTION)
    # two-sided: open meshes show their inside faces lit the same way as the outside
    return (AMBIENT + (1 - AMBIENT) * np.abs(normals @ light)).astype(np.float32)


def merge_objects(objects: list[PlacedObject]) -> PlacedObject:
    """Several objects as one (drawn together: the nearest one wins each pixel)."""
    if not objects:
        raise ValueError("merge_objects needs at least one object")
    offsets = np.cumsum([0] + [len(o.vertices) for o in objects[:-1]])
    return PlacedObject(
        np.concatenate([o.vertices for o in objects]),
        np.concatenate([o.faces + off for o, off in zip(objects, offsets)]),
        np.concatenate([o.face_colors for o in objects]),
    )


# --------------------------------------------------------------------------------------------------------------
# Drawing into a camera
# --------------------------------------------------------------------------------------------------------------


class ObjectRender(NamedTuple):
    """The object as one camera sees it (ignoring the scene)."""

    rgb: Tensor  # [H, W, 3] the object's colour (average over the pixel's covered samples), 0 where absent
    depth: Tensor  # [H, W] z-depth of the nearest object sample in the pixel, 0 where absent
    coverage: Tensor  # [H, W] fraction of the pixel the object covers, in [0, 1]

    @property
    def mask(self) -> Tensor:  # [H, W] bool
        return self.coverage > 0


def render_object(obj: PlacedObject, camera: Camera, supersample: int = 2) -> ObjectRender:
    """Ray-cast the object into a camera (only the pixels of its projected bounding box are cast).

    One ray goes through every pixel centre; pixels on the object's outline (a 4-neighbour disagrees about the
    hit) are cast again with ``supersample x supersample`` rays, so the outline is anti-aliased at little cost.

    Args:
        obj: the object (or :func:`merge_objects` of several).
        camera: any pinhole camera.
        supersample: rays per side on outline pixels; coverage and colour average them, depth is the nearest hit.

    Returns:
        Colour, z-depth and coverage, float32 on the camera's device.

    Example:
        >>> from core.cameras import make_cameras
        >>> camera = make_cameras("single", (64, 48))[0]
        >>> render = render_object(build_object(ObjectSpec("box", (0.0, 0.0, 4.0))), camera)
        >>> round(float(render.depth[24, 32]), 3), bool(render.mask[0, 0])
        (3.5, False)
    """
    if isinstance(supersample, bool) or not isinstance(supersample, int) or not 1 <= supersample <= 4:
        raise ValueError(f"supersample must be an int in 1..4, got {supersample!r}")
    height, width = camera.height, camera.width
    rgb = np.zeros((height, width, 3), np.float32)
    depth = np.zeros((height, width), np.float32)
    coverage = np.zeros((height, width), np.float32)
    box = _pixel_box(obj, camera)
    if box is not None:
        u0, v0, u1, v1 = box
        K = camera.K.double().cpu().numpy()
        c2w = camera.cam_to_world.double().cpu().numpy()
        rows, cols = np.meshgrid(np.arange(v0, v1), np.arange(u0, u1), indexing="ij")  # [h, w]
        hit, z, colors = _cast(obj, K, c2w, cols.reshape(-1) + 0.5, rows.reshape(-1) + 0.5)
        hit = hit.reshape(rows.shape)
        coverage[v0:v1, u0:u1] = hit
        depth[v0:v1, u0:u1] = z.reshape(rows.shape)
        rgb[v0:v1, u0:u1] = colors.reshape(*rows.shape, 3)
        if supersample > 1:
            padded = np.pad(hit, 1, mode="edge")
            outline = np.zeros_like(hit)
            for dv, du in ((0, 1), (2, 1), (1, 0), (1, 2)):
                outline |= padded[dv : dv + hit.shape[0], du : du + hit.shape[1]] != hit
            edge_rows, edge_cols = rows[outline], cols[outline]  # [E]
            if len(edge_rows):
                s = supersample
                steps = (np.arange(s) + 0.5) / s
                sub_v = (edge_rows[:, None, None] + steps[None, :, None] + 0 * steps[None, None, :]).reshape(-1)
                sub_u = (edge_cols[:, None, None] + 0 * steps[None, :, None] + steps[None, None, :]).reshape(-1)
                sub_hit, sub_z, sub_rgb = _cast(obj, K, c2w, sub_u, sub_v)
                sub_hit = sub_hit.reshape(-1, s * s)
                hits = sub_hit.sum(axis=1)  # [E]
                nearest = np.where(sub_hit, sub_z.reshape(-1, s * s), np.inf).min(axis=1)
                mean_rgb = (sub_rgb.reshape(-1, s * s, 3) * sub_hit[..., None]).sum(axis=1) / np.maximum(hits, 1)[
                    :, None
                ]
                coverage[edge_rows, edge_cols] = hits / (s * s)
                depth[edge_rows, edge_cols] = np.where(hits > 0, nearest, 0.0)
                rgb[edge_rows, edge_cols] = mean_rgb
    device = camera.K.device
    return ObjectRender(
        torch.from_numpy(rgb).to(device), torch.from_numpy(depth).to(device), torch.from_numpy(coverage).to(device)
    )


def _cast(
    obj: PlacedObject,
    K: np.ndarray,  # [3, 3]
    c2w: np.ndarray,  # [4, 4]
    u: np.ndarray,  # [N] pixel coordinates (pixel centres at +0.5)
    v: np.ndarray,  # [N]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # hit [N] bool, z-depth [N] (0 = miss), colour [N, 3]
    cam_dirs = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    directions = cam_dirs @ c2w[:3, :3].T  # z = 1 in the camera frame: the ray parameter is the z-depth
    t, face, weights = obj._ray_caster.cast(c2w[:3, 3], directions)
    hit = np.isfinite(t)
    z = np.where(hit, t, 0.0).astype(np.float32)
    colors = np.einsum("nk,nkc->nc", weights, obj.face_colors[face]).astype(np.float32)
    return hit, z, np.where(hit[:, None], colors, 0.0).astype(np.float32)


def _pixel_box(obj: PlacedObject, camera: Camera) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (u0, v0, u1, v1) that can contain the object, None when it is wholly behind or outside."""
    w2c = camera.world_to_cam.double().cpu().numpy()
    K = camera.K.double().cpu().numpy()
    lo, hi = obj.bounds
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    cam = corners @ w2c[:3, :3].T + w2c[:3, 3]  # [8, 3]
    if (cam[:, 2] <= 0).all():
        return None
    if (cam[:, 2] <= 0).any():  # the box straddles the camera plane: its projection is unbounded
        return 0, 0, camera.width, camera.height
    u = K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]
    v = K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]
    u0, u1 = max(int(math.floor(u.min())), 0), min(int(math.ceil(u.max())), camera.width)
    v0, v1 = max(int(math.floor(v.min())), 0), min(int(math.ceil(v.max())), camera.height)
    if u0 >= u1 or v0 >= v1:
        return None
    return u0, v0, u1, v1


def _barycentric(corners: np.ndarray, points: np.ndarray) -> np.ndarray:  # [M, 3, 3], [M, 3] -> [M, 3]
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    v0, v1, v2 = b - a, c - a, points - a
    d00, d01, d11 = (v0 * v0).sum(-1), (v0 * v1).sum(-1), (v1 * v1).sum(-1)
    d20, d21 = (v2 * v0).sum(-1), (v2 * v1).sum(-1)
    denom = np.where(np.abs(d00 * d11 - d01 * d01) > 1e-30, d00 * d11 - d01 * d01, 1e-30)
    w1 = (d11 * d20 - d01 * d21) / denom
    w2 = (d00 * d21 - d01 * d20) / denom
    return np.clip(np.stack([1 - w1 - w2, w1, w2], -1), 0, 1)


# --------------------------------------------------------------------------------------------------------------
# Occlusion and compositing
# --------------------------------------------------------------------------------------------------------------


class Occluder(Protocol):
    """Decides, per pixel, how much of the object the scene lets through."""

    def visibility(
        self,
        rgb: Tensor,  # [H, W, 3] the view, in [0, 1]
        scene_depth: Tensor | None,  # [H, W] the scene's z-depth for this view, 0 = unknown
        render: ObjectRender,
    ) -> Tensor:  # [H, W] in [0, 1]: 1 = the object is in front of the scene here
        ...


@dataclass(frozen=True)
class HardDepthOcclusion:
    """The baseline: the object shows wherever it is nearer than the scene's depth (unknown depth shows it)."""

    margin_rel: float = 0.0
    """Relative tolerance: the scene hides the object only where it is nearer by more than this fraction of the
    object's depth (0 = a plain depth test; a small margin lets an object touching a surface show whole)."""

    def visibility(self, rgb: Tensor, scene_depth: Tensor | None, render: ObjectRender) -> Tensor:  # -> [H, W]
        if scene_depth is None:
            return render.mask.float()
        sizes = check_tensor(render.depth, "H W", "render.depth", "float")
        check_tensor(scene_depth, "H W", "scene_depth", "float", sizes)
        hidden = (scene_depth > 0) & (scene_depth < render.depth * (1.0 - self.margin_rel))
        return (render.mask & ~hidden).float()


def composite_image(
    rgb: Tensor,  # [H, W, 3] in [0, 1]
    depth: Tensor | None,  # [H, W] z-depth, 0 = unknown
    render: ObjectRender,
    visibility: Tensor,  # [H, W] in [0, 1]
) -> tuple[Tensor, Tensor | None]:  # [H, W, 3], [H, W]
    """Blend the object over a view: alpha = coverage x visibility (soft at the object's and the occluder's edges).

    Returns:
        The new colour, and the new depth (the object's where it covers more than half of the pixel and is
        visible), or None when no depth was given.
    """
    sizes = check_tensor(rgb, "H W 3", "rgb", "float")
    check_tensor(visibility, "H W", "visibility", "float", sizes)
    check_tensor(render.coverage, "H W", "render.coverage", "float", sizes)
    alpha = (render.coverage * visibility.clamp(0, 1))[..., None]  # [H, W, 1]
    out = rgb * (1 - alpha) + render.rgb.to(rgb) * alpha
    if depth is None:
        return out, None
    check_tensor(depth, "H W", "depth", "float", sizes)
    return out, torch.where(alpha[..., 0] > 0.5, render.depth.to(depth), depth)


def composite_frame(frame: Frame, obj: PlacedObject, occluder: Occluder, supersample: int = 2) -> Frame:
    """A copy of a generated view with the object drawn in (colour and depth); the input frame is not changed.

    Use it on the frames that are shown and downloaded, after the splats were fitted to the original frames (the
    object's own splats come from :func:`object_splats`).
    """
    render = render_object(obj, frame.camera, supersample)
    visibility = occluder.visibility(frame.rgb, frame.depth, render)
    rgb, depth = composite_image(frame.rgb, frame.depth, render, visibility)
    return dataclasses.replace(frame, rgb=rgb, depth=depth)


def composite_view(
    image: Tensor,  # [H, W, 3] in [0, 1], e.g. a fly-through frame
    scene_depth: Tensor | None,  # [H, W] the scene's depth in that frame (e.g. ``splats.render(camera).depth``)
    camera: Camera,
    obj: PlacedObject,
    occluder: Occluder,
    supersample: int = 2,
) -> Tensor:  # [H, W, 3]
    """The object drawn into any image of the scene seen by ``camera`` (fly-through frames, app previews)."""
    render = render_object(obj, camera, supersample)
    return composite_image(image, None, render, occluder.visibility(image, scene_depth, render))[0]


def place_at_pixel(
    frame: Frame,
    column: int,
    row: int,
    spec: ObjectSpec,
    anchor: Literal["bottom", "center"] = "bottom",
) -> ObjectSpec:
    """Move an object to the surface under a clicked pixel, at that pixel's depth.

    Args:
        frame: the generated view that was clicked.
        column, row: the clicked pixel (0-based; the ray goes through its centre).
        spec: the object to place (its rotation and scale are kept).
        anchor: ``bottom`` = the object stands on the clicked point (the lowest point of its bounding box, along
            the world vertical, touches it: for floors and tables); ``center`` = its centre is at the point.

    Returns:
        ``spec`` with a new position.

    Raises:
        ValueError: the pixel is outside the view or its depth is unknown.
    """
    height, width = frame.depth.shape
    whole = all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in (column, row))
    if not (whole and 0 <= column < width and 0 <= row < height):
        raise ValueError(f"pixel (column {column}, row {row}) is outside the {width}x{height} view")
    column, row = int(column), int(row)
    z = float(frame.depth[row, column])
    if not (math.isfinite(z) and z > 0):
        raise ValueError(f"the depth at pixel (column {column}, row {row}) is unknown")
    K = frame.camera.K.double().cpu().numpy()
    c2w = frame.camera.cam_to_world.double().cpu().numpy()
    cam = np.array([(column + 0.5 - K[0, 2]) / K[0, 0] * z, (row + 0.5 - K[1, 2]) / K[1, 1] * z, z])
    point = c2w[:3, :3] @ cam + c2w[:3, 3]
    if anchor == "bottom":
        at_origin = build_object(dataclasses.replace(spec, position=(0.0, 0.0, 0.0)), _mesh_of(spec))
        point[1] -= at_origin.bounds[1, 1]  # y is down: the bottom is the largest y
    elif anchor != "center":
        raise ValueError(f"anchor must be 'bottom' or 'center', got {anchor!r}")
    return dataclasses.replace(spec, position=tuple(float(c) for c in point))


def _mesh_of(spec: ObjectSpec) -> LoadedMesh | None:
    return load_mesh_file(spec.mesh_path) if spec.kind == "mesh" else None


# --------------------------------------------------------------------------------------------------------------
# Splats
# --------------------------------------------------------------------------------------------------------------


def object_splats(
    obj: PlacedObject,
    num_points: int = DEFAULT_SPLAT_POINTS,
    seed: int = 0,
    sh_degree: int = 0,
) -> Splats:
    """Flat Gaussian splats sampled uniformly (by area) over the object's surface.

    Each splat lies in its triangle's plane (thin along the normal, ~1.5 sample spacings wide), carries the
    shaded colour of its surface point and is nearly opaque. Append them to the scene's splats with
    :func:`append_splats`; the rasteriser then hides them behind the scene exactly where the scene is nearer.

    Args:
        obj: the object.
        num_points: number of splats.
        seed: sampling seed (same seed, same splats).
        sh_degree: spherical-harmonic degree of the scene's splats (higher coefficients are zero).

    Returns:
        float32 splats on the CPU.
    """
    if isinstance(num_points, bool) or not isinstance(num_points, int) or not 1 <= num_points <= MAX_SPLAT_POINTS:
        raise ValueError(f"num_points must be an int in 1..{MAX_SPLAT_POINTS}, got {num_points!r}")
    if not 0 <= sh_degree <= 3:
        raise ValueError(f"sh_degree must be in 0..3, got {sh_degree}")
    rng = np.random.default_rng(seed)
    areas = obj.areas
    total = float(areas.sum())
    if not total > 0:
        raise ValueError("the object has no surface area")
    faces = rng.choice(len(areas), size=num_points, p=areas / total)
    r1, r2 = rng.random(num_points), rng.random(num_points)
    root = np.sqrt(r1)
    weights = np.stack([1 - root, root * (1 - r2), root * r2], -1)  # uniform over each triangle
    corners = obj.vertices[obj.faces[faces]]  # [N, 3, 3]
    points = np.einsum("nk,nkc->nc", weights, corners)
    colors = np.einsum("nk,nkc->nc", weights, obj.face_colors[faces])
    spacing = math.sqrt(total / num_points)
    sigma = SPLAT_WIDTH_RATIO * spacing
    quats = _quat_z_to(obj.face_normals[faces])  # local z (the thin axis) along the normal
    n = num_points
    return Splats(
        means=torch.from_numpy(points).float(),
        scales=torch.log(torch.tensor([sigma, sigma, sigma * SPLAT_THICKNESS_RATIO])).float().repeat(n, 1),
        quats=torch.from_numpy(quats).float(),
        opacities=torch.full((n,), math.log(SPLAT_OPACITY / (1 - SPLAT_OPACITY))),
        sh0=((torch.from_numpy(colors).float().clamp(0, 1) - 0.5) / SH_C0)[:, None, :],
        shN=torch.zeros(n, (sh_degree + 1) ** 2 - 1, 3),
    )


def _quat_z_to(normals: np.ndarray) -> np.ndarray:  # [N, 3] unit -> [N, 4] wxyz rotating +z onto each normal
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, normals)
    cos = normals @ z
    quats = np.concatenate([1.0 + cos[:, None], axis], axis=-1)  # unnormalised half-angle quaternion
    opposite = 1.0 + cos < 1e-9  # normal = -z: any half turn about an axis in the xy plane
    quats[opposite] = np.array([0.0, 1.0, 0.0, 0.0])
    return quats / np.linalg.norm(quats, axis=-1, keepdims=True)


def append_splats(scene: Splats, extra: Splats) -> Splats:
    """The scene's splats followed by ``extra`` (object splats), on the scene's device and dtype.

    ``extra``'s higher SH coefficients are padded with zeros (or cut) to the scene's degree.
    """
    like = scene.means
    rest = extra.shN.to(like)
    wanted = scene.shN.shape[1]
    if rest.shape[1] < wanted:
        rest = torch.cat([rest, rest.new_zeros(rest.shape[0], wanted - rest.shape[1], 3)], dim=1)
    rest = rest[:, :wanted]
    parts = (extra.means, extra.scales, extra.quats, extra.opacities, extra.sh0)
    means, scales, quats, opacities, sh0 = (p.to(like) for p in parts)
    return Splats(
        torch.cat([scene.means, means]),
        torch.cat([scene.scales, scales]),
        torch.cat([scene.quats, quats]),
        torch.cat([scene.opacities, opacities]),
        torch.cat([scene.sh0, sh0]),
        torch.cat([scene.shN, rest]),
    )
