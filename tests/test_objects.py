"""Virtual objects: the objects JSON, safe mesh files, ray-cast drawing, hard occlusion, placement, splats."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch

from core.cameras import Camera, make_cameras
from core.types import Frame
from pipeline.objects import (
    HardDepthOcclusion,
    MeshError,
    ObjectSpec,
    append_splats,
    build_object,
    composite_frame,
    composite_image,
    composite_view,
    load_mesh_file,
    load_objects_json,
    merge_objects,
    object_splats,
    parse_objects,
    place_at_pixel,
    render_object,
)
from pipeline.splats import Splats

WIDTH, HEIGHT = 64, 48
RED = (0.9, 0.1, 0.1)


def _camera() -> Camera:
    return make_cameras("single", (WIDTH, HEIGHT))[0]


def _frame(depth: torch.Tensor, camera: Camera | None = None) -> Frame:
    camera = camera or _camera()
    rgb = torch.full((camera.height, camera.width, 3), 0.5)
    everything = torch.ones(camera.height, camera.width, dtype=torch.bool)
    return Frame(0, camera, rgb, depth, everything)


# --- the objects JSON --------------------------------------------------------------------------------------------


def test_parse_objects_reads_every_field():
    data = {
        "objects": [
            {"kind": "sphere", "position": [0, 0.5, 3], "rotation": [10, 0, 5], "scale": 0.4, "color": [1, 0, 0]},
            {"kind": "box", "position": [1, 0, 4], "scale": [1, 2, 3]},
        ]
    }
    first, second = parse_objects(data)
    assert first == ObjectSpec("sphere", (0.0, 0.5, 3.0), (10.0, 0.0, 5.0), (0.4, 0.4, 0.4), (1.0, 0.0, 0.0))
    assert second.scale == (1.0, 2.0, 3.0) and second.color is None and second.rotation_deg == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"kind": "box", "position": [0, 1]}, "objects[1].position must be 3 numbers"),
        ({"kind": "box", "position": [0, 1, "x"]}, "objects[1].position must be 3 numbers"),
        ({"kind": "box", "position": [0, 1, True]}, "objects[1].position must be 3 numbers"),
        ({"kind": "teapot", "position": [0, 0, 1]}, "objects[1].kind must be one of"),
        ({"position": [0, 0, 1]}, "objects[1].kind is missing"),
        ({"kind": "box", "position": [0, 0, 1], "scale": 0}, "objects[1].scale must have every entry in"),
        ({"kind": "box", "position": [0, 0, 1], "color": [2, 0, 0]}, "objects[1].color must have every entry in"),
        ({"kind": "box", "position": [0, 0, 1], "rotation": [0, 0]}, "objects[1].rotation must be 3 numbers"),
        ({"kind": "box", "position": [0, 0, 1], "mesh": "a.glb"}, "objects[1].mesh is only allowed with kind 'mesh'"),
        ({"kind": "mesh", "position": [0, 0, 1]}, "objects[1].mesh must name a .glb or .obj file"),
        ({"kind": "box", "position": [0, 0, 1], "colour": [1, 0, 0]}, "objects[1] has unknown field(s) ['colour']"),
        ({"kind": "box", "position": [0, 0, float("nan")]}, "objects[1].position must be 3 numbers"),
    ],
)
def test_parse_objects_errors_name_the_field(item, message):
    data = {"objects": [{"kind": "box", "position": [0, 0, 2]}, item]}
    with pytest.raises(ValueError) as info:
        parse_objects(data)
    assert message in str(info.value)


def test_objects_json_file_errors_and_relative_mesh_paths(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_objects_json(bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_objects_json(tmp_path / "missing.json")
    many = tmp_path / "many.json"
    many.write_text(json.dumps({"objects": [{"kind": "box", "position": [0, 0, 1]}] * 100}))
    with pytest.raises(ValueError, match="more than the limit"):
        load_objects_json(many)
    good = tmp_path / "objects.json"
    good.write_text(json.dumps({"objects": [{"kind": "mesh", "mesh": "chair.glb", "position": [0, 0, 2]}]}))
    assert load_objects_json(good)[0].mesh_path == str(tmp_path / "chair.glb")


# --- drawing and the hard depth test -------------------------------------------------------------------------------


def test_box_front_face_depth_and_sphere_outline_match_geometry():
    camera = _camera()
    box = render_object(build_object(ObjectSpec("box", (0.0, 0.0, 4.0))), camera)
    assert float(box.depth[HEIGHT // 2, WIDTH // 2]) == pytest.approx(3.5, abs=1e-4)  # the face at z = 4 - 0.5
    radius, distance = 0.5, 4.0
    sphere = render_object(build_object(ObjectSpec("sphere", (0.0, 0.0, distance))), camera)
    focal = float(camera.K[0, 0])
    # the silhouette of a sphere seen head-on is a disc of angular radius asin(r / d)
    disc_px = math.pi * (focal * math.tan(math.asin(radius / distance))) ** 2
    assert float(sphere.coverage.sum()) == pytest.approx(disc_px, rel=0.03)
    partial = (sphere.coverage > 0) & (sphere.coverage < 1)
    assert int(partial.sum()) > 0, "the outline is anti-aliased"
    assert float(sphere.depth[HEIGHT // 2, WIDTH // 2]) == pytest.approx(distance - radius, abs=2e-3)


def test_object_behind_a_wall_is_fully_hidden_and_in_front_fully_visible():
    wall = torch.full((HEIGHT, WIDTH), 3.0)
    frame = _frame(wall)
    hard = HardDepthOcclusion()
    behind = build_object(ObjectSpec("box", (0.0, 0.0, 4.0), color=RED))
    hidden = composite_frame(frame, behind, hard)
    assert torch.equal(hidden.rgb, frame.rgb) and torch.equal(hidden.depth, frame.depth)
    in_front = build_object(ObjectSpec("box", (0.0, 0.0, 2.0), color=RED))
    shown = composite_frame(frame, in_front, hard)
    render = render_object(in_front, frame.camera)
    full = render.coverage == 1
    assert int(full.sum()) > 100
    assert torch.allclose(shown.rgb[full], render.rgb[full])
    assert torch.allclose(shown.depth[full], render.depth[full])
    assert torch.equal(shown.rgb[~render.mask], frame.rgb[~render.mask])  # the rest of the view is untouched
    assert torch.equal(frame.rgb, torch.full_like(frame.rgb, 0.5)), "the input frame is not modified"


def test_a_wall_edge_splits_the_object_where_the_wall_is_nearer():
    depth = torch.full((HEIGHT, WIDTH), 10.0)
    depth[:, : WIDTH // 2] = 2.0  # a wall on the left half, far background on the right
    frame = _frame(depth)
    obj = build_object(ObjectSpec("box", (0.0, 0.0, 4.0), scale=(2.0, 1.0, 1.0), color=RED))
    render = render_object(obj, frame.camera)
    visibility = HardDepthOcclusion().visibility(frame.rgb, frame.depth, render)
    assert render.mask[:, : WIDTH // 2].any() and render.mask[:, WIDTH // 2 :].any()
    assert float(visibility[:, : WIDTH // 2].max()) == 0.0
    assert bool((visibility[:, WIDTH // 2 :][render.mask[:, WIDTH // 2 :]] == 1).all())


def test_unknown_scene_depth_shows_the_object_and_shapes_are_checked():
    render = render_object(build_object(ObjectSpec("sphere", (0.0, 0.0, 3.0))), _camera())
    unknown = torch.zeros(HEIGHT, WIDTH)
    assert torch.equal(
        HardDepthOcclusion().visibility(torch.zeros(HEIGHT, WIDTH, 3), unknown, render), render.mask.float()
    )
    with pytest.raises(ValueError, match="scene_depth"):
        HardDepthOcclusion().visibility(torch.zeros(HEIGHT, WIDTH, 3), torch.zeros(5, 5), render)
    with pytest.raises(ValueError, match="visibility"):
        composite_image(torch.zeros(HEIGHT, WIDTH, 3), None, render, torch.zeros(3, 3))


def test_rotation_yaw_turns_like_a_camera_and_mesh_axes_turn_up_to_minus_y(tmp_path):
    long_box = ObjectSpec("box", (0.0, 0.0, 0.0), rotation_deg=(90.0, 0.0, 0.0), scale=(1.0, 1.0, 3.0))
    extent = np.ptp(build_object(long_box).vertices, axis=0)
    assert extent == pytest.approx([3.0, 1.0, 1.0])  # its length (z) now lies along x after a 90° yaw
    import trimesh

    # a glTF file is +Y up: a pyramid with its apex up must end with the apex at the smallest y (up is -y)
    pyramid = trimesh.Trimesh(
        [[-1, 0, -1], [1, 0, -1], [1, 0, 1], [-1, 0, 1], [0, 2, 0]],
        [[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4], [0, 2, 1], [0, 3, 2]],
    )
    path = tmp_path / "pyramid.glb"
    path.write_bytes(pyramid.export(file_type="glb"))
    placed = build_object(ObjectSpec("mesh", (0.0, 0.0, 5.0), mesh_path=str(path)))
    apex = placed.vertices[np.argmax(np.linalg.norm(placed.vertices[:, [0, 2]] - [0.0, 5.0], axis=1) < 1e-6)]
    assert apex[1] == pytest.approx(placed.vertices[:, 1].min())
    assert placed.bounds.mean(axis=0) == pytest.approx([0.0, 0.0, 5.0])  # bounding-box centre at the position


def test_place_at_pixel_puts_the_object_on_the_clicked_surface():
    wall = torch.full((HEIGHT, WIDTH), 3.0)
    frame = _frame(wall)
    spec = ObjectSpec("sphere", (0.0, 0.0, 0.0), scale=(0.4, 0.4, 0.4))
    centred = place_at_pixel(frame, 40, 10, spec, anchor="center")
    render = render_object(build_object(centred), frame.camera)
    assert bool(render.mask[10, 40])
    assert float(render.depth[10, 40]) == pytest.approx(3.0 - 0.2, abs=0.01)  # its front is half a size nearer
    standing = place_at_pixel(frame, 40, 10, spec, anchor="bottom")
    assert standing.position[1] == pytest.approx(centred.position[1] - 0.2)  # raised (up is -y) to stand on it
    with pytest.raises(ValueError, match="outside"):
        place_at_pixel(frame, WIDTH, 0, spec)
    with pytest.raises(ValueError, match="unknown"):
        place_at_pixel(_frame(torch.zeros(HEIGHT, WIDTH)), 3, 3, spec)


def test_merged_objects_nearest_wins():
    near = build_object(ObjectSpec("box", (0.0, 0.0, 3.0), scale=(0.5, 0.5, 0.5), color=RED))
    far = build_object(ObjectSpec("box", (0.0, 0.0, 6.0), scale=(4.0, 4.0, 0.5), color=(0.1, 0.1, 0.9)))
    render = render_object(merge_objects([far, near]), _camera())
    assert float(render.depth[HEIGHT // 2, WIDTH // 2]) == pytest.approx(2.75, abs=1e-4)
    assert float(render.depth[HEIGHT // 2, 14]) == pytest.approx(5.75, abs=1e-3)
    assert float(render.depth[HEIGHT // 2, 2]) == 0.0


# --- splats ----------------------------------------------------------------------------------------------------


def test_object_splats_lie_on_the_surface_and_draw_the_object():
    sphere = build_object(ObjectSpec("sphere", (0.0, 0.0, 3.0), color=RED))
    splats = object_splats(sphere, num_points=4000, seed=1)
    assert len(splats) == 4000
    radii = (splats.means - torch.tensor([0.0, 0.0, 3.0])).norm(dim=1)
    assert float((radii - 0.5).abs().max()) < 2e-3  # on the (icosphere) surface
    assert torch.equal(splats.means, object_splats(sphere, num_points=4000, seed=1).means)  # same seed, same splats
    camera = make_cameras("single", (160, 120))[0]  # the sphere ~27 px across: splat edges spill ~1 px
    drawn = splats.render(camera, "torch", background=torch.zeros(3))
    mask = render_object(sphere, camera).coverage > 0.5
    covered = drawn.alpha > 0.5
    iou = float((mask & covered).sum()) / float((mask | covered).sum())
    assert iou > 0.85
    assert float((drawn.rgb[mask][:, 0] - drawn.rgb[mask][:, 2]).mean()) > 0.4  # red, as asked


def test_append_splats_pads_sh_and_keeps_the_scene_first():
    scene = Splats(
        torch.zeros(3, 3), torch.zeros(3, 3), torch.tensor([[1.0, 0, 0, 0]] * 3), torch.zeros(3),
        torch.zeros(3, 1, 3), torch.ones(3, 3, 3),
    )  # fmt: skip
    extra = object_splats(build_object(ObjectSpec("box", (0.0, 0.0, 3.0))), num_points=10)
    merged = append_splats(scene, extra)
    assert len(merged) == 13 and merged.shN.shape == (13, 3, 3)
    assert torch.equal(merged.shN[:3], scene.shN) and not merged.shN[3:].any()
    assert torch.equal(merged.means[3:], extra.means)


# --- mesh files ------------------------------------------------------------------------------------------------


def _glb(header: dict, binary: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    chunks = struct.pack("<II", len(text), 0x4E4F534A) + text
    if binary:
        chunks += struct.pack("<II", len(binary), 0x004E4942) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(chunks)) + chunks


def test_a_real_glb_and_obj_load(tmp_path):
    import trimesh

    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    glb, obj = tmp_path / "box.glb", tmp_path / "box.obj"
    glb.write_bytes(box.export(file_type="glb"))
    obj.write_text(box.export(file_type="obj"))
    for path in (glb, obj):
        mesh = load_mesh_file(path)
        assert len(mesh.faces) == 12
        assert np.ptp(mesh.vertices, axis=0) == pytest.approx([1.0, 2.0, 3.0])


def test_hostile_and_broken_mesh_files_get_clear_errors(tmp_path):
    big = tmp_path / "huge.glb"
    with open(big, "wb") as handle:  # a sparse 2 GiB file: refused from its size, never read
        handle.truncate(2 * 1024**3)
    with pytest.raises(MeshError, match="more than the limit"):
        load_mesh_file(big)

    bomb = tmp_path / "bomb.glb"  # declares a billion triangles in a few bytes
    bomb.write_bytes(
        _glb(
            {
                "asset": {"version": "2.0"},
                "accessors": [{"count": 3_000_000_000, "componentType": 5125, "type": "SCALAR"}, {"count": 3}],
                "meshes": [{"primitives": [{"attributes": {"POSITION": 1}, "indices": 0}]}],
            }
        )
    )
    with pytest.raises(MeshError, match="1000000000 triangles is more than the limit"):
        load_mesh_file(bomb)

    instanced = tmp_path / "instanced.glb"  # 1000 triangles drawn by 1000 nodes
    instanced.write_bytes(
        _glb(
            {
                "asset": {"version": "2.0"},
                "accessors": [{"count": 3000}, {"count": 3000}],
                "meshes": [{"primitives": [{"attributes": {"POSITION": 1}, "indices": 0}]}],
                "nodes": [{"mesh": 0}] * 1000,
            }
        )
    )
    with pytest.raises(MeshError, match="1000000 triangles"):
        load_mesh_file(instanced)

    external = tmp_path / "external.glb"
    external.write_bytes(_glb({"asset": {"version": "2.0"}, "buffers": [{"uri": "/etc/passwd", "byteLength": 10}]}))
    with pytest.raises(MeshError, match="outside file or URL"):
        load_mesh_file(external)

    draco = tmp_path / "draco.glb"
    draco.write_bytes(_glb({"asset": {"version": "2.0"}, "extensionsRequired": ["KHR_draco_mesh_compression"]}))
    with pytest.raises(MeshError, match="unsupported glTF extension"):
        load_mesh_file(draco)

    import trimesh

    good = trimesh.creation.box().export(file_type="glb")
    cases = {
        "truncated.glb": (good[: len(good) // 2], "truncated"),
        "garbage.glb": (b"glTF" + bytes(range(256)) * 4, "truncated|corrupt|version"),
        "notglb.glb": (b"PK\x03\x04 definitely a zip", "not a binary glTF"),
        "empty.obj": (b"", "empty"),
        "nofaces.obj": (b"v 0 0 0\nv 1 0 0\n", "no faces"),
        "binary.obj": (b"\x00\x01\x02" * 100, "not a text OBJ"),
        "badindex.obj": (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99\n", "could not be read|does not exist|no triangles"),
        "model.stl": (b"solid x\nendsolid x\n", "only .glb and .obj"),
        "scene.gltf": (b"{}", "only .glb and .obj"),
    }
    for name, (data, pattern) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(MeshError, match=pattern) as info:
            load_mesh_file(path)
        assert str(tmp_path) not in str(info.value), "errors name the file, never its folder"

    many = tmp_path / "many.obj"
    many.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n" + "f 1 2 3\n" * 50)
    with pytest.raises(MeshError, match="more than the limit of 20 triangles"):
        load_mesh_file(many, max_triangles=20)


def test_fly_through_frames_get_the_object_behind_nearer_scene():
    camera = _camera()
    image = torch.full((HEIGHT, WIDTH, 3), 0.5)
    depth = torch.full((HEIGHT, WIDTH), 10.0)
    depth[:, : WIDTH // 2] = 2.0  # e.g. the splats' rendered depth of a video frame
    obj = build_object(ObjectSpec("box", (0.0, 0.0, 4.0), scale=(2.0, 1.0, 1.0), color=RED))
    out = composite_view(image, depth, camera, obj, HardDepthOcclusion())
    mask = render_object(obj, camera).coverage == 1
    assert torch.equal(out[:, : WIDTH // 2], image[:, : WIDTH // 2])  # hidden behind the near half
    right = mask[:, WIDTH // 2 :]
    assert float(out[:, WIDTH // 2 :][right][:, 0].min()) > 0.6  # shown (red) in front of the far half
