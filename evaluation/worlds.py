"""Analytic procedural worlds that render any pinhole camera exactly: ground truth for tests and examples.

A :class:`SyntheticWorld` is a small set of primitives (axis-aligned boxes, spheres, spherical hill caps) with
procedural, view-independent materials. Rendering casts one ray per pixel centre (or an ``s x s`` grid for
anti-aliased colour) and intersects every primitive in closed form, so depth is exact up to float64 rounding,
whatever the camera. :meth:`SyntheticWorld.surface_distance` is the matching analytic distance from any point to
the world's surfaces, for point-to-surface error measurements.

The three built-in worlds (:func:`make_world`: ``room``, ``street``, ``landscape``) are closed: every ray from a
camera inside them hits something (walls, ground, a sky box), so every view, straight up and down included, has
depth everywhere.

Conventions are the project's (see :mod:`core.cameras`): OpenCV axes with world up = -y (the floor of the room
is at y = +1.5 below the camera at the origin), pixel centres at +0.5, z-depth. Shading is Lambertian with a fixed
light, so a surface point has the same colour in every view, as the scene loop assumes.

Example:
    >>> from core.cameras import make_cameras
    >>> world = make_world("room")
    >>> rgb, depth = world.render(make_cameras("single", (32, 24))[0])
    >>> tuple(rgb.shape), bool((depth > 0).all())
    ((24, 32, 3), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from core.cameras import Camera
from core.geometry import pixel_centers

# Ray casting runs in float64 whatever the camera's dtype: depth is ground truth, so rounding must stay far below
# any tolerance a test uses (float32 would give ~1e-6 relative; float64 gives ~1e-15).
CAST_DTYPE = torch.float64
# Rays per batch: each primitive makes a few [N, 3] float64 temporaries (768 KiB each at this size), small enough
# to stay in cache; measured ~1.8x faster than 2^18 rays per batch on CPU.
RAYS_PER_CHUNK = 1 << 15
# Smallest accepted hit distance along a ray (cameras are the only ray origins, so any positive value works).
T_MIN = 1e-9
# Light in a shaded colour that does not depend on the light direction, so faces turned away are not black.
AMBIENT = 0.55

WORLD_NAMES = ("room", "street", "landscape")

ColorTuple = tuple[float, float, float]
Albedo = Callable[[Tensor, Tensor], Tensor]  # points [N, 3], normals [N, 3] -> colours [N, 3] in [0, 1]


# --------------------------------------------------------------------------------------------------------------
# Procedural texture helpers (deterministic integer hashing: same colours on every machine and device).
# --------------------------------------------------------------------------------------------------------------

_HASH_MASK = 0x7FFFFFFF  # keep hashes to 31 bits so a product with a 31-bit constant fits in int64
_HASH_PRIMES = (1_376_312_589, 1_664_525, 1_013_904_223)


def hash01(*cells: Tensor, seed: int = 0) -> Tensor:  # integer-valued [...] tensors -> [...] in [0, 1)
    """A deterministic pseudo-random value per integer lattice cell."""
    h = torch.full_like(cells[0], seed * 2_654_435 + 97, dtype=torch.int64)
    for i, cell in enumerate(cells):
        h = (h + cell.to(torch.int64) * _HASH_PRIMES[i % 3]) & _HASH_MASK
        h = ((h ^ (h >> 13)) * 1_274_126_177) & _HASH_MASK
    h = ((h ^ (h >> 16)) * 747_796_405) & _HASH_MASK
    return (h ^ (h >> 15)).to(cells[0].dtype if cells[0].is_floating_point() else torch.float64) / 2**31


def value_noise(points: Tensor, seed: int = 0) -> Tensor:  # [N, 3] -> [N] in [0, 1]
    """Smooth (C1) lattice value noise with unit cell size."""
    cell = torch.floor(points)
    frac = points - cell
    fade = frac * frac * (3 - 2 * frac)  # smoothstep
    cell = cell.to(torch.int64)
    out = torch.zeros_like(points[:, 0])
    for corner in range(8):
        offset = [(corner >> axis) & 1 for axis in range(3)]
        weight = torch.ones_like(out)
        for axis in range(3):
            weight = weight * (fade[:, axis] if offset[axis] else 1 - fade[:, axis])
        value = hash01(*(cell[:, axis] + offset[axis] for axis in range(3)), seed=seed).to(points.dtype)
        out = out + weight * value
    return out


def fbm(points: Tensor, seed: int = 0, octaves: int = 4) -> Tensor:  # [N, 3] -> [N] in [0, 1]
    """Fractal sum of value noise: each octave doubles the frequency and halves the amplitude."""
    total = torch.zeros_like(points[:, 0])
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        total = total + amplitude * value_noise(points * 2.0**octave, seed + 101 * octave)
        norm += amplitude
        amplitude *= 0.5
    return total / norm


def _rgb(color: ColorTuple, like: Tensor) -> Tensor:  # -> [1, 3]
    return torch.tensor(color, dtype=like.dtype, device=like.device)[None]


def _mix(a: Tensor, b: Tensor, t: Tensor) -> Tensor:  # [N, 3] or [1, 3], [N, 3] or [1, 3], [N] -> [N, 3]
    return a + (b - a) * t[:, None]


def _scale(color: Tensor, factor: Tensor) -> Tensor:  # [N, 3] or [1, 3], [N] -> [N, 3]
    return color * factor[:, None]


def _fract(x: Tensor) -> Tensor:
    return x - torch.floor(x)


def _tangent_uv(points: Tensor, normals: Tensor) -> tuple[Tensor, Tensor]:  # [N, 3], [N, 3] -> [N], [N]
    """Coordinates across an axis-aligned face: (horizontal, vertical = y) on walls, (x, z) on floors/ceilings.

    On walls the horizontal coordinate is z for faces facing ±x and x for faces facing ±z, so patterns line up
    along each wall.
    """
    faces_x = normals[:, 0].abs() > 0.5
    faces_y = normals[:, 1].abs() > 0.5
    u = torch.where(faces_x, points[:, 2], points[:, 0])
    v = torch.where(faces_y, points[:, 2], points[:, 1])
    return u, v


def plain(color: ColorTuple, grain: float = 0.06, scale: float = 8.0, seed: int = 0) -> Albedo:
    """A flat colour with a little fine noise (paint, plaster, fabric seen from afar)."""

    def albedo(points: Tensor, normals: Tensor) -> Tensor:
        noise = fbm(points * scale, seed, octaves=3)
        return _scale(_rgb(color, points), 1 + grain * (2 * noise - 1))

    return albedo


def checker(size: float, color_a: ColorTuple, color_b: ColorTuple, grain: float = 0.04, seed: int = 0) -> Albedo:
    """Squares of ``size`` across each face (tiles, rugs)."""

    def albedo(points: Tensor, normals: Tensor) -> Tensor:
        u, v = _tangent_uv(points, normals)
        parity = (torch.floor(u / size) + torch.floor(v / size)).remainder(2)
        noise = fbm(points * 6.0, seed, octaves=3)
        return _scale(_mix(_rgb(color_a, points), _rgb(color_b, points), parity), 1 + grain * (2 * noise - 1))

    return albedo


def by_facing(up: Albedo, down: Albedo, side: Albedo) -> Albedo:
    """Pick a texture by which way the face looks: ``up`` = floor-like (normal -y), ``down`` = ceiling-like."""

    def albedo(points: Tensor, normals: Tensor) -> Tensor:
        out = side(points, normals)
        for texture, mask in ((up, normals[:, 1] < -0.5), (down, normals[:, 1] > 0.5)):
            if mask.any():
                out[mask] = texture(points[mask], normals[mask])
        return out

    return albedo


def by_normal(default: Albedo, **faces: Albedo) -> Albedo:
    """Pick a texture per face of a box by its outward-to-the-viewer normal: keys ``px, nx, py, ny, pz, nz``."""
    keys = {"px": (0, 1.0), "nx": (0, -1.0), "py": (1, 1.0), "ny": (1, -1.0), "pz": (2, 1.0), "nz": (2, -1.0)}

    def albedo(points: Tensor, normals: Tensor) -> Tensor:
        out = default(points, normals)
        for key, texture in faces.items():
            axis, sign = keys[key]
            mask = normals[:, axis] * sign > 0.5
            if mask.any():
                out[mask] = texture(points[mask], normals[mask])
        return out

    return albedo


# --------------------------------------------------------------------------------------------------------------
# Primitives
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Material:
    """How a surface looks.

    Attributes:
        albedo: colour of a surface point from its world position and its normal (facing the viewer).
        emissive: True = the colour is shown as is (sky, lamps); False = Lambertian-shaded by the world's light;
            a function of the normals picks per face (a sky box whose bottom face is the shaded ground).
    """

    albedo: Albedo
    emissive: bool | Callable[[Tensor], Tensor] = False  # or which faces glow, from normals [N, 3] -> [N] bool


class Primitive(Protocol):
    material: Material

    def intersect(self, origins: Tensor, directions: Tensor) -> Tensor:
        """Nearest hit beyond ``T_MIN``: t [N] with point = origin + t * direction, inf = miss.

        ``origins`` is [N, 3] or [1, 3] (one camera centre for all rays), ``directions`` [N, 3] of any length.
        """
        ...

    def normals(self, points: Tensor, directions: Tensor) -> Tensor:
        """Unit normals [M, 3] at surface ``points`` [M, 3], turned to face against ``directions`` [M, 3]."""
        ...

    def distance(self, points: Tensor) -> Tensor:  # [N, 3] -> [N]
        """Unsigned distance to the primitive's surface."""
        ...


def _vec(values: Sequence[float], like: Tensor) -> Tensor:  # -> [3]
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def _facing(normals: Tensor, directions: Tensor) -> Tensor:  # [N, 3], [N, 3] -> [N, 3]
    """Flip normals to face against the ray (towards the viewer)."""
    flip = (normals * directions).sum(-1, keepdim=True) > 0
    return torch.where(flip, -normals, normals)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box surface, seen from outside (furniture, buildings) or from inside (rooms, sky boxes).

    Attributes:
        lo: minimum corner (x, y, z).
        hi: maximum corner (x, y, z); ``hi[1]`` is the bottom face (y is down).
        material: the box's look; faces can differ through :func:`by_normal` / :func:`by_facing`.
        holes: discs (x, y, z, radius) cut out of a horizontal face (y = lo[1] or hi[1]), where
            :class:`HillCap` s stand on it; each must lie inside the face and not overlap another. They only
            change :meth:`distance`: a ray reaches a hole only through the cap standing on it.
    """

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    material: Material
    holes: tuple[tuple[float, float, float, float], ...] = ()

    def __post_init__(self):
        if not all(a < b for a, b in zip(self.lo, self.hi)):
            raise ValueError(f"Box needs lo < hi on every axis, got lo={self.lo}, hi={self.hi}")
        for x, y, z, radius in self.holes:
            on_face = y in (self.lo[1], self.hi[1])
            inside = self.lo[0] < x - radius and x + radius < self.hi[0] and self.lo[2] < z - radius
            if not (on_face and inside and z + radius < self.hi[2]):
                raise ValueError(f"hole {(x, y, z, radius)} is not inside a horizontal face of box {self.lo}-{self.hi}")
        for i, (x, _, z, radius) in enumerate(self.holes):
            for x2, _, z2, radius2 in self.holes[i + 1 :]:
                if math.hypot(x - x2, z - z2) < radius + radius2:
                    raise ValueError(f"holes at {(x, z)} and {(x2, z2)} overlap")

    def intersect(self, origins: Tensor, directions: Tensor) -> Tensor:
        lo, hi = _vec(self.lo, origins), _vec(self.hi, origins)
        # slab method; a zero direction component gives +-inf (inside/outside that slab); fmin/fmax drop the nan
        # of a ray lying exactly in a face's plane, which then counts as a miss (a grazing ray)
        inverse = 1.0 / directions
        t_lo, t_hi = (lo - origins) * inverse, (hi - origins) * inverse  # [N, 3]
        near = torch.fmin(t_lo, t_hi).amax(dim=-1)  # [N] last entry into a slab
        far = torch.fmax(t_lo, t_hi).amin(dim=-1)  # [N] first exit
        hit = near <= far
        inf = torch.full_like(near, math.inf)
        return torch.where(hit & (near > T_MIN), near, torch.where(hit & (far > T_MIN), far, inf))

    def normals(self, points: Tensor, directions: Tensor) -> Tensor:
        lo, hi = _vec(self.lo, points), _vec(self.hi, points)
        gap = torch.minimum((points - lo).abs(), (points - hi).abs())  # [M, 3] distance to each axis' faces
        axis = gap.argmin(dim=-1, keepdim=True)  # the face the point lies on
        normals = torch.zeros_like(points)
        normals.scatter_(1, axis, -torch.sign(directions.gather(1, axis)))  # against the ray: towards the viewer
        return normals

    def distance(self, points: Tensor) -> Tensor:
        lo, hi = _vec(self.lo, points), _vec(self.hi, points)
        outside = (lo - points).clamp(min=0) + (points - hi).clamp(min=0)  # [N, 3] overshoot of each slab
        best = torch.full_like(points[:, 0], math.inf)
        for axis in range(3):
            others = [a for a in range(3) if a != axis]
            across = outside[:, others].square().sum(-1)  # squared distance to the face's rectangle in-plane
            for coord in (self.lo[axis], self.hi[axis]):
                off_plane = points[:, axis] - coord
                squared = off_plane.square() + across
                for x, y, z, radius in self.holes if axis == 1 else ():
                    if y == coord:
                        rho = torch.hypot(points[:, 0] - x, points[:, 2] - z)
                        # over the hole, the nearest point of the face is on the hole's rim
                        squared = torch.where(rho < radius, off_plane.square() + (radius - rho).square(), squared)
                best = torch.minimum(best, squared)
        return best.sqrt()


@dataclass(frozen=True)
class Sphere:
    """A sphere surface (balls, lamps, tree crowns, boulders)."""

    center: tuple[float, float, float]
    radius: float
    material: Material

    def intersect(self, origins: Tensor, directions: Tensor) -> Tensor:
        t_near, t_far = _sphere_roots(origins - _vec(self.center, origins), directions, self.radius)
        return torch.where(t_near > T_MIN, t_near, torch.where(t_far > T_MIN, t_far, torch.full_like(t_far, math.inf)))

    def normals(self, points: Tensor, directions: Tensor) -> Tensor:
        return _sphere_normals(points, directions, _vec(self.center, points))

    def distance(self, points: Tensor) -> Tensor:
        return ((points - _vec(self.center, points)).norm(dim=-1) - self.radius).abs()


def _sphere_roots(offsets: Tensor, directions: Tensor, radius: float) -> tuple[Tensor, Tensor]:
    """Both ray parameters where |offset + t d| = radius, near first (inf where the ray misses).

    ``offsets`` (origin - centre) is [N, 3] or [1, 3]; ``directions`` [N, 3].
    """
    a = directions.square().sum(-1)  # [N]
    b = (offsets * directions).sum(-1)  # [N]
    c = offsets.square().sum(-1) - radius**2  # [N] or [1]
    disc = b * b - a * c
    root = disc.clamp(min=0).sqrt()
    miss = disc < 0
    inf = torch.full_like(a, math.inf)
    return torch.where(miss, inf, (-b - root) / a), torch.where(miss, inf, (-b + root) / a)


def _sphere_normals(points: Tensor, directions: Tensor, center: Tensor) -> Tensor:  # [M, 3], [M, 3], [3]
    radial = points - center
    return _facing(radial / radial.norm(dim=-1, keepdim=True).clamp(min=1e-12), directions)


@dataclass(frozen=True)
class HillCap:
    """The part of a large sphere that rises above flat ground: a gentle, exactly intersectable hill.

    Attributes:
        x, z: where the hill's top is.
        ground_y: the ground's height (y is down: the cap spans ``ground_y - height <= y <= ground_y``).
        radius: the sphere's radius (bigger = gentler slopes).
        height: how far the top rises above the ground (< radius).
    """

    x: float
    z: float
    ground_y: float
    radius: float
    height: float
    material: Material

    def __post_init__(self):
        if not 0 < self.height < self.radius:
            raise ValueError(f"HillCap needs 0 < height < radius, got height={self.height}, radius={self.radius}")

    @property
    def center(self) -> tuple[float, float, float]:
        return (self.x, self.ground_y - self.height + self.radius, self.z)

    @property
    def base_radius(self) -> float:
        """Radius of the circle where the hill meets the ground."""
        return math.sqrt(self.height * (2 * self.radius - self.height))

    @property
    def hole(self) -> tuple[float, float, float, float]:
        """The ground disc the hill covers, for :attr:`Box.holes`."""
        return (self.x, self.ground_y, self.z, self.base_radius)

    def intersect(self, origins: Tensor, directions: Tensor) -> Tensor:
        roots = _sphere_roots(origins - _vec(self.center, origins), directions, self.radius)
        t = torch.full_like(roots[0], math.inf)
        for root in reversed(roots):  # far first, so the near root wins where both are valid
            y = origins[:, 1] + root * directions[:, 1]  # inf or nan on a miss: fails the test below
            t = torch.where((root > T_MIN) & (y <= self.ground_y), root, t)
        return t

    def normals(self, points: Tensor, directions: Tensor) -> Tensor:
        return _sphere_normals(points, directions, _vec(self.center, points))

    def distance(self, points: Tensor) -> Tensor:
        center = _vec(self.center, points)
        offsets = points - center
        length = offsets.norm(dim=-1)
        # nearest point of the whole sphere; the cap's pole (straight up) stands in where the point is the centre
        up = torch.tensor([0.0, -1.0, 0.0], dtype=points.dtype, device=points.device)
        unit = torch.where(length[:, None] > 1e-12, offsets / length.clamp(min=1e-12)[:, None], up)
        nearest_y = center[1] + self.radius * unit[:, 1]
        to_sphere = (length - self.radius).abs()
        # otherwise the nearest cap point is on the rim circle (the cap is a geodesic disc around the pole)
        rho = torch.hypot(points[:, 0] - self.x, points[:, 2] - self.z)
        to_rim = torch.hypot(rho - self.base_radius, points[:, 1] - self.ground_y)
        return torch.where(nearest_y <= self.ground_y, to_sphere, to_rim)


# --------------------------------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Light:
    """A light for Lambertian shading: a direction towards the sun, or a point (lamp) position."""

    direction: tuple[float, float, float] | None = None  # from surfaces towards the light
    position: tuple[float, float, float] | None = None

    def __post_init__(self):
        if (self.direction is None) == (self.position is None):
            raise ValueError("Light needs exactly one of direction (a sun) or position (a lamp)")

    def towards(self, points: Tensor) -> Tensor:  # [N, 3] -> [N, 3] unit vectors to the light
        if self.position is not None:
            to_light = _vec(self.position, points) - points
        else:
            to_light = _vec(self.direction, points).expand_as(points)
        return to_light / to_light.norm(dim=-1, keepdim=True).clamp(min=1e-12)


class SyntheticView(NamedTuple):
    """A rendered view: unpacks as ``rgb, depth = world.render(camera)``."""

    rgb: Tensor  # [H, W, 3] float32 in [0, 1], 0 where no surface was hit
    depth: Tensor  # [H, W] float32 z-depth, 0 where no surface was hit (never, in the built-in worlds)


class RayHits(NamedTuple):
    t: Tensor  # [N] ray parameter; with camera rays of z = 1 this is z-depth. inf = miss
    normals: Tensor  # [N, 3] unit, facing the ray's origin
    primitive: Tensor  # [N] long, index into the world's primitives, -1 = miss


@dataclass(frozen=True)
class SyntheticWorld:
    """A closed procedural scene that renders any pinhole camera exactly.

    Attributes:
        name: the world's name.
        primitives: the surfaces. They may touch but should not cut through each other: :meth:`surface_distance`
            measures to each primitive's whole surface, so a hidden part inside another solid would count.
        light: the light of the Lambertian shading.
        prompt: a one-line description, usable as the outpainting prompt.
        ground_y: the floor's / ground's y under view 0's camera at the origin (positive: y is down).
    """

    name: str
    primitives: tuple[Primitive, ...]
    light: Light
    prompt: str = ""
    ground_y: float = 0.0

    def cast(self, origins: Tensor, directions: Tensor) -> RayHits:
        """Nearest surface along each ray.

        Args:
            origins: ray origins.  # [N, 3] or [1, 3]
            directions: ray directions, any length (z = 1 in the camera frame makes t the z-depth).  # [N, 3]
        """
        if directions.shape[0] > RAYS_PER_CHUNK:
            parts = [
                self.cast(origins if origins.shape[0] == 1 else origins[start : start + RAYS_PER_CHUNK], chunk)
                for start, chunk in zip(range(0, directions.shape[0], RAYS_PER_CHUNK), directions.split(RAYS_PER_CHUNK))
            ]
            return RayHits(*(torch.cat(values) for values in zip(*parts)))
        t = torch.full_like(directions[:, 0], math.inf)
        index = torch.full_like(t, -1, dtype=torch.long)
        for i, primitive in enumerate(self.primitives):
            t_i = primitive.intersect(origins, directions)
            closer = t_i < t
            t = torch.where(closer, t_i, t)
            index = torch.where(closer, i, index)
        normals = torch.zeros_like(directions)
        for i, primitive in enumerate(self.primitives):
            mask = index == i
            if mask.any():
                rays = directions[mask]
                points = origins.expand_as(directions)[mask] + t[mask, None] * rays
                normals[mask] = primitive.normals(points, rays)
        return RayHits(t, normals, index)

    def shade(self, points: Tensor, hits: RayHits) -> Tensor:  # [N, 3], RayHits -> [N, 3] in [0, 1]
        """Colours of hit points (view-independent: albedo x (ambient + diffuse), emissive as is)."""
        colors = torch.zeros_like(points)
        for i, primitive in enumerate(self.primitives):
            mask = hits.primitive == i
            if not mask.any():
                continue
            normals = hits.normals[mask]
            material = primitive.material
            albedo = material.albedo(points[mask], normals)
            glows = material.emissive(normals) if callable(material.emissive) else material.emissive
            if glows is not True:
                lambert = (normals * self.light.towards(points[mask])).sum(-1).clamp(min=0)
                lit = albedo * (AMBIENT + (1 - AMBIENT) * lambert)[:, None]
                albedo = lit if glows is False else torch.where(glows[:, None], albedo, lit)
            colors[mask] = albedo
        return colors.clamp(0, 1)

    def render(self, camera: Camera, supersample: int = 1) -> SyntheticView:
        """Render a pinhole camera.

        Args:
            camera: any camera; its device is used, computation is float64 (:data:`CAST_DTYPE`).
            supersample: colour is the mean of ``supersample x supersample`` rays per pixel (anti-aliased, like a
                photo); depth is always the exact z-depth through the pixel centre, matching
                :func:`core.geometry.unproject`. 1 = colour at the pixel centre too.

        Returns:
            ``(rgb [H, W, 3] float32 in [0, 1], depth [H, W] float32 z-depth)``; 0 in both where nothing is hit.
        """
        if not isinstance(supersample, int) or supersample < 1:
            raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
        height, width = camera.height, camera.width
        K = camera.K.to(CAST_DTYPE)
        cam_to_world = camera.cam_to_world.to(CAST_DTYPE)
        centers = pixel_centers(height, width, device=K.device, dtype=CAST_DTYPE).reshape(-1, 2)  # [H*W, 2]
        depth, rgb = self._cast_pixels(centers, K, cam_to_world)
        if supersample > 1:
            steps = (torch.arange(supersample, device=K.device, dtype=CAST_DTYPE) + 0.5) / supersample - 0.5
            offsets = torch.stack(torch.meshgrid(steps, steps, indexing="xy"), dim=-1).reshape(-1, 2)  # [S, 2]
            samples = (centers[:, None] + offsets[None]).reshape(-1, 2)  # [H*W*S, 2]
            _, sample_rgb = self._cast_pixels(samples, K, cam_to_world)
            rgb = sample_rgb.reshape(-1, offsets.shape[0], 3).mean(dim=1)
        return SyntheticView(
            rgb.reshape(height, width, 3).to(torch.float32),
            depth.reshape(height, width).to(torch.float32),
        )

    def _cast_pixels(self, uv: Tensor, K: Tensor, cam_to_world: Tensor) -> tuple[Tensor, Tensor]:
        """z-depth [N] and colour [N, 3] through pixel positions ``uv`` [N, 2] (0 where nothing is hit)."""
        depth = torch.zeros_like(uv[:, 0])
        rgb = torch.zeros(uv.shape[0], 3, dtype=uv.dtype, device=uv.device)
        rotation, origin = cam_to_world[:3, :3], cam_to_world[:3, 3]
        for start in range(0, uv.shape[0], RAYS_PER_CHUNK):
            chunk = uv[start : start + RAYS_PER_CHUNK]
            # camera-frame directions with z = 1: the ray parameter t is then the z-depth itself
            cam_dirs = torch.stack(
                [(chunk[:, 0] - K[0, 2]) / K[0, 0], (chunk[:, 1] - K[1, 2]) / K[1, 1], torch.ones_like(chunk[:, 0])],
                dim=-1,
            )
            directions = cam_dirs @ rotation.T  # [n, 3]
            origins = origin[None]  # [1, 3]: one centre for all rays
            hits = self.cast(origins, directions)
            hit = torch.isfinite(hits.t)
            t = torch.where(hit, hits.t, torch.zeros_like(hits.t))
            depth[start : start + chunk.shape[0]] = t
            rgb[start : start + chunk.shape[0]] = self.shade(origins + t[:, None] * directions, hits)
        return depth, rgb

    def surface_distance(self, points: Tensor) -> Tensor:  # [N, 3] -> [N]
        """Unsigned distance from each world point to the nearest surface (analytic; dtype/device follow input)."""
        if points.ndim != 2 or points.shape[-1] != 3:
            raise ValueError(f"points must have shape [N, 3], got {tuple(points.shape)}")
        work = points.to(CAST_DTYPE)
        out = torch.full_like(work[:, 0], math.inf)
        for start in range(0, work.shape[0], RAYS_PER_CHUNK):
            chunk = work[start : start + RAYS_PER_CHUNK]
            best = torch.full_like(chunk[:, 0], math.inf)
            for primitive in self.primitives:
                best = torch.minimum(best, primitive.distance(chunk))
            out[start : start + chunk.shape[0]] = best
        return out.to(points.dtype if points.is_floating_point() else torch.float32)


def make_world(name: str) -> SyntheticWorld:
    """One of the built-in worlds: ``room``, ``street`` or ``landscape`` (view 0's camera at the origin)."""
    builders = {"room": _room, "street": _street, "landscape": _landscape}
    if name not in builders:
        raise ValueError(f"unknown synthetic world {name!r}: expected one of {', '.join(WORLD_NAMES)}")
    return builders[name]()


# --------------------------------------------------------------------------------------------------------------
# Room: 7 m x 10 m x 2.9 m, camera 1.5 m above the floor, looking at the far wall with a bookshelf and a painting.
# --------------------------------------------------------------------------------------------------------------

ROOM_FLOOR_Y = 1.5  # camera height above the floor (y is down)
ROOM_CEILING_Y = -1.4
ROOM_X = (-3.5, 3.5)
ROOM_Z = (-3.0, 7.0)
PLANK_WIDTH = 0.2  # floorboards, metres
PLANK_LENGTH = 1.5


def _wood_floor(points: Tensor, normals: Tensor) -> Tensor:
    x, z = points[:, 0], points[:, 2]
    plank = torch.floor(x / PLANK_WIDTH)
    shift = hash01(plank, seed=3) * PLANK_LENGTH
    row = torch.floor((z + shift) / PLANK_LENGTH)
    tint = hash01(plank, row, seed=4)
    base = _mix(_rgb((0.55, 0.36, 0.20), points), _rgb((0.72, 0.50, 0.30), points), tint)
    grain_coords = torch.stack([x * 30.0, torch.zeros_like(x), z * 1.5], dim=-1)
    grain = fbm(grain_coords, seed=5, octaves=3)
    gap = (_fract(x / PLANK_WIDTH) < 0.04) | (_fract((z + shift) / PLANK_LENGTH) < 0.008)
    color = _scale(base, 0.85 + 0.3 * grain)
    return torch.where(gap[:, None], color * 0.45, color)


def _room_walls(points: Tensor, normals: Tensor) -> Tensor:
    # one paint colour per wall, by the direction it faces
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    paint = torch.where(
        normals[:, 0:1].abs() > 0.5,
        torch.where(normals[:, 0:1] > 0, _rgb((0.62, 0.70, 0.58), points), _rgb((0.86, 0.78, 0.64), points)),
        torch.where(normals[:, 2:3] < 0, _rgb((0.55, 0.64, 0.74), points), _rgb((0.80, 0.55, 0.45), points)),
    )
    paint = _scale(paint, 0.96 + 0.08 * fbm(points * 9.0, seed=11, octaves=3))
    # a window on the left wall (facing +x): sky and a tree line behind mullions
    u = z
    in_window = (normals[:, 0] > 0.5) & (u > 0.3) & (u < 2.7) & (y > -0.7) & (y < 0.7)
    sky = _mix(_rgb((0.55, 0.75, 0.95), points), _rgb((0.85, 0.92, 1.0), points), ((y + 0.7) / 1.4).clamp(0, 1))
    trees = (y > 0.25 - 0.15 * fbm(torch.stack([z * 3, y * 0, x * 0], -1), seed=12, octaves=2)) & in_window
    sky = torch.where(trees[:, None], _rgb((0.25, 0.45, 0.22), points), sky)
    mullion = (_fract((u - 0.3) / 0.8) < 0.04) | ((y - 0.0).abs() < 0.03) | ((u - 0.3) < 0.05) | ((2.7 - u) < 0.05)
    window = torch.where(mullion[:, None], _rgb((0.95, 0.95, 0.93), points), sky)
    paint = torch.where(in_window[:, None], window, paint)
    # a door on the wall behind the camera (facing +z)
    in_door = (normals[:, 2] > 0.5) & (x > -1.4) & (x < -0.4) & (y > -0.6)
    panel = ((x + 0.9).abs() < 0.35) & (((y + 0.05).abs() < 0.45) | ((y - 1.05).abs() < 0.3))
    door = torch.where(panel[:, None], _rgb((0.48, 0.30, 0.18), points), _rgb((0.58, 0.38, 0.22), points))
    paint = torch.where(in_door[:, None], door, paint)
    # skirting board and a dado rail
    paint = torch.where((y > ROOM_FLOOR_Y - 0.12)[:, None], _rgb((0.93, 0.92, 0.88), points), paint)
    paint = torch.where(((y - 0.55).abs() < 0.02)[:, None], _rgb((0.93, 0.92, 0.88), points), paint)
    return paint


def _rug(points: Tensor, normals: Tensor) -> Tensor:
    x, z = points[:, 0], points[:, 2]
    cx, cz = -0.7, 4.9
    border = ((x - cx).abs() > 1.45) | ((z - cz).abs() > 1.1)
    diamond = _fract(((x - cx).abs() + (z - cz).abs()) / 0.4) < 0.5
    body = torch.where(diamond[:, None], _rgb((0.62, 0.15, 0.14), points), _rgb((0.90, 0.82, 0.66), points))
    color = torch.where(border[:, None], _rgb((0.20, 0.22, 0.40), points), body)
    return _scale(color, 0.93 + 0.14 * fbm(points * 25.0, seed=21, octaves=2))


def _books(points: Tensor, normals: Tensor) -> Tensor:
    x, y = points[:, 0], points[:, 1]
    shelf = torch.floor((y + 0.7) / 0.55)
    book = torch.floor(x / 0.06 + hash01(shelf, seed=31) * 7)
    pick = hash01(book, shelf, seed=32)
    palette = torch.tensor(
        [[0.60, 0.12, 0.10], [0.12, 0.30, 0.55], [0.85, 0.70, 0.25], [0.15, 0.45, 0.25], [0.90, 0.88, 0.80]],
        dtype=points.dtype,
        device=points.device,
    )
    color = palette[(pick * len(palette)).long().clamp(max=len(palette) - 1)]
    height = 0.3 + 0.2 * hash01(book, shelf, seed=33)  # books of different heights; wood above them
    above = _fract((y + 0.7) / 0.55) * 0.55 < 0.55 - height
    board = _fract((y + 0.7) / 0.55) > 0.92
    wood = _rgb((0.45, 0.30, 0.18), points)
    return torch.where((above | board)[:, None], wood.expand_as(color) * 0.7, color)


def _painting(points: Tensor, normals: Tensor) -> Tensor:
    x, y = points[:, 0], points[:, 1]
    frame = (x < -1.72) | (x > -0.48) | (y < -0.52) | (y > 0.22)
    n1 = fbm(torch.stack([x * 2.5, y * 2.5, torch.zeros_like(x)], -1), seed=41, octaves=4)
    n2 = fbm(torch.stack([x * 2.5, y * 2.5, torch.ones_like(x)], -1), seed=42, octaves=4)
    art = torch.stack([0.2 + 0.8 * n1, 0.3 + 0.5 * n2, 0.9 - 0.7 * n1], -1)
    return torch.where(frame[:, None], _rgb((0.75, 0.60, 0.25), points), art)


def _beach_ball(center: tuple[float, float, float]) -> Albedo:
    def albedo(points: Tensor, normals: Tensor) -> Tensor:
        angle = torch.atan2(points[:, 0] - center[0], points[:, 2] - center[2])
        segment = torch.floor((angle + math.pi) / (2 * math.pi) * 6).clamp(0, 5).long()
        palette = torch.tensor(
            [
                [0.9, 0.15, 0.1],
                [0.95, 0.95, 0.95],
                [0.1, 0.35, 0.85],
                [0.95, 0.95, 0.95],
                [0.98, 0.8, 0.1],
                [0.95, 0.95, 0.95],
            ],
            dtype=points.dtype,
            device=points.device,
        )
        return palette[segment]

    return albedo


def _room() -> SyntheticWorld:
    floor_y = ROOM_FLOOR_Y
    wood = Material(plain((0.50, 0.33, 0.20), grain=0.12, scale=14.0, seed=7))
    white_wood = Material(plain((0.88, 0.87, 0.83), grain=0.05, seed=8))
    fabric = Material(checker(0.05, (0.16, 0.42, 0.45), (0.19, 0.47, 0.50), seed=9))
    mustard = Material(checker(0.04, (0.80, 0.60, 0.18), (0.74, 0.55, 0.16), seed=10))
    room = Box(
        (ROOM_X[0], ROOM_CEILING_Y, ROOM_Z[0]),
        (ROOM_X[1], floor_y, ROOM_Z[1]),
        Material(by_facing(up=_wood_floor, down=plain((0.94, 0.93, 0.90), grain=0.03, seed=13), side=_room_walls)),
    )
    table_top = (-1.7, 1.0, 4.4), (-0.3, 1.05, 5.4)
    legs = [
        Box((x, 1.05, z), (x + 0.06, floor_y - 0.01, z + 0.06), wood)  # standing on the 1 cm rug
        for x in (table_top[0][0] + 0.04, table_top[1][0] - 0.10)
        for z in (table_top[0][2] + 0.04, table_top[1][2] - 0.10)
    ]
    primitives = [
        room,
        # rug (1 cm thick) with the coffee table on it, a beach ball on the table
        Box((-2.3, floor_y - 0.01, 3.6), (0.9, floor_y, 6.2), Material(_rug)),
        Box(*table_top, wood),
        *legs,
        Sphere((-0.9, 1.0 - 0.14, 4.9), 0.14, Material(_beach_ball((-0.9, 0.86, 4.9)))),
        # sofa along the left wall: seat and backrest
        Box((-3.5, 1.05, 3.5), (-2.6, floor_y, 6.0), fabric),
        Box((-3.5, 0.55, 3.5), (-3.25, 1.05, 6.0), fabric),
        # bookshelf against the far wall, painting beside it
        Box((1.2, -0.7, 6.6), (2.8, floor_y, 7.0), Material(by_normal(wood.albedo, nz=_books))),
        Box((-1.8, -0.6, 6.97), (-0.4, 0.3, 7.0), Material(_painting)),
        # sideboard on the right wall with a vase
        Box((2.9, 0.7, 3.2), (3.5, floor_y, 5.2), white_wood),
        Sphere((3.2, 0.7 - 0.16, 4.0), 0.16, Material(plain((0.15, 0.35, 0.70), grain=0.15, scale=20.0, seed=14))),
        # potted plant in the far left corner
        Box((-3.3, 1.1, 6.4), (-2.9, floor_y, 6.8), Material(plain((0.70, 0.38, 0.24), grain=0.1, seed=15))),
        Sphere((-3.1, 1.1 - 0.35, 6.6), 0.35, Material(plain((0.20, 0.48, 0.18), grain=0.35, scale=18.0, seed=16))),
        # pendant lamp (emissive) hanging under the ceiling
        Sphere((0.0, -0.95, 4.5), 0.22, Material(plain((1.0, 0.93, 0.75), grain=0.02, seed=17), emissive=True)),
        # behind the camera: an armchair and a tall cabinet
        Box((0.4, 1.0, -2.9), (1.4, floor_y, -2.0), mustard),
        Box((0.4, 0.45, -3.0), (1.4, 1.0, -2.75), mustard),
        Box((3.0, -0.3, -2.2), (3.5, floor_y, -0.8), white_wood),
    ]
    return SyntheticWorld(
        "room",
        tuple(primitives),
        Light(position=(0.0, -0.95, 4.5)),
        prompt="a cozy living room with a wooden floor, a teal sofa, a bookshelf and a patterned rug",
        ground_y=floor_y,
    )


# --------------------------------------------------------------------------------------------------------------
# Street: a 12 m wide canyon of building blocks, a cross-building closing the far end, sky above.
# --------------------------------------------------------------------------------------------------------------

STREET_GROUND_Y = 1.6
STREET_HALF_WIDTH = 6.0  # building fronts at x = +-6
LANE_HALF_WIDTH = 4.0  # road, then a raised pavement up to the fronts
KERB_HEIGHT = 0.15
STOREY = 3.2  # floor-to-floor height of the façades
WINDOW_PITCH = 2.5  # window spacing along a façade
SKY_BOX_FAR = 60.0  # far wall of the sky boxes: keeps view 0's depth under 65.5 m (16-bit millimetres)


def _sky(mountains: bool) -> Albedo:
    """Sky colour by elevation seen from the origin, soft clouds; optionally a distant mountain range."""

    def albedo(points: Tensor, normals: Tensor) -> Tensor:
        horizontal = torch.hypot(points[:, 0], points[:, 2])
        elevation = torch.atan2(-points[:, 1], horizontal)  # radians, up positive
        t = (elevation / (math.pi / 2)).clamp(0, 1).sqrt()
        color = _mix(_rgb((0.80, 0.88, 0.96), points), _rgb((0.30, 0.52, 0.85), points), t)
        direction = points / points.norm(dim=-1, keepdim=True)
        stretch = torch.tensor([4.0, 9.0, 4.0], dtype=points.dtype, device=points.device)  # flat, wide clouds
        cloud = (fbm(direction * stretch + 3.0, seed=51) - 0.55) * 4
        cloud = cloud.clamp(0, 1) * (elevation > 0.03).to(points.dtype)
        color = _mix(color, _rgb((0.97, 0.97, 0.98), points), cloud)
        if mountains:
            azimuth = torch.atan2(points[:, 0], points[:, 2])
            ridge = 0.06 + 0.03 * torch.sin(3 * azimuth + 0.5) + 0.015 * torch.sin(7 * azimuth + 1.3)
            profile = torch.stack([azimuth * 10, 0 * azimuth, 0 * azimuth], -1)
            ridge = ridge + 0.04 * (fbm(profile, seed=52, octaves=5) - 0.5)  # jagged peaks
            shade = fbm(torch.stack([azimuth * 40, elevation * 60, 0 * azimuth], -1), seed=53, octaves=3)
            rock = _mix(_rgb((0.42, 0.48, 0.58), points), _rgb((0.62, 0.67, 0.75), points), shade)
            snow_line = 0.07 + 0.01 * shade
            rock = torch.where((elevation > snow_line)[:, None], _rgb((0.93, 0.95, 0.98), points), rock)
            color = torch.where((elevation < ridge)[:, None], rock, color)
        return color

    return albedo


def _glows_except_floor(normals: Tensor) -> Tensor:  # [N, 3] -> [N] bool
    """Sky boxes: every face glows but the bottom one (the ground, facing up = -y)."""
    return normals[:, 1] > -0.5


def _street_ground(points: Tensor, normals: Tensor) -> Tensor:
    x, z = points[:, 0], points[:, 2]
    asphalt = _scale(_rgb((0.30, 0.30, 0.32), points), 0.85 + 0.3 * fbm(points * 4.0, seed=61, octaves=4))
    centre_line = (x.abs() < 0.08) & (_fract(z / 6.0) < 0.5)
    edge_line = (x.abs() - (LANE_HALF_WIDTH - 0.3)).abs() < 0.06
    crossing = ((z - 30.0).abs() < 1.5) & (_fract(x / 0.9) < 0.5)
    marks = centre_line | edge_line | crossing
    return torch.where(marks[:, None], _rgb((0.92, 0.92, 0.88), points), asphalt)


def _pavement(points: Tensor, normals: Tensor) -> Tensor:
    x, z = points[:, 0], points[:, 2]
    tile = _fract(x / 0.6) < 0.04
    tile = tile | (_fract(z / 0.6) < 0.04)
    slab = _scale(_rgb((0.66, 0.64, 0.60), points), 0.92 + 0.16 * hash01(torch.floor(x / 0.6), torch.floor(z / 0.6)))
    color = torch.where(tile[:, None], slab * 0.75, slab)
    kerb = normals[:, 1].abs() < 0.5
    return torch.where(kerb[:, None], _rgb((0.55, 0.55, 0.55), points), color)


def _facade(wall: ColorTuple, seed: int) -> Albedo:
    """A building: painted wall, a grid of windows per storey, a shopfront on the ground floor."""

    def albedo(points: Tensor, normals: Tensor) -> Tensor:
        u, y = _tangent_uv(points, normals)
        height = STREET_GROUND_Y - y  # above the ground
        wall_color = _scale(_rgb(wall, points), 0.9 + 0.2 * fbm(points * 3.0, seed, octaves=4))
        storey = torch.floor(height / STOREY)
        bay = torch.floor(u / WINDOW_PITCH)
        su, sv = _fract(u / WINDOW_PITCH), _fract(height / STOREY)
        window = (su > 0.25) & (su < 0.75) & (sv > 0.3) & (sv < 0.8) & (storey >= 1)
        lit = hash01(bay, storey, seed=seed) > 0.8
        glass = _mix(_rgb((0.20, 0.28, 0.38), points), _rgb((0.45, 0.58, 0.70), points), sv)
        glass = torch.where(lit[:, None], _rgb((0.95, 0.80, 0.45), points), glass)
        frame = window & ((su < 0.28) | (su > 0.72) | (sv < 0.33) | (sv > 0.77) | ((su - 0.5).abs() < 0.015))
        shop = (storey < 1) & (height > 0.4) & (height < 2.7) & (_fract(u / 5.0) > 0.1)
        shop_glass = _mix(_rgb((0.15, 0.18, 0.22), points), _rgb((0.35, 0.40, 0.45), points), height / 2.7)
        color = torch.where(window[:, None], glass, wall_color)
        color = torch.where(frame[:, None], _rgb((0.92, 0.92, 0.90), points), color)
        color = torch.where(shop[:, None], shop_glass, color)
        sign_band = (storey < 1) & (height > 2.8) & (height < 3.1)
        return torch.where(sign_band[:, None], _rgb((0.55, 0.12, 0.12), points), color)

    return albedo


def _street() -> SyntheticWorld:
    ground_y = STREET_GROUND_Y
    # the sky box's bottom face is the road: shaded, while the rest of the box glows as sky
    sky_box = Box(
        (-40.0, -40.0, -40.0),
        (40.0, ground_y, SKY_BOX_FAR),
        Material(by_facing(up=_street_ground, down=_sky(False), side=_sky(False)), emissive=_glows_except_floor),
    )
    pavement = Material(_pavement)
    buildings = []
    # (z from, z to, height, wall colour) for each block; left side x in [-16, -6], right side [6, 16]
    blocks_left = [
        (-40, -8, 14, (0.78, 0.62, 0.48)),
        (-8, 10, 18, (0.85, 0.80, 0.70)),
        (10, 24, 12, (0.66, 0.38, 0.30)),
        (24, 38, 21, (0.80, 0.74, 0.55)),
        (38, 50, 15, (0.62, 0.66, 0.70)),
    ]
    blocks_right = [
        (-40, -4, 16, (0.70, 0.70, 0.66)),
        (-4, 12, 13, (0.86, 0.70, 0.52)),
        (12, 27, 20, (0.58, 0.62, 0.55)),
        (27, 40, 11, (0.88, 0.84, 0.78)),
        (40, 50, 17, (0.72, 0.52, 0.42)),
    ]
    for side, blocks in ((-1, blocks_left), (1, blocks_right)):
        for i, (z0, z1, height, wall) in enumerate(blocks):
            x_near, x_far = side * STREET_HALF_WIDTH, side * (STREET_HALF_WIDTH + 10.0)
            lo = (min(x_near, x_far), ground_y - height, float(z0))
            hi = (max(x_near, x_far), ground_y, float(z1))  # standing on the road
            buildings.append(Box(lo, hi, Material(_facade(wall, seed=70 + 10 * i + side))))
        kerb_x = (side * LANE_HALF_WIDTH, side * STREET_HALF_WIDTH)
        buildings.append(Box((min(kerb_x), ground_y - KERB_HEIGHT, -40.0), (max(kerb_x), ground_y, 50.0), pavement))
    # the building across the far end, and cars, lamp posts
    buildings.append(
        Box((-40.0, ground_y - 9.0, 50.0), (40.0, ground_y, 56.0), Material(_facade((0.74, 0.56, 0.46), seed=120)))
    )
    car_paint = [(0.70, 0.10, 0.10), (0.12, 0.25, 0.55), (0.85, 0.85, 0.82)]
    for i, (x, z) in enumerate([(2.7, 14.0), (-2.7, 22.0), (2.7, 33.0)]):
        body = Material(plain(car_paint[i], grain=0.04, seed=130 + i))
        glass = Material(plain((0.15, 0.18, 0.22), grain=0.04, seed=140 + i))
        buildings.append(Box((x - 0.9, ground_y - 1.0, z), (x + 0.9, ground_y - 0.3, z + 4.3), body))
        buildings.append(Box((x - 0.8, ground_y - 1.5, z + 1.0), (x + 0.8, ground_y - 1.0, z + 3.2), glass))
        # wheels as a dark slab under the body
        buildings.append(
            Box(
                (x - 0.85, ground_y - 0.3, z + 0.4),
                (x + 0.85, ground_y, z + 3.9),
                Material(plain((0.08, 0.08, 0.08), grain=0.02, seed=150 + i)),
            )
        )
    post = Material(plain((0.20, 0.22, 0.22), grain=0.03, seed=160))
    lamp = Material(plain((1.0, 0.95, 0.80), grain=0.01, seed=161), emissive=True)
    for z in (8.0, 20.0, 32.0, 44.0, -6.0):
        for side in (-1, 1):
            x = side * (LANE_HALF_WIDTH + 0.4)
            top = ground_y - 5.0
            buildings.append(Box((x - 0.07, top, z - 0.07), (x + 0.07, ground_y - KERB_HEIGHT, z + 0.07), post))
            buildings.append(Sphere((x, top - 0.2, z), 0.2, lamp))
    return SyntheticWorld(
        "street",
        (sky_box, *buildings),
        Light(direction=(0.45, -1.0, -0.35)),
        prompt="a sunny city street lined with colourful apartment buildings, shops and parked cars",
        ground_y=ground_y,
    )


# --------------------------------------------------------------------------------------------------------------
# Landscape: grassy ground with hills (spherical caps), trees and boulders, a sky box with distant mountains.
# --------------------------------------------------------------------------------------------------------------

LANDSCAPE_GROUND_Y = 1.7


def _grass(points: Tensor, normals: Tensor) -> Tensor:
    x, z = points[:, 0], points[:, 2]
    broad = fbm(points * 0.15, seed=81, octaves=3)
    fine = fbm(points * 6.0, seed=82, octaves=2)
    color = _mix(_rgb((0.28, 0.50, 0.18), points), _rgb((0.50, 0.62, 0.25), points), broad)
    color = _scale(color, 0.85 + 0.3 * fine)
    path = (x - 0.9 * torch.sin(z / 5.0) - 0.5).abs() < 0.55 + 0.1 * fine
    color = torch.where(path[:, None], _scale(_rgb((0.62, 0.52, 0.36), points), 0.9 + 0.2 * fine), color)
    lake = torch.hypot(x + 11.0, z - 22.0) < 5.0 + 0.6 * broad
    water = _mix(_rgb((0.18, 0.35, 0.55), points), _rgb((0.35, 0.55, 0.75), points), fine)
    return torch.where(lake[:, None], water, color)


def _landscape() -> SyntheticWorld:
    ground_y = LANDSCAPE_GROUND_Y
    hill_green = Material(plain((0.36, 0.56, 0.22), grain=0.2, scale=1.5, seed=90))
    hills = [
        HillCap(-18.0, 40.0, ground_y, radius=26.0, height=4.0, material=hill_green),
        HillCap(20.0, 36.0, ground_y, radius=36.0, height=6.0, material=hill_green),
        HillCap(6.0, 14.0, ground_y, radius=10.0, height=1.0, material=hill_green),
        HillCap(0.0, -35.0, ground_y, radius=20.0, height=2.0, material=hill_green),
        HillCap(-30.0, 5.0, ground_y, radius=30.0, height=5.0, material=hill_green),
    ]
    sky = Box(
        (-60.0, -40.0, -60.0),
        (60.0, ground_y, SKY_BOX_FAR),
        Material(by_facing(up=_grass, down=_sky(True), side=_sky(True)), emissive=_glows_except_floor),
        holes=tuple(hill.hole for hill in hills),
    )
    bark = Material(plain((0.40, 0.27, 0.16), grain=0.15, scale=10.0, seed=91))
    leaves = Material(plain((0.16, 0.38, 0.14), grain=0.35, scale=5.0, seed=92))
    stone = Material(plain((0.55, 0.54, 0.50), grain=0.25, scale=4.0, seed=93))
    props: list[Primitive] = []
    for x, z, trunk, crown in [
        (-4.0, 12.0, 2.0, 1.4),
        (2.0, 26.0, 2.5, 1.8),
        (-7.0, 30.0, 2.2, 1.5),
        (3.5, -8.0, 2.0, 1.3),
        (-9.0, -4.0, 2.4, 1.6),
    ]:
        top = ground_y - trunk
        props.append(Box((x - 0.15, top, z - 0.15), (x + 0.15, ground_y, z + 0.15), bark))
        props.append(Sphere((x, top - crown, z), crown, leaves))  # resting on the trunk's top
    for x, z, radius in [(2.5, 8.0, 0.5), (-2.0, 19.0, 0.8), (12.0, 6.0, 0.6), (6.0, -4.0, 0.7)]:
        props.append(Sphere((x, ground_y - radius, z), radius, stone))  # resting on the ground
    return SyntheticWorld(
        "landscape",
        (sky, *hills, *props),
        Light(direction=(-0.4, -1.0, -0.5)),
        prompt="a peaceful green meadow with rolling hills, trees and a small lake under a blue sky with mountains",
        ground_y=ground_y,
    )
