"""Closing a 360° ring: spread the accumulated depth error over the ring instead of leaving it in the last views.

On a ring path (every camera at one centre, yaws covering the full circle) the grow loop extends the scene in two
chains, one turning right from view 0 and one turning left, and each new view continues the geometry of the
views before it. An estimator that is off in a smooth way makes each chain drift a little per view (measured: a
10 % smooth warp made one chain drift by ~4.5 % per view, 25 % at the ring's end); where the chains meet, in the
last views, their geometries disagree by the accumulated *closure discrepancy*.

:func:`measure_closure` measures the drift of every view against the metric estimator: the fused cloud rendered
into the view, divided by one estimate of it, in log depth (``rho_k``; the estimator's global scale cancels in
``rho_k - rho_0``). The correction is a log-scale function of the azimuth around the ring centre
(:class:`RingClosure`): zero over view 0, ``rho_0 - rho_k`` at view ``k``'s azimuth, linear in between, so it is
continuous and no new seam appears. :func:`apply_closure` scales every point along its ray from the centre by
``exp(correction(azimuth))`` and every later frame's depth likewise: identical to scaling each view's depth
before lifting it. Per-view scales are used only when the estimator follows the cloud's shape in every view
(:data:`MAX_SCALE_SPREAD`); otherwise the ring is left as grown.

Conventions: OpenCV axes, world up = -y; azimuth = ``atan2(x, z)`` in degrees (yaw, turning right), measured
from view 0's forward direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from core.cameras import Camera
from core.components import DepthEstimator, PointRenderer
from core.geometry import ray_directions
from core.types import Frame, PointCloud

CENTRE_TOLERANCE = 1e-4
"""Cameras whose centres differ by less than this (scene units) share the ring centre."""

MAX_RING_PITCH_DEG = 10.0
"""A ring is level: every view's pitch is within 10°."""

MAX_SCALE_SPREAD = 0.1
"""The per-view scales are trusted only when, in every view, the estimate's log depth follows the cloud's to within
a median absolute deviation of 0.1 (~10 %): an estimator right up to a smooth error of that size (a network on
its kind of scene) measures drift; a crude prior (a ground plane and a backdrop indoors, 20-50 % off in shape)
would inject its own per-view scale errors instead, and is not used (measured on three held-out procedural rings
with view 0's true depth given: trusting the offline geometric prior took one ring's last seam from 23 % to 48 %;
its largest spread there is 0.16-0.29, a 10 % smooth warp's 0.05-0.08)."""

MIN_VIEW_PIXELS = 32
"""A view's scale is measured only when the cloud covers at least this many of its pixels."""


@dataclass(frozen=True)
class RingClosure:
    """A periodic, piecewise-linear log-scale correction over the azimuth around the ring centre.

    Attributes:
        centre: the ring centre (world).  # [3]
        yaw0_deg: view 0's azimuth; ``knots_deg`` are measured from it, in [0, 360).
        knots_deg: azimuths of the knots, increasing.  # [K]
        log_scale: the correction at the knots (0 at the first and last: view 0's span is never changed).  # [K]
        discrepancy: the drift measured at the closing view (log scale relative to view 0), before correction.
    """

    centre: Tensor  # [3]
    yaw0_deg: float
    knots_deg: Tensor  # [K]
    log_scale: Tensor  # [K]
    discrepancy: float

    def correction(self, azimuth_deg: Tensor) -> Tensor:  # [...] -> [...] log scale
        """The log-scale correction at world azimuths (degrees)."""
        phi = (azimuth_deg - self.yaw0_deg).remainder(360.0)
        knots, values = self.knots_deg.to(phi), self.log_scale.to(phi)
        index = torch.searchsorted(knots, phi.contiguous(), right=True).clamp(1, knots.numel() - 1)
        lo, hi = knots[index - 1], knots[index]
        t = ((phi - lo) / (hi - lo).clamp_min(1e-9)).clamp(0, 1)
        inside = (phi >= knots[0]) & (phi <= knots[-1])
        return torch.where(inside, values[index - 1] + t * (values[index] - values[index - 1]), torch.zeros_like(phi))


def _yaw_pitch_deg(camera: Camera) -> tuple[float, float]:
    forward = camera.world_to_cam[2, :3].double()  # the camera's z axis in world coordinates
    yaw = math.degrees(math.atan2(float(forward[0]), float(forward[2])))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, -float(forward[1])))))
    return yaw, pitch


def ring_centre(cameras: list[Camera]) -> Tensor | None:  # -> [3] or None
    """The shared centre when the cameras form a level 360° ring, else None.

    A ring: at least 4 views, all centres within :data:`CENTRE_TOLERANCE`, pitches within
    :data:`MAX_RING_PITCH_DEG`, and no gap between neighbouring yaws wider than a view's horizontal FoV.
    """
    if len(cameras) < 4:
        return None
    centre = cameras[0].center.double()
    if any(float((c.center.double() - centre).norm()) > CENTRE_TOLERANCE for c in cameras):
        return None
    angles = [_yaw_pitch_deg(c) for c in cameras]
    if any(abs(pitch) > MAX_RING_PITCH_DEG for _, pitch in angles):
        return None
    yaws = sorted(yaw % 360.0 for yaw, _ in angles)
    gaps = [b - a for a, b in zip(yaws, yaws[1:])] + [yaws[0] + 360.0 - yaws[-1]]
    if max(gaps) > min(c.hfov_deg for c in cameras):
        return None
    return centre.float()


def azimuth_deg(points: Tensor, centre: Tensor) -> Tensor:  # [..., 3], [3] -> [...]
    """Azimuth (yaw, degrees) of world points around ``centre``."""
    offset = points - centre.to(points)
    return torch.rad2deg(torch.atan2(offset[..., 0], offset[..., 2]))


def _signed(angle: float) -> float:
    return (angle + 180.0) % 360.0 - 180.0


def measure_closure(
    frames: list[Frame],
    cloud: PointCloud,
    renderer: PointRenderer,
    estimator: DepthEstimator,
    centre: Tensor,  # [3]
) -> RingClosure | None:
    """The ring's scale correction, or None when it cannot be measured (a non-metric estimator, empty views).

    For every view the fused cloud is rendered into it and compared, in log depth, with a metric estimate of the
    view: ``rho_k = median(log cloud depth - log estimate)`` is the scale the ring's geometry has in that direction
    relative to the estimator. An estimator's scale error is shared by the views of one scene (one network, one
    kind of image), while the loop's error accumulates view after view, so ``rho_k - rho_0`` is the drift the
    chain collected on its way to view ``k`` (and, at the closing view, the closure discrepancy of the two
    chains). The correction ``rho_0 - rho_k`` at each view's azimuth, interpolated linearly between views and zero
    over view 0, spreads it over the ring.

    Args:
        frames: the grown views in path order; view 0 anchors the ring.
        cloud: the fused cloud.
        renderer: renders the cloud into each view.
        estimator: a metric depth estimator (its global scale cancels; a relative estimate's shift would not).
        centre: the ring centre.

    Returns:
        The correction, or None (also when the estimate's shape disagrees with the cloud by more than
        :data:`MAX_SCALE_SPREAD` in some view).
    """
    yaw0 = _yaw_pitch_deg(frames[0].camera)[0]
    rho, spread = [], []
    for frame in frames:
        estimate = estimator.estimate(frame.rgb, frame.camera)
        if estimate.kind != "metric":
            return None
        values = estimate.values.to(frame.depth)
        seen = renderer.render(cloud.points, cloud.colors, frame.camera, cloud.radii)
        use = seen.known_mask & (seen.depth > 0) & torch.isfinite(values) & (values > 0)
        if int(use.sum()) < MIN_VIEW_PIXELS:
            return None
        log_ratio = seen.depth[use].log() - values[use].log()
        rho.append(float(log_ratio.median()))
        spread.append(float((log_ratio - rho[-1]).abs().median()))
        if spread[-1] > MAX_SCALE_SPREAD:  # the estimator's shape disagrees with the scene: its scale is no reference
            return None  # (known at the first such view: the offline prior stops here, at view 0, not after 13 renders)
    half0 = frames[0].camera.hfov_deg / 2
    knots = {half0: 0.0, 360.0 - half0: 0.0}
    for frame, value in zip(frames[1:], rho[1:]):
        phi = (_yaw_pitch_deg(frame.camera)[0] - yaw0) % 360.0
        if half0 < phi < 360.0 - half0:
            knots[phi] = rho[0] - value
    order = sorted(knots)
    closing = (_yaw_pitch_deg(frames[-1].camera)[0] - yaw0) % 360.0
    return RingClosure(
        centre.float(),
        yaw0,
        torch.tensor(order, dtype=torch.float64),
        torch.tensor([knots[k] for k in order], dtype=torch.float64),
        rho[0] - rho[-1] if half0 < closing < 360.0 - half0 else 0.0,
    )


def apply_closure(
    frames: list[Frame], cloud: PointCloud, closure: RingClosure
) -> tuple[list[Frame], PointCloud]:  # -> corrected frames, corrected cloud
    """Scale every point and every later frame's depth along its ray from the ring centre by the correction.

    View 0's depth (a depth map a user may have given) is never changed: the correction is zero over its span.

    Returns:
        New frames and a new cloud (the inputs are not modified).
    """
    factor = closure.correction(azimuth_deg(cloud.points, closure.centre).double()).exp().to(cloud.points)  # [N]
    centre = closure.centre.to(cloud.points)
    points = centre + (cloud.points - centre) * factor[:, None]
    corrected = PointCloud(points, cloud.colors, cloud.radii * factor, cloud.source_view)
    out = [frames[0]]
    for frame in frames[1:]:
        camera = frame.camera
        rays = ray_directions(camera.height, camera.width, camera.K) @ camera.cam_to_world[:3, :3].T  # [H, W, 3]
        pixel_factor = closure.correction(torch.rad2deg(torch.atan2(rays[..., 0], rays[..., 2])).double()).exp()
        out.append(replace(frame, depth=frame.depth * pixel_factor.to(frame.depth)))
    return out, corrected
