"""Geometry metrics for depth completion (the Invisible Stitch protocol and the grow loop's seams).

All take a completed depth of view B and a :class:`~evaluation.pairs.ViewPair` (or its parts). Depth is z-depth,
0 = no ground truth.

* MAE / AbsRel on the *extrapolated* pixels (unknown to the completer, with ground truth) and on the *seam band*
  (extrapolated pixels within :data:`SEAM_PX` of the known region);
* **seam step**: at every boundary between a known pixel and an extrapolated neighbour where the true surface is
  continuous, ``|(new - old) - (true new - true old)| / true old`` — the step the completion makes at the seam
  beyond the surface's own change; a completion that does not continue the known depth shows a step there;
* **scale consistency** (SC-Depth): A's depth lifted, moved into B and compared with B's completed depth at the same
  pixel, ``|d_a→b - d_b| / (d_a→b + d_b)``, on pixels B sees of A that were *not* given to the completer;
* :func:`ring_seam_errors`: per view of a grown ring, the error of the new pixels in the seam band.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from core.cameras import Camera
from core.geometry import project, unproject
from core.masks import dilate

SEAM_PX = 8
"""Width of the seam band: extrapolated pixels this close to the known region."""

CONTINUOUS_REL = 0.02
"""A boundary pair is scored for seam step only where the true depth changes by less than 2 % across it (no real
edge there)."""

VISIBLE_REL_TOL = 0.02
"""A point of A counts as seen in B when its depth in B is within 2 % of B's true depth at that pixel."""


@dataclass
class Tally:
    """Running sums of per-pixel errors, per metric name."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, values: Tensor) -> None:  # [N]
        self.sums[key] = self.sums.get(key, 0.0) + float(values.double().sum())
        self.counts[key] = self.counts.get(key, 0) + int(values.numel())

    def mean(self, key: str) -> float:
        return self.sums.get(key, 0.0) / self.counts[key] if self.counts.get(key) else float("nan")


def region_errors(pred: Tensor, truth: Tensor, region: Tensor) -> tuple[Tensor, Tensor]:  # -> [M], [M]
    """Absolute and relative errors of ``pred`` on ``region`` pixels with ground truth."""
    mask = region & (truth > 0)
    error = (pred[mask] - truth[mask]).abs()
    return error, error / truth[mask]


def seam_band(known: Tensor, extrapolated: Tensor, px: int = SEAM_PX) -> Tensor:  # [H, W] bool
    """Extrapolated pixels within ``px`` of the known region."""
    return extrapolated & dilate(known, px)


def seam_steps(
    pred: Tensor,  # [H, W] completed depth
    known_depth: Tensor,  # [H, W]
    known: Tensor,  # [H, W] bool
    truth: Tensor,  # [H, W]
) -> Tensor:  # [M] |(new - old) - (true new - true old)| / true old on continuous true surfaces
    """Relative depth step, beyond the true one, between each known pixel and its extrapolated 4-neighbours."""
    steps = []
    for dim in (0, 1):
        for a, b in ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))):
            index_a = (a, slice(None)) if dim == 0 else (slice(None), a)
            index_b = (b, slice(None)) if dim == 0 else (slice(None), b)
            old_known, new_unknown = known[index_a], ~known[index_b]
            true_old, true_new = truth[index_a], truth[index_b]
            continuous = (true_old > 0) & (true_new > 0) & ((true_new - true_old).abs() < CONTINUOUS_REL * true_old)
            pair = old_known & new_unknown & continuous
            step = pred[index_b][pair] - known_depth[index_a][pair]
            steps.append((step - (true_new[pair] - true_old[pair])).abs() / true_old[pair].clamp_min(1e-9))
    return torch.cat(steps)


def scale_consistency(
    depth_a: Tensor,  # [H, W] A's depth as the method would have it (the given truth for completers)
    camera_a: Camera,
    true_depth_a: Tensor,  # [H, W]
    depth_b: Tensor,  # [H, W] the method's depth of B
    camera_b: Camera,
    true_depth_b: Tensor,  # [H, W]
    region_b: Tensor,  # [H, W] bool, pixels of B to score
) -> Tensor:  # [M] per-point |d_a→b − d_b| / (d_a→b + d_b)
    """SC-Depth's geometry consistency between two views with known relative pose (see module docstring)."""
    height, width = true_depth_b.shape
    valid = (true_depth_a > 0) & (depth_a > 0)
    true_points = unproject(true_depth_a, camera_a.K, camera_a.cam_to_world)[valid]
    pred_points = unproject(depth_a, camera_a.K, camera_a.cam_to_world)[valid]
    uv, z_true = project(true_points, camera_b.K, camera_b.world_to_cam)
    _, z_pred = project(pred_points, camera_b.K, camera_b.world_to_cam)
    col, row = uv[:, 0].floor().long(), uv[:, 1].floor().long()
    inside = (z_true > 0) & (col >= 0) & (col < width) & (row >= 0) & (row < height) & (z_pred > 0)
    col, row, z_true, z_pred = col[inside], row[inside], z_true[inside], z_pred[inside]
    truth_b = true_depth_b[row, col]
    visible = (truth_b > 0) & ((z_true - truth_b).abs() <= VISIBLE_REL_TOL * truth_b) & region_b[row, col]
    d_ab, d_b = z_pred[visible], depth_b[row[visible], col[visible]]
    return (d_ab - d_b).abs() / (d_ab + d_b).clamp_min(1e-9)


def score_pair(tally: Tally, pred: Tensor, pair, depth_a: Tensor | None = None) -> None:
    """Add one completed view's errors to ``tally`` (keys ``mae_ext``, ``absrel_ext``, ``mae_seam``,
    ``absrel_seam``, ``seam_step``, ``sc``).

    Args:
        tally: where to add.
        pred: the completed depth of view B.  # [H, W]
        pair: the :class:`~evaluation.pairs.ViewPair`.
        depth_a: the method's depth of A for scale consistency (None = A's truth, as a completer is given).
    """
    truth, known = pair.target_depth, pair.known_mask
    extrapolated = ~known & (truth > 0)
    for key, region in (("ext", extrapolated), ("seam", seam_band(known, extrapolated))):
        error, relative = region_errors(pred, truth, region)
        tally.add(f"mae_{key}", error)
        tally.add(f"absrel_{key}", relative)
    tally.add("seam_step", seam_steps(pred, pair.known_depth, known, truth))
    if pair.camera_a is not pair.camera:  # a real second view (TUM pairs are one frame)
        a = pair.depth_a if depth_a is None else depth_a
        tally.add("sc", scale_consistency(a, pair.camera_a, pair.depth_a, pred, pair.camera, truth, ~known))


def ring_seam_errors(frames, render_truth, px: int = SEAM_PX) -> list[tuple[float, float]]:
    """Per grown view of a ring: (median relative error of new pixels in the seam band, of all new pixels).

    Args:
        frames: the grown views (``core.types.Frame``), view 0 first.
        render_truth: ``camera -> true z-depth [H, W]``.
        px: seam band width.
    """
    out = []
    for frame in frames[1:]:
        truth = render_truth(frame.camera)
        new = frame.fill_mask & (truth > 0)
        relative = (frame.depth - truth).abs() / truth.clamp_min(1e-9)
        band = new & dilate(~frame.fill_mask, px)
        out.append((float(relative[band].median()), float(relative[new].median())))
    return out
