"""Splat export (PLY, .splat), the guarded PLY reader, atomic writes, and the fly-through video."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from core.cameras import Camera, intrinsics, pose, rotation_yaw_pitch
from pipeline.splat_io import (
    BASE_FIELDS,
    MAX_HEADER_BYTES,
    ORIENTATION_COMMENT,
    read_splat_ply,
    splats_to_ply_bytes,
    splats_to_splat_bytes,
    write_dotsplat,
    write_splat_ply,
)
from pipeline.splats import SH_C0, Splats
from pipeline.video import interpolate_cameras, orbit_cameras, render_flythrough

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _splats(n: int = 50, sh_rest: int = 0, seed: int = 0) -> Splats:
    g = torch.Generator().manual_seed(seed)
    return Splats(
        means=torch.randn(n, 3, generator=g) + torch.tensor([0.0, 0.0, 3.0]),
        scales=torch.randn(n, 3, generator=g) * 0.2 - 3.0,
        quats=torch.randn(n, 4, generator=g),
        opacities=torch.randn(n, generator=g),
        sh0=torch.randn(n, 1, 3, generator=g) * 0.5,
        shN=torch.randn(n, sh_rest, 3, generator=g) * 0.1,
    )


def _header(data: bytes) -> str:
    return data[: data.index(b"end_header\n")].decode()


@pytest.mark.parametrize("sh_rest", [0, 3, 15])
def test_ply_round_trip(sh_rest):
    splats = _splats(sh_rest=sh_rest)
    data = splats_to_ply_bytes(splats)
    header = _header(data)
    assert f"comment {ORIENTATION_COMMENT}" in header.splitlines()[2]
    assert len(header) < 2048
    back = read_splat_ply(data)
    for name in ("means", "scales", "opacities", "sh0", "shN"):
        torch.testing.assert_close(getattr(back, name), getattr(splats, name), msg=name)
    unit = splats.quats / splats.quats.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(back.quats, unit)
    torch.testing.assert_close(back.quats.norm(dim=-1), torch.ones(len(splats)))


def test_ply_is_what_gradio_viewer_expects(tmp_path):
    """x, y, z, scale_0..2, opacity, rot_0..3, f_dc_0..2 as float; plyfile reads it."""
    from plyfile import PlyData

    path = write_splat_ply(tmp_path / "scene.ply", _splats(sh_rest=3))
    ply = PlyData.read(str(path))
    names = [p.name for p in ply["vertex"].properties]
    for field in ("x", "y", "z", "scale_0", "scale_1", "scale_2", "opacity", "rot_0", "rot_3", "f_dc_0", "f_dc_2"):
        assert field in names
    assert all(p.val_dtype in ("f4", "float32") for p in ply["vertex"].properties)
    assert ply["vertex"].count == 50
    assert any("up is -y" in c for c in ply.comments)
    assert [p.name for p in tmp_path.iterdir()] == ["scene.ply"]  # no temp files left


def test_refuses_nan_and_leaves_no_file(tmp_path):
    splats = _splats()
    splats.means[3, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        write_splat_ply(tmp_path / "bad.ply", splats)
    with pytest.raises(ValueError, match="non-finite"):
        write_dotsplat(tmp_path / "bad.splat", splats)
    assert list(tmp_path.iterdir()) == []
    zero_quat = _splats()
    zero_quat.quats[0] = 0
    with pytest.raises(ValueError, match="zero length"):
        splats_to_ply_bytes(zero_quat)
    huge = _splats()
    huge.scales[1, 2] = 200.0
    with pytest.raises(ValueError, match="log-scales"):
        splats_to_splat_bytes(huge)


def test_cap_keeps_the_most_opaque():
    splats = _splats(n=20)
    data = splats_to_ply_bytes(splats, max_splats=5)
    back = read_splat_ply(data)
    assert len(back) == 5
    torch.testing.assert_close(back.opacities.sort().values, splats.opacities.sort().values[-5:])


def test_dotsplat_layout(tmp_path):
    splats = _splats(n=7)
    data = splats_to_splat_bytes(splats)
    assert len(data) == 7 * 32
    rows = np.frombuffer(
        data, dtype=np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
    )
    order = [int(np.argmin(np.abs(splats.means.numpy() - p).sum(1))) for p in rows["pos"]]
    assert sorted(order) == list(range(7))  # a permutation (Morton order), nothing lost
    np.testing.assert_allclose(rows["scale"], np.exp(splats.scales.numpy()[order]), rtol=1e-6)
    rgb = (0.5 + SH_C0 * splats.sh0[:, 0].numpy()[order]).clip(0, 1) * 255
    assert np.abs(rows["rgba"][:, :3].astype(float) - rgb).max() <= 1.0
    path = write_dotsplat(tmp_path / "scene.splat", splats)
    assert path.read_bytes() == data


def test_dotsplat_bytes_are_gsplats():
    """Our vectorised packing writes exactly the bytes of gsplat's exporter (its per-splat loop), order included."""
    from gsplat import export_splats

    from pipeline.splat_io import prepare_for_export

    splats = _splats(n=2000)
    splats.quats = splats.quats * 3.0  # not unit length: both normalise
    s = prepare_for_export(splats)
    theirs = export_splats(s.means, s.scales, s.quats, s.opacities, s.sh0, s.shN, format="splat")
    assert splats_to_splat_bytes(splats) == theirs


SPLAT_FIELDS = list(BASE_FIELDS)


def _valid_header(count: int, fields: list[str] | None = None, fmt: str = "binary_little_endian 1.0") -> bytes:
    fields = fields or SPLAT_FIELDS
    lines = ["ply", f"format {fmt}", f"element vertex {count}"] + [f"property float {f}" for f in fields]
    return ("\n".join(lines) + "\nend_header\n").encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_valid_header(10**11) + b"\0" * 56, "more than the limit"),
        (_valid_header(1000) + b"\0" * 56, "body size mismatch"),
        (_valid_header(1) + b"\0" * 57, "body size mismatch"),
        (_valid_header(1).replace(b"property float rot_3", b"property uchar rot_3") + b"\0" * 53, "property float"),
        (
            _valid_header(1).replace(b"property float rot_3", b"property list uchar int rot_3") + b"\0" * 56,
            "property float",
        ),
        (_valid_header(1, ["x", "y", "z"]) + b"\0" * 12, "lacks splat fields"),
        (_valid_header(1, fmt="ascii 1.0") + b"0 " * 14, "binary_little_endian"),
        (_valid_header(1, fmt="binary_big_endian 1.0") + b"\0" * 56, "binary_little_endian"),
        (
            b"ply\nformat binary_little_endian 1.0\n" + b"comment " + b"a" * MAX_HEADER_BYTES + b"\nend_header\n",
            "end_header",
        ),
        (b"PK\x03\x04" + b"\0" * 100, "end_header"),
        (_valid_header(1).replace(b"element vertex 1", b"element vertex -1") + b"\0" * 56, "non-negative integer"),
        (_valid_header(1).replace(b"element vertex 1", b"element vertex 1\nelement face 3"), "exactly one"),
        (_valid_header(1).replace(b"opacity", b"\xff\xfe") + b"\0" * 56, "ASCII"),
        (_valid_header(1, [f"f_rest_{i}" for i in range(5)] + SPLAT_FIELDS) + b"\0" * 76, "f_rest"),
    ],
)
def test_hostile_headers_are_refused(tmp_path, data, message):
    with pytest.raises(ValueError, match=message):
        read_splat_ply(data)
    path = tmp_path / "hostile.ply"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message):
        read_splat_ply(path)


def test_reader_refuses_nan_values():
    body = struct.pack("<14f", *([0.0] * 10 + [1.0, 0.0, 0.0, float("nan")]))
    with pytest.raises(ValueError, match="non-finite"):
        read_splat_ply(_valid_header(1) + body)
    ok = read_splat_ply(_valid_header(1) + struct.pack("<14f", *([0.0] * 10 + [1.0, 0.0, 0.0, 0.0])))
    assert len(ok) == 1 and ok.sh_degree == 0


def test_flythrough_video(tmp_path):
    import imageio.v3 as iio

    height, width = 24, 32
    base = Camera(intrinsics(height, width), pose(rotation_yaw_pitch(0.0, 0.0)).float(), height, width)
    path = interpolate_cameras([base, Camera(base.K, pose(rotation_yaw_pitch(20.0, 0.0)).float(), height, width)], 4)
    assert len(path) == 5
    torch.testing.assert_close(path[-1].world_to_cam, pose(rotation_yaw_pitch(20.0, 0.0)).float())
    orbit = orbit_cameras(base, num_frames=6, degrees=60.0)
    torch.testing.assert_close(orbit[3].world_to_cam, pose(rotation_yaw_pitch(30.0, 0.0)).float(), atol=1e-6, rtol=0)
    splats = _splats(n=200)
    out = render_flythrough(tmp_path / "fly.mp4", splats, path + orbit, fps=10)
    frames = np.stack(list(iio.imiter(out)))
    assert frames.shape == (11, height, width, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["fly.mp4"]


def test_video_from_the_point_cloud_with_honest_progress_and_clean_cancel(tmp_path):
    """The cheap preview (the cloud through the z-buffer) shows the cloud's colours; progress counts encoded
    frames (monotonic, ends at the total); a cancelled video leaves no file."""
    import threading

    import imageio.v3 as iio

    from core.components import Cancelled
    from core.types import PointCloud

    height, width = 24, 32
    base = Camera(intrinsics(height, width), pose(rotation_yaw_pitch(0.0, 0.0)).float(), height, width)
    v, u = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    depth = 2.0
    points = torch.stack([(u - width / 2) / width * depth, (v - height / 2) / width * depth, torch.full_like(u, depth)])
    points = points.reshape(3, -1).T  # [H*W, 3] a wall two units ahead, one point per pixel of view 0
    colors = torch.tensor([0.8, 0.2, 0.1]).expand(points.shape[0], 3)
    cloud = PointCloud(
        points, colors, torch.full((points.shape[0],), 0.5 * depth / width), torch.zeros(len(points), dtype=torch.long)
    )
    seen = []
    out = render_flythrough(
        tmp_path / "cloud.mp4",
        cloud,
        orbit_cameras(base, 4, degrees=8.0),
        fps=4,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    frames = np.stack(list(iio.imiter(out)))
    assert frames.shape == (4, height, width, 3)
    centre = frames[0, height // 2 - 4 : height // 2 + 4, width // 2 - 4 : width // 2 + 4].reshape(-1, 3).mean(0)
    assert abs(centre[0] - 204) < 12 and abs(centre[1] - 51) < 12 and abs(centre[2] - 26) < 12, centre
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        render_flythrough(
            tmp_path / "stopped.mp4", cloud, orbit_cameras(base, 4), cancel=cancel, progress=lambda d, t: cancel.set()
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cloud.mp4"]
