"""A viewer-only copy of the splats that Gradio's splat viewer opens on the input photo.

Gradio 6.31's ``gr.Model3D`` draws splats with gsplat.js (``templates/frontend/assets/Canvas3DGS-*.js``) and
ignores ``camera_position`` for them. Read from that bundle:

* The camera (gsplat.js ``Camera``) has a fixed focal length of 1132 canvas pixels (``fx = fy = 1132``), the
  principal point at the canvas centre, near 0.1 and far 100; splats with camera z outside ~0.05…100 are dropped.
  Its projection is ``x_ndc = 2 fx x / (w z)``, ``y_ndc = -2 fy y / (h z)``: camera axes are OpenCV's (x right,
  y down, z forward), so a scene in our frame is drawn upright.
* The orbit controls (gsplat.js ``OrbitControls(camera, canvas)`` with default ``alpha = beta = 0.5`` rad,
  ``radius = 5``, target at the origin) place the camera at
  ``(r sin α cos β, -r sin β, -r cos α cos β) = (2.10, -2.40, -3.85)`` looking at the origin: yaw -0.5 rad
  and pitch -0.5 rad (from above), i.e. above and behind the origin, 5 units away.

A scene in WorldStitch's frame (view 0's camera at the origin looking along +z) therefore opens on the floor, seen
from behind the input camera. :func:`splats_for_viewer` moves a copy of the splats by a similarity (rotation,
translation and a uniform scale) so that the input camera lands on the viewer's camera, looking where it looks;
the scale puts the photo's median depth at the orbit radius, so dragging orbits around what the photo shows.
Only the viewer gets this copy: downloads keep the documented frame (``pipeline.export.AXES_COMMENT``).

The viewer's field of view is narrower than a photo's (1132 px focal on a ~480 px tall canvas is ~24° vertically),
so it opens on the middle of the photo; scrolling out widens the view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from core.cameras import Camera
from pipeline.splats import Splats

GSPLAT_FOCAL_PX = 1132.0
"""gsplat.js ``Camera`` default fx = fy, in canvas pixels (fixed: it does not follow the canvas size)."""
GSPLAT_ORBIT_ALPHA = 0.5
"""gsplat.js ``OrbitControls`` default azimuth (radians)."""
GSPLAT_ORBIT_BETA = 0.5
"""gsplat.js ``OrbitControls`` default elevation (radians)."""
GSPLAT_ORBIT_RADIUS = 5.0
"""gsplat.js ``OrbitControls`` default distance from the target (the world origin)."""
GSPLAT_NEAR = 0.1
GSPLAT_FAR = 100.0
"""Splats farther than this from the viewer's camera are not drawn."""
FAR_MARGIN = 0.8
"""Keep the scene's far points (98th percentile) within this fraction of the far plane, so orbiting keeps them."""
FAR_QUANTILE = 0.98
"""Which distance counts as "the scene's far points": stray splats beyond it may be clipped."""


@dataclass(frozen=True)
class ViewerPlacement:
    """The similarity ``y = scale * rotation @ x + translation`` from the scene frame to the viewer's world."""

    rotation: Tensor  # [3, 3]
    translation: Tensor  # [3]
    scale: float
    """Uniform scale: the photo's focus depth becomes :data:`GSPLAT_ORBIT_RADIUS`."""

    def apply(self, points: Tensor) -> Tensor:  # [N, 3] -> [N, 3]
        return self.scale * points @ self.rotation.T.to(points) + self.translation.to(points)


def gradio_viewer_cam_to_world(dtype: torch.dtype = torch.float64) -> Tensor:  # [4, 4]
    """Pose (camera-to-world, OpenCV camera axes) of the camera Gradio's splat viewer opens with."""
    alpha, beta, radius = GSPLAT_ORBIT_ALPHA, GSPLAT_ORBIT_BETA, GSPLAT_ORBIT_RADIUS
    position = torch.tensor(
        [
            radius * math.sin(alpha) * math.cos(beta),
            -radius * math.sin(beta),
            -radius * math.cos(alpha) * math.cos(beta),
        ],
        dtype=dtype,
    )
    forward = -position / position.norm()  # looks at the origin
    pitch = math.asin(-float(forward[1]))  # gsplat.js: Quaternion.FromEuler(asin(-t.y), atan2(t.x, t.z), 0)
    yaw = math.atan2(float(forward[0]), float(forward[2]))
    rot_yaw = torch.tensor(
        [[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]], dtype=dtype
    )
    rot_pitch = torch.tensor(
        [[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]], dtype=dtype
    )
    pose = torch.eye(4, dtype=dtype)
    pose[:3, :3] = rot_yaw @ rot_pitch
    pose[:3, 3] = position
    return pose


def gradio_viewer_camera(width: int, height: int) -> Camera:
    """The viewer's opening camera for a canvas of ``width`` × ``height`` CSS pixels, as a :class:`Camera`."""
    K = torch.tensor(
        [[GSPLAT_FOCAL_PX, 0, width / 2], [0, GSPLAT_FOCAL_PX, height / 2], [0, 0, 1]], dtype=torch.float32
    )
    pose = gradio_viewer_cam_to_world()
    world_to_cam = torch.eye(4, dtype=torch.float64)
    world_to_cam[:3, :3] = pose[:3, :3].T
    world_to_cam[:3, 3] = -pose[:3, :3].T @ pose[:3, 3]
    return Camera(K, world_to_cam.float(), height, width)


def focus_depth(means: Tensor, camera: Camera) -> float:  # means: [N, 3]
    """Median z-depth of the points that project inside ``camera``'s image (the photo's typical depth).

    Raises:
        ValueError: no point lies in front of the camera inside its image.
    """
    cam = means.double() @ camera.world_to_cam[:3, :3].double().T + camera.world_to_cam[:3, 3].double()
    K = camera.K.double()
    z = cam[:, 2]
    front = z > 1e-6
    u = K[0, 0] * cam[:, 0] / z.clamp_min(1e-6) + K[0, 2]
    v = K[1, 1] * cam[:, 1] / z.clamp_min(1e-6) + K[1, 2]
    inside = front & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    if not bool(inside.any()):
        raise ValueError("no splat lies in the input camera's view: cannot place the scene for the viewer")
    return float(z[inside].median())


def viewer_placement(means: Tensor, camera: Camera) -> ViewerPlacement:  # means: [N, 3]
    """The similarity that puts ``camera`` where Gradio's splat viewer opens, scaled to the scene's depth.

    Args:
        means: splat centres in the scene frame (used for the scale only).
        camera: the input photo's camera (view 0).

    Returns:
        A placement whose ``apply`` maps scene points into the viewer's world; seen from
        :func:`gradio_viewer_camera`, a point appears where ``camera`` sees it (same direction, depth × scale).
    """
    # scale: the photo's median depth lands on the orbit target's distance, within the far plane
    depth = focus_depth(means, camera)
    scale = GSPLAT_ORBIT_RADIUS / depth
    cam = means.double() @ camera.world_to_cam[:3, :3].double().T + camera.world_to_cam[:3, 3].double()
    far = float(torch.quantile(cam.norm(dim=1)[: 1 << 24], FAR_QUANTILE))  # quantile() caps its input at 2^24
    if far * scale > FAR_MARGIN * GSPLAT_FAR:
        scale = FAR_MARGIN * GSPLAT_FAR / far
    # y = P + R_v (s x_cam) with x_cam = R0 x + t0  =>  rotation R_v R0, translation s R_v t0 + P
    viewer = gradio_viewer_cam_to_world()
    rot_v, position = viewer[:3, :3], viewer[:3, 3]
    rot0, t0 = camera.world_to_cam[:3, :3].double(), camera.world_to_cam[:3, 3].double()
    return ViewerPlacement(rot_v @ rot0, scale * rot_v @ t0 + position, scale)


def splats_for_viewer(splats: Splats, camera: Camera) -> Splats:
    """A copy of ``splats`` moved so Gradio's splat viewer opens looking through ``camera`` (the input photo's).

    Positions and orientations move rigidly, sizes scale by the placement's scale (log-scales shift by
    ``log(scale)``), colours and opacities are unchanged. View-dependent colour (higher SH bands) is dropped:
    Gradio's viewer ignores it, and this copy is for that viewer only.

    Args:
        splats: the fitted splats in the scene frame (as downloaded).
        camera: view 0's camera (``result.frames[0].camera``).

    Returns:
        New :class:`Splats` (degree-0 colour) for ``gr.Model3D``; ``splats`` is not modified.

    Raises:
        ValueError: no splat is visible from ``camera``.
    """
    placement = viewer_placement(splats.means.detach(), camera)
    means = placement.apply(splats.means.detach().double()).to(splats.means.dtype)
    scales = splats.scales.detach() + math.log(placement.scale)
    rotation = _quat_from_matrix(placement.rotation).to(splats.quats)
    quats = _quat_multiply(rotation.expand_as(splats.quats), splats.quats.detach())
    no_sh = splats.shN.detach()[:, :0]  # [N, 0, 3]
    return Splats(means, scales, quats, splats.opacities.detach().clone(), splats.sh0.detach().clone(), no_sh)


def _quat_multiply(a: Tensor, b: Tensor) -> Tensor:  # [..., 4] wxyz, [..., 4] wxyz -> [..., 4]
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def _quat_from_matrix(rotation: Tensor) -> Tensor:  # [3, 3] -> [4] wxyz
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(rotation.double().cpu().numpy()).as_quat()
    return torch.tensor([w, x, y, z], dtype=torch.float64)
