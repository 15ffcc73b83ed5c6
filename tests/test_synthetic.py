"""The procedural ground-truth worlds: exact depth, z-depth convention, closed worlds, analytic distances, examples."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.cameras import Camera, make_cameras, pose, rotation_yaw_pitch
from core.geometry import ray_directions, unproject
from evaluation import examples
from evaluation.worlds import (
    WORLD_NAMES,
    Box,
    HillCap,
    Light,
    Material,
    Sphere,
    SyntheticWorld,
    make_world,
    plain,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
HEIGHT, WIDTH = 48, 64


def _camera(yaw: float, pitch: float, position=(0.0, 0.0, 0.0), height=HEIGHT, width=WIDTH) -> Camera:
    K = make_cameras("single", (width, height))[0].K
    w2c = pose(rotation_yaw_pitch(yaw, pitch), torch.tensor(position, dtype=torch.float64))
    return Camera(K, w2c.float(), height, width)


def _cast_pixels(world: SyntheticWorld, camera: Camera) -> torch.Tensor:  # -> [H, W] ray parameter t
    """Cast the pixel-centre rays (camera z = 1, so t is the z-depth) without shading: cheap depth."""
    c2w = camera.cam_to_world.double()
    directions = ray_directions(camera.height, camera.width, camera.K.double()).reshape(-1, 3) @ c2w[:3, :3].T
    return world.cast(c2w[None, :3, 3], directions).t.reshape(camera.height, camera.width)


@pytest.fixture(scope="module", params=WORLD_NAMES)
def world(request) -> SyntheticWorld:
    return make_world(request.param)


def test_unprojected_depth_lies_on_the_surfaces(world):
    cameras = [
        make_cameras("single", (WIDTH, HEIGHT))[0],
        _camera(130.0, 35.0),
        _camera(-60.0, -50.0, position=(0.4, -0.2, 0.8)),
    ]
    for camera in cameras:
        rgb, depth = world.render(camera)
        assert rgb.shape == (HEIGHT, WIDTH, 3) and depth.shape == (HEIGHT, WIDTH)
        assert rgb.dtype == torch.float32 and depth.dtype == torch.float32
        assert 0.0 <= float(rgb.min()) and float(rgb.max()) <= 1.0
        points = unproject(depth, camera.K, camera.cam_to_world).reshape(-1, 3)
        relative = world.surface_distance(points) / depth.reshape(-1)
        assert float(relative.max()) < 1e-3, f"{world.name}: a rendered point is {float(relative.max()):.2e} off"


def test_every_ray_of_the_sphere_path_hits(world):
    for camera in make_cameras("sphere", (WIDTH, HEIGHT)):
        t = _cast_pixels(world, camera)
        assert bool(torch.isfinite(t).all()) and bool((t > 0).all()), f"{world.name} is not closed"
    for pitch in (-90.0, 90.0):  # straight down and up render with depth everywhere
        rgb, depth = world.render(_camera(0.0, pitch))
        assert bool((depth > 0).all()) and bool(torch.isfinite(depth).all())


def test_depth_is_z_depth_not_ray_length():
    distance = 3.25
    # a closed box whose far wall is the plane z = distance, facing the camera at the origin
    world = SyntheticWorld(
        "wall",
        (Box((-50.0, -50.0, -1.0), (50.0, 50.0, distance), Material(plain((0.5, 0.5, 0.5)))),),
        Light((0, 0, -1)),
    )
    camera = make_cameras("single", (WIDTH, HEIGHT), hfov_deg=90.0)[0]
    _, depth = world.render(camera)
    torch.testing.assert_close(depth, torch.full_like(depth, distance), rtol=0, atol=1e-5)
    corner = unproject(depth, camera.K, camera.cam_to_world)[0, 0]
    assert float(corner.norm()) > 1.3 * distance  # the corner ray is much longer than its z-depth


def test_room_floor_is_below_the_camera():
    world = make_world("room")
    assert world.ground_y == 1.5
    down = _camera(0.0, -90.0)
    _, depth = world.render(down)
    points = unproject(depth, down.K, down.cam_to_world)
    assert bool((points[..., 1] > 0).all()), "looking down must see the floor at y > 0 (y is down)"
    torch.testing.assert_close(points[..., 1], torch.full_like(points[..., 1], 1.5), rtol=0, atol=1e-4)
    view0 = make_cameras("single", (WIDTH, HEIGHT))[0]
    _, depth0 = world.render(view0)
    points0 = unproject(depth0, view0.K, view0.cam_to_world)
    assert float(points0[-1, :, 1].min()) > 0 and float(points0[0, :, 1].max()) < 0  # bottom row low, top row high


def test_surface_distance_known_values():
    room = make_world("room")
    # from the camera, the nearest surface is the ceiling 1.4 m above (the floor is 1.5 m below)
    assert math.isclose(float(room.surface_distance(torch.zeros(1, 3, dtype=torch.float64))), 1.4, rel_tol=1e-12)
    sphere = Sphere((0.0, 0.0, 5.0), 1.0, Material(plain((1, 1, 1))))
    points = torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, 2.0], [0.0, 0.5, 5.0]])
    torch.testing.assert_close(sphere.distance(points), torch.tensor([1.0, 2.0, 0.5]))
    assert room.surface_distance(torch.zeros(2, 3, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        room.surface_distance(torch.zeros(3))


def _brute_force_distance(queries: torch.Tensor, surface: torch.Tensor) -> torch.Tensor:  # [Q, 3], [S, 3] -> [Q]
    return torch.cat([torch.cdist(chunk, surface).min(dim=1).values for chunk in queries.split(64)])


def test_hill_and_holed_ground_distances_match_a_dense_sampling():
    """Analytic distances against the nearest of ~10^5 points sampled on the very surfaces (slow reference)."""
    ground_y, spacing = 1.0, 0.02
    hill = HillCap(0.3, -0.2, ground_y, radius=1.5, height=0.8, material=Material(plain((0, 1, 0))))
    box = Box((-2.0, -2.0, -2.0), (2.0, ground_y, 2.0), Material(plain((1, 1, 1))), holes=(hill.hole,))
    grid = torch.arange(-2.0, 2.0 + 1e-9, spacing, dtype=torch.float64)
    a, b = torch.meshgrid(grid, grid, indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    samples = []
    for axis in range(3):
        for coord in (box.lo[axis], box.hi[axis]):
            face = torch.stack([a, b], dim=-1)
            face = torch.cat([face[:, :axis], torch.full_like(a, coord)[:, None], face[:, axis:]], dim=-1)
            if axis == 1 and coord == ground_y:  # the ground keeps only what lies outside the hill's base
                face = face[torch.hypot(face[:, 0] - hill.x, face[:, 2] - hill.z) >= hill.base_radius]
            samples.append(face)
    polar = torch.linspace(0.0, math.acos((hill.radius - hill.height) / hill.radius), 150, dtype=torch.float64)
    azimuth = torch.linspace(0.0, 2 * math.pi, 400, dtype=torch.float64)
    polar, azimuth = (g.reshape(-1) for g in torch.meshgrid(polar, azimuth, indexing="ij"))
    center = torch.tensor(hill.center, dtype=torch.float64)
    cap = center + hill.radius * torch.stack(
        [torch.sin(polar) * torch.cos(azimuth), -torch.cos(polar), torch.sin(polar) * torch.sin(azimuth)], -1
    )
    samples.append(cap)
    surface = torch.cat(samples)
    generator = torch.Generator().manual_seed(0)
    queries = (torch.rand(300, 3, generator=generator, dtype=torch.float64) * 2 - 1) * torch.tensor([1.9, 1.4, 1.9])
    queries[:, 1] = queries[:, 1].clamp(max=ground_y - 1e-3) + 0.0
    queries[:100, 1] = ground_y - torch.rand(100, generator=generator, dtype=torch.float64) * 0.9  # near the hill
    analytic = torch.minimum(box.distance(queries), hill.distance(queries))
    reference = _brute_force_distance(queries, surface)
    assert float((analytic - reference).abs().max()) < 2 * spacing
    assert bool((analytic <= reference + 1e-9).all())  # samples lie on the surface: never nearer than the truth


def test_hill_is_hit_only_above_the_ground():
    hill = HillCap(0.0, 10.0, 1.0, radius=5.0, height=1.5, material=Material(plain((0, 1, 0))))
    origins = torch.zeros(3, 3, dtype=torch.float64)
    # straight at the top; low under the cap rim (would hit the sphere below ground); high over it
    directions = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.3, 1.0], [0.0, -0.2, 1.0]], dtype=torch.float64)
    t = hill.intersect(origins, directions)
    assert math.isfinite(float(t[0])) and float(t[0]) < 10.0
    top = (origins + t[:, None] * directions)[:1]
    assert float(hill.distance(top)) < 1e-9
    assert math.isinf(float(t[1])) and math.isinf(float(t[2]))
    assert float((hill.normals(top, directions[:1]) * directions[0]).sum()) < 0  # normal faces the viewer


def test_supersampling_keeps_depth_and_smooths_colour():
    world = make_world("street")
    camera = make_cameras("single", (32, 24))[0]
    rgb1, depth1 = world.render(camera)
    rgb3, depth3 = world.render(camera, supersample=3)
    assert torch.equal(depth1, depth3)
    assert float((rgb1 - rgb3).abs().mean()) < 0.1
    rgb1_again, _ = world.render(camera)
    assert torch.equal(rgb1, rgb1_again)
    with pytest.raises(ValueError, match="supersample"):
        world.render(camera, supersample=0)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="room, street, landscape"):
        make_world("moon")
    with pytest.raises(ValueError, match="lo < hi"):
        Box((0.0, 0.0, 0.0), (1.0, -1.0, 1.0), Material(plain((1, 1, 1))))
    with pytest.raises(ValueError, match="hole"):
        Box((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), Material(plain((1, 1, 1))), holes=((0.5, 1.0, 0.5, 0.7),))
    with pytest.raises(ValueError, match="exactly one"):
        Light()
    with pytest.raises(ValueError, match="height < radius"):
        HillCap(0.0, 0.0, 1.0, radius=1.0, height=2.0, material=Material(plain((1, 1, 1))))


# A patch per world with detail in it (bookshelf, façades and car, trees and path): (column, row) of its corner.
PATCHES = {"room": (352, 150), "street": (300, 190), "landscape": (250, 150)}
PATCH = 16


@pytest.mark.parametrize("name", WORLD_NAMES)
def test_shipped_examples_match_the_script(name):
    script = examples
    folder = EXAMPLES / name
    image = Image.open(folder / "image.png")
    depth_image = Image.open(folder / "depth.png")
    assert image.mode == "RGB" and image.size == (script.DEFAULT_WIDTH, script.DEFAULT_HEIGHT)
    depth_mm = np.array(depth_image)
    assert depth_mm.dtype == np.uint16 and depth_mm.shape == (script.DEFAULT_HEIGHT, script.DEFAULT_WIDTH)
    prompt = (folder / "prompt.txt").read_text()
    assert prompt.strip() and prompt.count("\n") == 1 and prompt.strip() == make_world(name).prompt
    assert (folder / "camera.json").is_file()

    # depth: the exact z-depth through every pixel centre of view 0, in millimetres
    world = make_world(name)
    camera = script.example_camera()
    truth_mm = (_cast_pixels(world, camera) * script.DEPTH_UNITS_PER_METRE).numpy()
    # rounding to whole millimetres, plus float32 rounding of the rendered depth (< 0.01 mm at 60 m)
    assert np.abs(depth_mm.astype(np.float64) - truth_mm).max() <= 0.51

    # colour: re-render a patch (a camera with the principal point shifted onto it) exactly as the script does
    column, row = PATCHES[name]
    K = camera.K.clone()
    K[0, 2] -= column
    K[1, 2] -= row
    patch_camera = Camera(K, camera.world_to_cam, PATCH, PATCH)
    rgb, _ = world.render(patch_camera, supersample=script.SUPERSAMPLE)
    expected = np.round(rgb.numpy() * 255.0).astype(np.int16)
    shipped = np.array(image)[row : row + PATCH, column : column + PATCH].astype(np.int16)
    assert np.abs(shipped - expected).max() <= 1, f"{name}: examples/ is stale; run python scripts/make_examples.py"
    assert expected.std() > 10, "the patch should have detail in it"
