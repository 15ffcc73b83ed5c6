"""Equirectangular panoramas of a scene: 2:1, covering the sphere for a sphere-mode world and the ring's band for
360, with distances that match the exact world along each ray."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from core.cameras import make_cameras
from core.types import PointCloud
from evaluation.worlds import make_world
from pipeline.fusion import lift_pixels
from pipeline.panorama import Panorama, panorama_files, pixel_directions, render_panorama

VIEW_SIZE = (48, 36)  # (W, H) of each lifted view: coarse, like a small run
PANO_WIDTH = 128  # 2.8° per pixel, about the 1.1° pixels of the views after their overlap
MIN_SPHERE_COVERAGE = 0.95
DISTANCE_RTOL = 0.05  # a pixel shows a point within its footprint, not exactly on the ray
# a coarse pixel (2.8°) shows the nearest point inside it, up to half a pixel off its centre ray: on walls and
# floor seen at an angle that is ~1-2 % of the distance
MEDIAN_RTOL = 0.02


def world_cloud(mode: str) -> tuple[PointCloud, list]:
    """The room world seen from every camera of ``mode``, every pixel lifted (exact depth)."""
    world = make_world("room")
    cameras = make_cameras(mode, VIEW_SIZE)
    cloud = PointCloud.empty()
    for index, camera in enumerate(cameras):
        rgb, depth = world.render(camera)
        cloud = cloud.cat(lift_pixels(rgb, depth, depth > 0, camera, index, 0.5))
    return cloud, cameras


@pytest.fixture(scope="module")
def sphere():
    cloud, cameras = world_cloud("sphere")
    return render_panorama(cloud, cameras[0], PANO_WIDTH), cameras


def test_sphere_world_covers_the_panorama_with_true_distances(sphere):
    panorama, cameras = sphere
    assert panorama.rgb.shape == (PANO_WIDTH // 2, PANO_WIDTH, 3) and panorama.distance.shape == (64, 128)
    assert panorama.coverage >= MIN_SPHERE_COVERAGE, f"coverage {panorama.coverage:.1%}"
    rays = pixel_directions(64, PANO_WIDTH).reshape(-1, 3)
    truth = make_world("room").cast(torch.zeros(1, 3, dtype=torch.float64), rays).t.reshape(64, PANO_WIDTH)
    known = panorama.known
    error = (panorama.distance[known].double() - truth[known]).abs() / truth[known]
    assert float(error.median()) < MEDIAN_RTOL and float((error < DISTANCE_RTOL).float().mean()) > 0.95


def test_panorama_centre_is_the_photo_and_top_is_up(sphere):
    panorama, cameras = sphere
    rgb, depth = make_world("room").render(cameras[0])
    centre = panorama.distance[32, 64]  # the pixel just below-right of the centre ray, view 0's centre
    assert abs(float(centre) - float(depth[18, 24])) < 0.1 * float(depth[18, 24])
    # the room's ceiling is up: above the camera (top rows) distances are to the ceiling, below to the floor
    ceiling = (
        make_world("room")
        .cast(torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[0, -1.0, 0]], dtype=torch.float64))
        .t
    )
    floor = (
        make_world("room")
        .cast(torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[0, 1.0, 0]], dtype=torch.float64))
        .t
    )
    assert abs(float(panorama.distance[0].median()) - float(ceiling)) < 0.1 * float(ceiling)
    assert abs(float(panorama.distance[-1].median()) - float(floor)) < 0.1 * float(floor)


def test_ring_fills_only_its_band():
    cloud, cameras = world_cloud("360")
    panorama = render_panorama(cloud, cameras[0], PANO_WIDTH)
    vfov = 2 * math.degrees(math.atan(VIEW_SIZE[1] / 2 / float(cameras[0].K[1, 1])))
    lat = 90 - (torch.arange(64) + 0.5) * 180 / 64  # [H] degrees
    inside = lat.abs() < vfov / 2 - 3  # a pixel's margin (2.8°) inside the band
    outside = lat.abs() > vfov / 2 + 3
    band = panorama.known[inside].float().mean()
    caps = panorama.known[outside].float().mean()
    assert band >= MIN_SPHERE_COVERAGE, f"the ring's band is {band:.1%} covered"
    assert caps == 0, "pixels outside the ring's band cannot show anything"


def test_files_are_a_2_to_1_rgb_png_and_a_16_bit_depth_png(sphere):
    panorama, _ = sphere
    files = panorama_files(panorama)
    rgb = Image.open(io.BytesIO(files["panorama.png"]))
    depth = Image.open(io.BytesIO(files["panorama_depth.png"]))
    assert rgb.mode == "RGB" and rgb.size == (PANO_WIDTH, PANO_WIDTH // 2)
    depth_mm = np.asarray(depth)
    assert depth_mm.dtype == np.uint16 and depth.size == rgb.size
    assert np.allclose(depth_mm[panorama.known.numpy()] / 1000, panorama.distance[panorama.known].numpy(), atol=1e-3)
    assert (depth_mm[~panorama.known.numpy()] == 0).all()
    Image.open(io.BytesIO(files["panorama.png"])).save("/tmp/worldstitch_panorama_sphere.png")


def test_bad_width_and_empty_cloud_are_errors():
    camera = make_cameras("single", VIEW_SIZE)[0]
    with pytest.raises(ValueError, match="even"):
        render_panorama(PointCloud.empty(), camera, 101)
    with pytest.raises(ValueError, match="empty"):
        render_panorama(PointCloud.empty(), camera, 64)
    assert isinstance(
        Panorama(torch.zeros(2, 4, 3), torch.zeros(2, 4), torch.ones(2, 4, dtype=torch.bool)).coverage, float
    )
