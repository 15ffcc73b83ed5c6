"""Randomised procedural worlds: a new layout for every seed, fast enough to draw thousands of training views.

:func:`random_world` builds a :class:`~evaluation.worlds.SyntheticWorld` from an integer seed and a kind:

* ``room``: a box room of random size (3-9 m wide, 3-12 m deep, 2.3-3.8 m high), sometimes made L- or U-shaped by
  blocks filling corners, with tables (top on four legs), cabinets, beds/sofas, shelves on the walls, balls and
  pendant lamps;
* ``street``: a canyon of building blocks of random widths and heights on both sides of a road of random width,
  pavements, parked cars, lamp posts, sometimes a building closing the far end, sky above;
* ``landscape``: ground with random hills (spherical caps), trees and boulders under a sky;
* ``objects``: a large room or an open field crowded with boxes and balls at 1-6 m, some floating: many occlusion
  edges close to the camera.

Every world is laid out around a free zone: no primitive comes within :data:`CLEAR_RADIUS` (horizontally) of the
origin between the floor and the ceiling, so a camera anywhere within :attr:`ProceduralWorld.camera_radius` of the
origin, at the chosen eye height, never starts inside an object.

Textures are small random tiles (:data:`TILE_PX` squared: noise, checks, planks, bricks, stripes) sampled by face
coordinates, several times cheaper to shade than the hashed fractal noise of the hand-made worlds: a 128x96 view
renders in ~20-30 ms on one CPU core. Layouts and textures come from ``numpy.random.default_rng(seed)``: the same
seed gives the same world on every machine.

Conventions are the project's: OpenCV axes, world up = -y (the ground is at y = +eye height below the origin),
z-depth.

Example:
    >>> from core.cameras import make_cameras
    >>> scene = random_world(7, "room")
    >>> rgb, depth, sky = render_view(scene, make_cameras("single", (32, 24))[0])
    >>> tuple(rgb.shape), bool((depth > 0).all()), bool(sky.any())
    ((24, 32, 3), True, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from core.cameras import Camera
from core.geometry import ray_directions
from evaluation.worlds import (
    CAST_DTYPE,
    Albedo,
    Box,
    HillCap,
    Light,
    Material,
    Primitive,
    Sphere,
    SyntheticWorld,
    _tangent_uv,
)

PROCEDURAL_KINDS = ("room", "street", "landscape", "objects")

CLEAR_RADIUS = 1.0
"""No primitive comes this close (metres, horizontally) to the origin: cameras placed within ``camera_radius`` of
it, rotated any way, start in free space with at least ~0.6 m to the nearest surface."""

TILE_PX = 32
"""Side of a texture tile in texels. A tile spans 0.3-2 m of surface, so at the working sizes (128-512 px, a room
seen from 1-5 m) one texel covers about one pixel: textured, not aliased into noise."""

SKY_FAR = 60.0
"""Far walls of the outdoor sky boxes (metres): beyond every object, like the hand-made worlds' sky boxes."""


@dataclass(frozen=True)
class ProceduralWorld:
    """A randomised world and where cameras may stand in it.

    Attributes:
        world: the renderable world.
        kind: one of :data:`PROCEDURAL_KINDS`.
        seed: the seed it was built from.
        camera_radius: cameras may be centred anywhere within this horizontal distance of the origin (at y = 0).
        sky_primitive: index of the sky box in ``world.primitives`` (outdoor worlds), None indoors. Its glowing
            faces are sky: no ground-truth depth there (:func:`render_view` reports them).
    """

    world: SyntheticWorld
    kind: str
    seed: int
    camera_radius: float
    sky_primitive: int | None = None


# --------------------------------------------------------------------------------------------------------------
# Tile textures
# --------------------------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, cells: int) -> np.ndarray:  # -> [TILE_PX, TILE_PX] in [0, 1], tileable
    """Periodic value noise: a ``cells`` x ``cells`` random lattice, bilinearly upsampled with wrap-around."""
    lattice = rng.random((cells, cells))
    coords = np.arange(TILE_PX) * cells / TILE_PX
    i0 = np.floor(coords).astype(int)
    frac = coords - i0
    frac = frac * frac * (3 - 2 * frac)
    i1 = (i0 + 1) % cells
    rows = lattice[i0] * (1 - frac)[:, None] + lattice[i1] * frac[:, None]  # [T, cells]
    return rows[:, i0] * (1 - frac)[None] + rows[:, i1] * frac[None]


def _random_color(rng: np.random.Generator, lo: float = 0.15, hi: float = 0.9) -> np.ndarray:  # -> [3]
    hue = rng.random()
    base = 0.5 + 0.5 * np.cos(2 * np.pi * (hue + np.array([0.0, 1 / 3, 2 / 3])))  # a hue wheel
    saturation = rng.uniform(0.1, 0.7)
    value = rng.uniform(lo, hi)
    return value * ((1 - saturation) + saturation * base)


def random_tile(rng: np.random.Generator) -> np.ndarray:  # -> [TILE_PX, TILE_PX, 3] float64 in [0, 1]
    """One random texture tile: plain with noise, checks, planks, bricks or stripes, in random colours."""
    pattern = rng.choice(["noise", "checker", "planks", "bricks", "stripes"])
    a, b = _random_color(rng), _random_color(rng)
    grain = _smooth_noise(rng, int(rng.choice([4, 8, 16])))
    t = np.arange(TILE_PX) / TILE_PX
    u, v = np.meshgrid(t, t, indexing="xy")
    if pattern == "noise":
        mix = grain
    elif pattern == "checker":
        n = int(rng.choice([2, 4]))
        mix = ((np.floor(u * n) + np.floor(v * n)) % 2) * 0.8 + 0.2 * grain
    elif pattern == "planks":
        n = int(rng.choice([4, 8]))
        plank = np.floor(u * n)
        tint = rng.random(n)[plank.astype(int)]
        gap = (u * n) % 1 < 0.08
        mix = np.where(gap, 1.0, 0.6 * tint + 0.4 * grain)
    elif pattern == "bricks":
        rows = int(rng.choice([4, 8]))
        row = np.floor(v * rows)
        offset = (row % 2) * 0.5
        mortar = ((v * rows) % 1 < 0.12) | (((u * 2 + offset) % 1) < 0.06)
        mix = np.where(mortar, 1.0, 0.3 * grain)
    else:  # stripes
        n = int(rng.choice([2, 4, 8]))
        mix = ((np.floor(v * n) % 2) * 0.7 + 0.3 * grain) if rng.random() < 0.5 else (np.floor(u * n) % 2) * 0.8
    mix = np.clip(mix, 0, 1)[..., None]
    return np.clip(a * (1 - mix) + b * mix, 0, 1)


def tile_albedo(tile: np.ndarray, size_m: float) -> Albedo:
    """Albedo that repeats ``tile`` every ``size_m`` metres across each face (bilinear, wrapping)."""
    texels = torch.from_numpy(np.ascontiguousarray(tile))  # [T, T, 3]

    def albedo(points: Tensor, normals: Tensor) -> Tensor:
        u, v = _tangent_uv(points, normals)
        table = texels.to(points)
        x = (u / size_m).remainder(1.0) * TILE_PX - 0.5
        y = (v / size_m).remainder(1.0) * TILE_PX - 0.5
        x0, y0 = torch.floor(x), torch.floor(y)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        x0, y0 = x0.long().remainder(TILE_PX), y0.long().remainder(TILE_PX)
        x1, y1 = (x0 + 1).remainder(TILE_PX), (y0 + 1).remainder(TILE_PX)
        top = table[y0, x0] * (1 - fx) + table[y0, x1] * fx
        bottom = table[y1, x0] * (1 - fx) + table[y1, x1] * fx
        return top * (1 - fy) + bottom * fy

    return albedo


def _material(rng: np.random.Generator, size: tuple[float, float] = (0.3, 2.0), emissive: bool = False) -> Material:
    return Material(tile_albedo(random_tile(rng), float(rng.uniform(*size))), emissive=emissive)


def _face_split(up: Material, down: Material, side: Material, *walls: Material) -> Material:
    """One material per facing: floor-like faces (normal -y), ceiling-like faces (+y) and the rest (``side``).

    ``walls`` (optional, four) give the faces looking along +x, -x, +z and -z their own materials (accent walls).
    """
    facings = [(up, lambda n: n[:, 1] < -0.5), (down, lambda n: n[:, 1] > 0.5)]
    for material, (axis, sign) in zip(walls, ((0, 1.0), (0, -1.0), (2, 1.0), (2, -1.0))):
        facings.append((material, lambda n, axis=axis, sign=sign: n[:, axis] * sign > 0.5))

    def albedo(points: Tensor, normals: Tensor) -> Tensor:
        out = side.albedo(points, normals)
        for material, select in facings:
            mask = select(normals)
            if mask.any():
                out[mask] = material.albedo(points[mask], normals[mask])
        return out

    return Material(albedo)


def _sky_material(rng: np.random.Generator, ground: Material) -> Material:
    """A sky box: a gradient with tile clouds on every face but the bottom, which is the shaded ground."""
    horizon, zenith = np.array([0.80, 0.87, 0.95]), np.array([0.25, 0.45, 0.85]) * rng.uniform(0.8, 1.1)
    clouds = torch.from_numpy(_smooth_noise(rng, 8))  # [T, T]
    cover = rng.uniform(0.3, 0.8)

    def albedo(points: Tensor, normals: Tensor) -> Tensor:
        horizontal = torch.hypot(points[:, 0], points[:, 2])
        elevation = torch.atan2(-points[:, 1], horizontal)  # radians, up positive
        t = (elevation / (math.pi / 2)).clamp(0, 1).sqrt()[:, None]
        low, high = torch.from_numpy(horizon).to(points), torch.from_numpy(zenith).to(points)
        color = low * (1 - t) + high * t
        azimuth = torch.atan2(points[:, 0], points[:, 2])
        x = ((azimuth / (2 * math.pi) + 0.5) * 3 * TILE_PX).long().remainder(TILE_PX)
        y = (elevation.clamp(0, 1) * 2 * TILE_PX).long().remainder(TILE_PX)
        cloud = ((clouds.to(points)[y, x] - cover) * 3).clamp(0, 1) * (elevation > 0.02).to(points)
        color = color * (1 - cloud[:, None]) + 0.97 * cloud[:, None]
        is_ground = normals[:, 1] < -0.5
        if is_ground.any():
            color[is_ground] = ground.albedo(points[is_ground], normals[is_ground])
        return color

    return Material(albedo, emissive=lambda normals: normals[:, 1] > -0.5)


# --------------------------------------------------------------------------------------------------------------
# Layout helpers
# --------------------------------------------------------------------------------------------------------------


def _clear_of_origin(x0: float, x1: float, z0: float, z1: float, margin: float = CLEAR_RADIUS) -> bool:
    """True when the rectangle [x0, x1] x [z0, z1] stays at least ``margin`` from the origin (horizontally)."""
    dx = max(x0, 0.0, -x1) if not (x0 <= 0 <= x1) else 0.0
    dz = max(z0, 0.0, -z1) if not (z0 <= 0 <= z1) else 0.0
    return math.hypot(dx, dz) >= margin


def _footprint(rng: np.random.Generator, bounds, size_x, size_z, tries: int = 30):
    """A random rectangle (x0, x1, z0, z1) of random size inside ``bounds`` and clear of the origin, or None."""
    (bx0, bx1), (bz0, bz1) = bounds
    for _ in range(tries):
        sx, sz = rng.uniform(*size_x), rng.uniform(*size_z)
        if sx >= bx1 - bx0 or sz >= bz1 - bz0:
            continue
        x0, z0 = rng.uniform(bx0, bx1 - sx), rng.uniform(bz0, bz1 - sz)
        if _clear_of_origin(x0, x0 + sx, z0, z0 + sz):
            return x0, x0 + sx, z0, z0 + sz
    return None


def _table(x0, x1, z0, z1, top_y, floor_y, top: Material, legs: Material) -> list[Primitive]:
    thickness, leg = 0.05, 0.06
    parts: list[Primitive] = [Box((x0, top_y, z0), (x1, top_y + thickness, z1), top)]
    for x in (x0 + 0.03, x1 - 0.03 - leg):
        for z in (z0 + 0.03, z1 - 0.03 - leg):
            parts.append(Box((x, top_y + thickness, z), (x + leg, floor_y, z + leg), legs))
    return parts


# --------------------------------------------------------------------------------------------------------------
# The kinds
# --------------------------------------------------------------------------------------------------------------


def _room(rng: np.random.Generator, seed: int) -> ProceduralWorld:
    eye = rng.uniform(1.0, 1.8)  # camera height above the floor
    floor_y, ceiling_y = eye, eye - rng.uniform(max(2.3, eye + 0.5), 3.8)
    width, depth = rng.uniform(3.0, 9.0), rng.uniform(3.0, 12.0)
    # the camera stands in the middle part of the room, never closer than CLEAR_RADIUS to a wall
    x0 = -float(np.clip(width * rng.uniform(0.3, 0.7), CLEAR_RADIUS, width - CLEAR_RADIUS))
    z0 = -float(np.clip(depth * rng.uniform(0.3, 0.7), CLEAR_RADIUS, depth - CLEAR_RADIUS))
    x1, z1 = x0 + width, z0 + depth
    paint = _material(rng, (0.5, 2.0))
    walls = [paint if rng.random() < 0.6 else _material(rng, (0.5, 2.0)) for _ in range(4)]  # some accent walls
    shell = Box(
        (x0, ceiling_y, z0),
        (x1, floor_y, z1),
        _face_split(_material(rng, (0.4, 1.5)), _material(rng, (0.8, 2.0)), paint, *walls),
    )
    primitives: list[Primitive] = [shell]
    bounds = ((x0, x1), (z0, z1))
    # corner blocks make L / U shaped rooms (full height, so they are walls)
    for _ in range(int(rng.choice([0, 0, 1, 2]))):
        corner_x, corner_z = (x0, x1)[rng.integers(2)], (z0, z1)[rng.integers(2)]
        sx, sz = rng.uniform(0.8, width / 2), rng.uniform(0.8, depth / 2)
        bx0, bx1 = sorted((corner_x, corner_x + (sx if corner_x == x0 else -sx)))
        bz0, bz1 = sorted((corner_z, corner_z + (sz if corner_z == z0 else -sz)))
        if _clear_of_origin(bx0, bx1, bz0, bz1, CLEAR_RADIUS + 0.3):
            primitives.append(Box((bx0, ceiling_y, bz0), (bx1, floor_y, bz1), shell.material))
    for _ in range(int(rng.integers(5, 15))):
        what = rng.choice(["table", "table", "cabinet", "low", "shelf", "ball", "lamp"])
        if what == "table":
            spot = _footprint(rng, bounds, (0.6, 2.0), (0.6, 1.5))
            if spot:
                top_y = floor_y - rng.uniform(0.45, 1.1)
                primitives += _table(*spot, top_y, floor_y, _material(rng), _material(rng))
                if rng.random() < 0.5:  # something on the table
                    radius = rng.uniform(0.08, 0.25)
                    cx, cz = (spot[0] + spot[1]) / 2, (spot[2] + spot[3]) / 2
                    primitives.append(Sphere((cx, top_y - radius, cz), radius, _material(rng, (0.2, 0.5))))
        elif what == "low":  # bed, sofa, chest: anywhere
            spot = _footprint(rng, bounds, (0.4, 2.5), (0.4, 2.0))
            if spot:
                height = rng.uniform(0.3, 0.6)
                primitives.append(
                    Box((spot[0], floor_y - height, spot[2]), (spot[1], floor_y, spot[3]), _material(rng))
                )
        elif what == "cabinet":  # tall, against a wall
            along_x = rng.random() < 0.5
            length, thick = rng.uniform(0.5, 2.0), rng.uniform(0.35, 0.7)
            height = rng.uniform(0.8, min(2.4, floor_y - ceiling_y - 0.1))
            if along_x:
                sx = rng.uniform(x0, max(x0 + 0.01, x1 - length))
                zz = (z0, z0 + thick) if rng.random() < 0.5 else (z1 - thick, z1)
                lo, hi = (sx, floor_y - height, zz[0]), (sx + length, floor_y, zz[1])
            else:
                sz = rng.uniform(z0, max(z0 + 0.01, z1 - length))
                xx = (x0, x0 + thick) if rng.random() < 0.5 else (x1 - thick, x1)
                lo, hi = (xx[0], floor_y - height, sz), (xx[1], floor_y, sz + length)
            if _clear_of_origin(lo[0], hi[0], lo[2], hi[2]):
                primitives.append(Box(lo, hi, _material(rng)))
        elif what == "shelf":  # a box on a wall at mid height
            along_x = rng.random() < 0.5
            length, thick = rng.uniform(0.6, 2.0), rng.uniform(0.2, 0.4)
            y_top = floor_y - rng.uniform(1.2, 2.0)
            if along_x:
                sx = rng.uniform(x0, max(x0 + 0.01, x1 - length))
                zz = (z0, z0 + thick) if rng.random() < 0.5 else (z1 - thick, z1)
                lo, hi = (sx, y_top, zz[0]), (sx + length, y_top + rng.uniform(0.3, 0.8), zz[1])
            else:
                sz = rng.uniform(z0, max(z0 + 0.01, z1 - length))
                xx = (x0, x0 + thick) if rng.random() < 0.5 else (x1 - thick, x1)
                lo, hi = (xx[0], y_top, sz), (xx[1], y_top + rng.uniform(0.3, 0.8), sz + length)
            if _clear_of_origin(lo[0], hi[0], lo[2], hi[2]):
                primitives.append(Box(lo, hi, _material(rng)))
        else:
            radius = rng.uniform(0.1, 0.4)
            spot = _footprint(rng, bounds, (2 * radius, 2 * radius + 0.01), (2 * radius, 2 * radius + 0.01))
            if spot:
                cx, cz = (spot[0] + spot[1]) / 2, (spot[2] + spot[3]) / 2
                cy = floor_y - radius if what == "ball" else ceiling_y + rng.uniform(0.4, 0.9)
                primitives.append(Sphere((cx, cy, cz), radius, _material(rng, (0.2, 0.5), emissive=what == "lamp")))
    light = Light(position=(rng.uniform(x0, x1), ceiling_y + 0.3, rng.uniform(z0, z1)))
    world = SyntheticWorld(f"room-{seed}", tuple(primitives), light, "a room", ground_y=floor_y)
    return ProceduralWorld(world, "room", seed, camera_radius=0.3)


def _street(rng: np.random.Generator, seed: int) -> ProceduralWorld:
    ground_y = rng.uniform(1.4, 2.0)
    half = rng.uniform(4.0, 9.0)  # building fronts at x = +-half
    ground = _material(rng, (1.0, 3.0))
    sky = Box((-SKY_FAR, -40.0, -SKY_FAR), (SKY_FAR, ground_y, SKY_FAR), _sky_material(rng, ground))
    primitives: list[Primitive] = [sky]
    pavement = _material(rng, (0.5, 1.5))
    kerb = rng.uniform(0.1, 0.2)
    pavement_width = rng.uniform(1.5, min(3.5, half - CLEAR_RADIUS - 0.5))
    far_end = rng.uniform(25.0, 55.0) if rng.random() < 0.6 else 50.0
    for side in (-1, 1):
        x_near, x_far = side * half, side * (half + 10.0)
        z = -50.0
        while z < far_end:
            length = rng.uniform(6.0, 20.0)
            height = rng.uniform(5.0, 25.0)
            lo = (min(x_near, x_far), ground_y - height, z)
            hi = (max(x_near, x_far), ground_y, min(z + length, far_end + 6))
            primitives.append(Box(lo, hi, _material(rng, (1.5, 4.0))))
            z += length
        kerb_x = sorted((side * (half - pavement_width), side * half))
        primitives.append(Box((kerb_x[0], ground_y - kerb, -50.0), (kerb_x[1], ground_y, far_end + 6), pavement))
    if far_end < 50.0:
        height = rng.uniform(6.0, 20.0)
        primitives.append(
            Box((-half - 10, ground_y - height, far_end + 0.5), (half + 10, ground_y, far_end + 6), _material(rng))
        )
    lane = half - pavement_width
    for _ in range(int(rng.integers(0, 6))):  # parked cars: body + cabin
        x = rng.choice([-1, 1]) * (lane - rng.uniform(0.9, 1.4))
        z = rng.uniform(-40.0, far_end - 5)
        if not _clear_of_origin(x - 1.0, x + 1.0, z, z + 4.5):
            continue
        body = _material(rng, (0.5, 1.0))
        primitives.append(Box((x - 0.9, ground_y - 1.0, z), (x + 0.9, ground_y - 0.15, z + 4.3), body))
        primitives.append(Box((x - 0.8, ground_y - 1.5, z + 1.0), (x + 0.8, ground_y - 1.0, z + 3.2), _material(rng)))
    for z in np.arange(rng.uniform(-30, -5), far_end, rng.uniform(8.0, 15.0)):  # lamp posts
        for side in (-1, 1):
            x = side * (lane + 0.4)
            if _clear_of_origin(x - 0.1, x + 0.1, z - 0.1, z + 0.1):
                top = ground_y - rng.uniform(4.0, 6.0)
                primitives.append(Box((x - 0.07, top, z - 0.07), (x + 0.07, ground_y - kerb, z + 0.07), pavement))
    sun = (rng.uniform(-0.6, 0.6), -1.0, rng.uniform(-0.6, 0.6))
    world = SyntheticWorld(f"street-{seed}", tuple(primitives), Light(direction=sun), "a street", ground_y=ground_y)
    return ProceduralWorld(world, "street", seed, camera_radius=min(lane - 1.0, 2.0) * 0.5, sky_primitive=0)


def _landscape(rng: np.random.Generator, seed: int) -> ProceduralWorld:
    ground_y = rng.uniform(1.5, 2.0)
    green = _material(rng, (0.5, 2.0))
    hills: list[HillCap] = []
    for _ in range(int(rng.integers(1, 7))):
        radius = rng.uniform(8.0, 40.0)
        height = rng.uniform(0.5, min(8.0, radius / 3))
        base = math.sqrt(height * (2 * radius - height))
        angle, distance = rng.uniform(0, 2 * math.pi), rng.uniform(base + 2.5, base + 35.0)
        x, z = distance * math.sin(angle), distance * math.cos(angle)
        if max(abs(x), abs(z)) + base > SKY_FAR - 1:
            continue
        if any(math.hypot(x - h.x, z - h.z) < base + h.base_radius + 0.5 for h in hills):
            continue
        hills.append(HillCap(x, z, ground_y, radius=radius, height=height, material=green))
    sky = Box(
        (-SKY_FAR, -40.0, -SKY_FAR),
        (SKY_FAR, ground_y, SKY_FAR),
        _sky_material(rng, _material(rng, (0.5, 2.0))),
        holes=tuple(h.hole for h in hills),
    )
    primitives: list[Primitive] = [sky, *hills]

    def on_flat_ground(x: float, z: float, reach: float) -> bool:
        clear = math.hypot(x, z) > CLEAR_RADIUS + reach
        return clear and all(math.hypot(x - h.x, z - h.z) > h.base_radius + reach for h in hills)

    bark, leaves, stone = _material(rng, (0.3, 1.0)), _material(rng, (0.3, 1.0)), _material(rng, (0.3, 1.0))
    for _ in range(int(rng.integers(2, 14))):
        angle, distance = rng.uniform(0, 2 * math.pi), rng.uniform(2.0, 30.0)
        x, z = distance * math.sin(angle), distance * math.cos(angle)
        if rng.random() < 0.6:
            trunk, crown = rng.uniform(1.0, 3.0), rng.uniform(0.8, 2.0)
            if on_flat_ground(x, z, crown):
                top = ground_y - trunk
                primitives.append(Box((x - 0.15, top, z - 0.15), (x + 0.15, ground_y, z + 0.15), bark))
                primitives.append(Sphere((x, top - crown + 0.1, z), crown, leaves))
        else:
            radius = rng.uniform(0.2, 1.0)
            if on_flat_ground(x, z, radius):
                primitives.append(Sphere((x, ground_y - radius * rng.uniform(0.5, 1.0), z), radius, stone))
    sun = (rng.uniform(-0.6, 0.6), -1.0, rng.uniform(-0.6, 0.6))
    world = SyntheticWorld(
        f"landscape-{seed}", tuple(primitives), Light(direction=sun), "a landscape", ground_y=ground_y
    )
    return ProceduralWorld(world, "landscape", seed, camera_radius=0.5, sky_primitive=0)


def _objects(rng: np.random.Generator, seed: int) -> ProceduralWorld:
    eye = rng.uniform(1.0, 1.8)
    indoor = rng.random() < 0.6
    primitives: list[Primitive]
    if indoor:
        half = rng.uniform(4.0, 7.0)
        ceiling = eye - rng.uniform(max(2.5, eye + 0.5), 4.0)
        shell = Box(
            (-half, ceiling, -half),
            (half, eye, half),
            _face_split(_material(rng, (0.5, 2.0)), _material(rng, (0.5, 2.0)), _material(rng, (0.5, 2.0))),
        )
        primitives, sky_index, top = [shell], None, ceiling
    else:
        sky = Box((-SKY_FAR, -40.0, -SKY_FAR), (SKY_FAR, eye, SKY_FAR), _sky_material(rng, _material(rng, (0.5, 2.0))))
        primitives, sky_index, top, half = [sky], 0, eye - 4.0, 8.0
    for _ in range(int(rng.integers(10, 26))):
        angle, distance = rng.uniform(0, 2 * math.pi), rng.uniform(CLEAR_RADIUS + 0.4, half - 0.5)
        x, z = distance * math.sin(angle), distance * math.cos(angle)
        size = rng.uniform(0.15, 0.8)
        floating = rng.random() < 0.3
        base = eye - (rng.uniform(0.3, eye + (eye - top) * 0.5) if floating else 0.0)
        if rng.random() < 0.5:
            sx, sz, sy = size * rng.uniform(0.5, 2.0), size * rng.uniform(0.5, 2.0), size * rng.uniform(0.5, 3.0)
            lo, hi = (x - sx / 2, max(base - sy, top + 0.05), z - sz / 2), (x + sx / 2, base, z + sz / 2)
            if lo[1] < hi[1] and _clear_of_origin(lo[0], hi[0], lo[2], hi[2]):
                primitives.append(Box(lo, hi, _material(rng, (0.2, 1.0))))
        elif _clear_of_origin(x - size, x + size, z - size, z + size):
            primitives.append(Sphere((x, base - size, z), size, _material(rng, (0.2, 1.0))))
    light = Light(direction=(rng.uniform(-0.6, 0.6), -1.0, rng.uniform(-0.6, 0.6)))
    world = SyntheticWorld(f"objects-{seed}", tuple(primitives), light, "objects", ground_y=eye)
    return ProceduralWorld(world, "objects", seed, camera_radius=0.3, sky_primitive=sky_index)


_BUILDERS = {"room": _room, "street": _street, "landscape": _landscape, "objects": _objects}


def random_world(seed: int, kind: str) -> ProceduralWorld:
    """A randomised world of the given kind; the same ``(seed, kind)`` always gives the same world.

    Args:
        seed: any non-negative integer.
        kind: one of :data:`PROCEDURAL_KINDS`.

    Returns:
        The world and where cameras may stand in it.

    Raises:
        ValueError: for an unknown kind or a negative seed.
    """
    if kind not in _BUILDERS:
        raise ValueError(f"unknown procedural world kind {kind!r}: expected one of {', '.join(PROCEDURAL_KINDS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng([int(seed), PROCEDURAL_KINDS.index(kind)])
    return _BUILDERS[kind](rng, int(seed))


def render_view(
    scene: ProceduralWorld, camera: Camera, color: bool = True
) -> tuple[Tensor | None, Tensor, Tensor]:  # -> [H, W, 3] | None, [H, W], [H, W] bool
    """Exact z-depth (and optionally colour) of a camera, with the sky marked.

    Args:
        scene: the world.
        camera: any camera.
        color: False skips shading (depth only, several times cheaper).

    Returns:
        ``(rgb or None, depth, sky)``: rgb float32 [H, W, 3] in [0, 1]; depth float32 [H, W] z-depth with 0 on
        the sky and where nothing is hit; sky bool [H, W], True where the ray ends on the sky box's glowing faces.
    """
    height, width = camera.height, camera.width
    c2w = camera.cam_to_world.to(CAST_DTYPE)
    directions = ray_directions(height, width, camera.K.to(CAST_DTYPE)).reshape(-1, 3) @ c2w[:3, :3].T  # [N, 3]
    origins = c2w[None, :3, 3]  # [1, 3]
    hits = scene.world.cast(origins, directions)
    hit = torch.isfinite(hits.t)
    sky = torch.zeros_like(hit)
    if scene.sky_primitive is not None:
        sky = (hits.primitive == scene.sky_primitive) & (hits.normals[:, 1] > -0.5)
    depth = torch.where(hit & ~sky, hits.t, torch.zeros_like(hits.t))
    rgb = None
    if color:
        t = torch.where(hit, hits.t, torch.zeros_like(hits.t))
        rgb = scene.world.shade(origins + t[:, None] * directions, hits).reshape(height, width, 3).float()
    return rgb, depth.reshape(height, width).float(), sky.reshape(height, width)
