"""Backends that need no downloaded weights: PatchMatch outpainting and geometric-prior depth.

They make the whole pipeline runnable offline (tests, CPU-only machines, a first look before models download)
and are honest baselines: PatchMatch copies texture from the photo into the unknown region, the geometric prior
puts the photo on a ground plane and a far backdrop.

* :class:`PatchMatchOutpainter` — ``Outpainter`` via ``pypatchmatch`` (Barnes et al. 2009), seeded and
  deterministic. Falls back to OpenCV's Telea inpainting (with a logged warning) where the native library does not
  load.
* :class:`GeometricPriorDepth` — ``DepthEstimator``: metric z-depth of a ground plane ``camera_height`` below the
  camera plus a far cylinder with a dome above it.
* :class:`FileDepth` — ``DepthEstimator`` that trusts a user's depth file where it is valid and fills the rest
  from another estimator, scaled to agree with the file.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from core.cameras import Camera
from core.components import Cancelled, DepthEstimate, DepthEstimator, OutpaintRequest
from core.geometry import ray_directions
from core.images import DepthFile, resize_depth, to_uint8
from core.threads import available_cpus
from models.patchmatch_worker import PatchMatchWorker, WorkerError, inpaint_uint8, load_patchmatch

logger = logging.getLogger(__name__)

# --- PatchMatch outpainting ---------------------------------------------------------------------------------------

DEFAULT_PATCH_SIZE = 3
"""Patch radius in pixels (patches of 7x7). pypatchmatch's examples use 3; 5 follows larger structures but takes
~2x as long (0.25 s vs 0.4 s for a half-filled 128² image on one core)."""

DEFAULT_SOLVE_MAX_SIDE: int | None = None
"""Longest side PatchMatch solves at (the filled hole is upsampled back; known pixels stay untouched); ``None`` =
full resolution, the default. Measured on the shared 2 cores: at 256 a 45 %-hole 512x384 view takes 0.34 s instead
of 1.16 s (3.4x; offline 360 end to end 33.9 s -> 23.7 s), but the landscape example's held-out PSNR
(``scripts/bench_splats.py --section quality``) drops 1.2 dB (38.4 -> 37.2; 384 px: 38.1; full resolution with
another seed: 38.6), beyond the 0.3 dB a speed change may cost, so reduced solving is opt-in."""

TELEA_RADIUS = 5
"""Neighbourhood radius (pixels) of OpenCV's Telea fallback: enough to smooth across quantisation steps, small
enough to keep edges near the hole's border."""

MAX_PARALLEL_VIEWS = 2
"""Views PatchMatch fills at once (this process and one worker process, see :mod:`models.patchmatch_worker`), when
the process may use at least two CPUs. A third lane would need a third core, and the machines this profile is for
(a 2-core Space, a laptop) rarely give one."""


class PatchMatchOutpainter:
    """Fill the unknown part of a view by copying patches from the known part (PatchMatch).

    The prompt is ignored: PatchMatch only continues the textures it sees. Output equals the input bit for bit
    outside ``fill_mask``; inside it is quantised to 8 bits (PatchMatch works on uint8). The same image, mask and
    seed give the same bytes (pypatchmatch's random search is seeded before every call, under a lock).

    There is deliberately no "prefill" option: pypatchmatch ignores the values under the hole (verified by a test),
    so whatever the renderer left there — black, noise or a blurred guess — cannot bias the result.

    Args:
        patch_size: patch radius in pixels; patches span ``(2 * patch_size + 1)²`` pixels.
        use_patchmatch: ``False`` forces the OpenCV Telea fallback (for tests and comparisons).
        solve_max_side: PatchMatch solves at most at this longer side and the hole is upsampled (bilinear) from
            there; ``None`` solves at full resolution. See :data:`DEFAULT_SOLVE_MAX_SIDE`.
        parallel_views: views :meth:`outpaint_many` fills at once (1 or 2); ``None`` = 2 when the process may use
            two CPUs (:data:`MAX_PARALLEL_VIEWS`), else 1. The second runs in a worker process.
    """

    def __init__(
        self,
        patch_size: int = DEFAULT_PATCH_SIZE,
        *,
        use_patchmatch: bool = True,
        solve_max_side: int | None = DEFAULT_SOLVE_MAX_SIDE,
        parallel_views: int | None = None,
    ):
        if not isinstance(patch_size, int) or not 1 <= patch_size <= 32:
            raise ValueError(f"patch_size must be an integer in [1, 32], got {patch_size!r}")
        if solve_max_side is not None and (not isinstance(solve_max_side, int) or solve_max_side < 16):
            raise ValueError(f"solve_max_side must be None or an integer >= 16, got {solve_max_side!r}")
        if parallel_views is not None and parallel_views not in range(1, MAX_PARALLEL_VIEWS + 1):
            raise ValueError(f"parallel_views must be None or 1..{MAX_PARALLEL_VIEWS}, got {parallel_views!r}")
        self.patch_size = patch_size
        self.solve_max_side = solve_max_side
        self._patch_match = load_patchmatch() if use_patchmatch else None
        if use_patchmatch and self._patch_match is None:
            logger.warning(
                "pypatchmatch's native library is unavailable; PatchMatchOutpainter falls back to OpenCV's Telea "
                "inpainting, which smears colours into large holes instead of continuing textures"
            )
        lanes = min(MAX_PARALLEL_VIEWS, available_cpus()) if parallel_views is None else parallel_views
        self.parallel_views = lanes if self._patch_match is not None else 1
        self._worker = PatchMatchWorker()
        self._worker_lock = threading.Lock()  # one outpaint_many at a time uses the worker

    @property
    def backend(self) -> str:
        """``"patchmatch"`` or ``"telea"`` (the fallback)."""
        return "patchmatch" if self._patch_match is not None else "telea"

    def outpaint(
        self,
        image: Tensor,  # [H, W, 3] in [0, 1]
        fill_mask: Tensor,  # [H, W] bool, True = generate here
        prompt: str = "",
        negative_prompt: str = "",
        seed: int = 0,
        cancel: threading.Event | None = None,
        *,
        camera: Camera | None = None,  # which view is being filled: unused (see core.components.Outpainter)
        view: int | None = None,
        known_mask: Tensor | None = None,  # [H, W] bool: unused, PatchMatch repaints all of fill_mask
    ) -> Tensor:  # [H, W, 3], equal to ``image`` outside ``fill_mask``
        """Fill ``fill_mask`` from the rest of ``image``. ``prompt`` and ``negative_prompt`` are ignored.

        Raises:
            Cancelled: ``cancel`` was set before the fill started.
            ValueError: shapes disagree, or nothing is known to copy from.
        """
        if cancel is not None and cancel.is_set():
            raise Cancelled("outpainting cancelled")
        if not self._check(image, fill_mask):
            return image.clone()
        pixels, hole = _as_uint8(image, fill_mask)
        if self._patch_match is not None:
            filled = self._fill(pixels, hole, seed)
        else:
            import cv2

            filled = cv2.inpaint(pixels, hole, TELEA_RADIUS, cv2.INPAINT_TELEA)
        return _compose(image, fill_mask, filled)

    def outpaint_many(
        self, requests: Sequence[OutpaintRequest], cancel: threading.Event | None = None
    ) -> list[Tensor]:  # one [H, W, 3] per request
        """Fill several views, two at a time (one here, one in the worker process); the same bytes as
        :meth:`outpaint` on each request. A worker that fails is logged and its view filled here instead.

        Raises:
            Cancelled: ``cancel`` was set before the fills started.
            ValueError: a request's shapes disagree, or nothing is known to copy from.
        """
        if cancel is not None and cancel.is_set():
            raise Cancelled("outpainting cancelled")
        results: list[Tensor | None] = [None] * len(requests)
        work = []  # (position, pixels, hole, seed) of the requests that have a hole
        for position, request in enumerate(requests):
            if self._check(request.image, request.fill_mask):
                work.append((position, *_as_uint8(request.image, request.fill_mask), request.seed))
            else:
                results[position] = request.image.clone()
        if self.parallel_views < 2 or len(work) < 2:
            for position, *_ in work:
                request = requests[position]
                results[position] = self.outpaint(request.image, request.fill_mask, seed=request.seed)
            return results
        with self._worker_lock:
            for first in range(0, len(work), 2):
                pair = work[first : first + 2]  # one fill here, the other (if any) in the worker meanwhile
                sent = len(pair) == 2 and self._send(*pair[1])
                filled = [self._fill(*pair[0][1:])]
                if len(pair) == 2:
                    filled.append(self._receive(sent, *pair[1][1:]))
                for (position, *_), pixels in zip(pair, filled):
                    results[position] = _compose(requests[position].image, requests[position].fill_mask, pixels)
        return results

    def _fill(self, pixels: np.ndarray, hole: np.ndarray, seed: int) -> np.ndarray:  # [H, W, 3] uint8, here
        return inpaint_uint8(pixels, hole, seed, self.patch_size, self.solve_max_side)

    def _send(self, position: int, pixels: np.ndarray, hole: np.ndarray, seed: int) -> bool:
        """Hand one fill to the worker; False when it could not take it (the fill then runs here)."""
        try:
            self._worker.send(pixels, hole, seed, self.patch_size, self.solve_max_side)
        except WorkerError as error:
            logger.warning("%s; filling view %d in this process instead", error, position)
            return False
        return True

    def _receive(self, sent: bool, pixels: np.ndarray, hole: np.ndarray, seed: int) -> np.ndarray:
        if sent:
            try:
                return self._worker.receive()
            except WorkerError as error:
                logger.warning("%s; filling that view in this process instead", error)
        return self._fill(pixels, hole, seed)

    @staticmethod
    def _check(image: Tensor, fill_mask: Tensor) -> bool:
        """Validate one request; False when there is nothing to fill."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be [H, W, 3], got {list(image.shape)}")
        if fill_mask.shape != image.shape[:2] or fill_mask.dtype != torch.bool:
            raise ValueError(
                f"fill_mask must be a bool [H, W] matching the image {list(image.shape[:2])}, "
                f"got {fill_mask.dtype} {list(fill_mask.shape)}"
            )
        if not bool(fill_mask.any()):
            return False
        if bool(fill_mask.all()):
            raise ValueError("fill_mask covers the whole image: there is nothing to copy patches from")
        return True


def _as_uint8(image: Tensor, fill_mask: Tensor) -> tuple[np.ndarray, np.ndarray]:  # -> [H, W, 3], [H, W] uint8
    """The image and the hole (non-zero = fill) as PatchMatch takes them."""
    return to_uint8(image), fill_mask.detach().cpu().numpy().astype(np.uint8) * 255


def _compose(image: Tensor, fill_mask: Tensor, filled: np.ndarray) -> Tensor:  # [H, W, 3] uint8 -> [H, W, 3]
    """``filled`` inside the mask, ``image`` bit for bit outside."""
    result = torch.from_numpy(np.ascontiguousarray(filled)).to(device=image.device, dtype=image.dtype) / 255.0
    return torch.where(fill_mask[..., None].to(image.device), result, image)


# --- geometric prior depth ----------------------------------------------------------------------------------------

DEFAULT_CAMERA_HEIGHT = 1.6
"""Metres above the ground: a photo taken standing, at eye height."""

DEFAULT_FAR_DISTANCE = 20.0
"""Metres to the backdrop (the far cylinder) and the largest ground distance. 20 m is the range of an indoor room
or a street and Depth Anything V2 Metric-Indoor's maximum; beyond it, parallax between the ring's views (which
rotate in place) is negligible anyway, and a nearer backdrop keeps the splat scene compact."""

DEFAULT_DOME_ELEVATION_DEG = 60.0
"""Above this elevation the far cylinder turns into a dome: the backdrop distance stops growing, so looking
straight up sees a ceiling at ``far_distance / cos(60°) = 2 * far_distance`` instead of infinity."""


class GeometricPriorDepth:
    """Metric z-depth from scene geometry alone: a ground plane and a far backdrop.

    Every pixel's ray is intersected with

    * the ground, a plane ``camera_height`` below the camera (perpendicular to world up, -y), for rays pointing
      below the horizon, and
    * the backdrop, a vertical cylinder of radius ``far_distance`` around the camera, capped by a dome above
      ``dome_elevation_deg``,

    and the nearer hit wins, so ground further than ``far_distance`` becomes backdrop without a jump in depth.
    The camera's rotation is used (a pitched or rolled camera moves and tilts the horizon); its position is not:
    the ground is always ``camera_height`` below the camera being estimated.

    Args:
        camera_height: metres from the camera down to the ground.
        horizon_row: optional image row (pixels from the top edge, at the resolution of the image passed to
            :meth:`estimate`) where the horizon is. It overrides the camera's pitch and roll: the camera is taken
            as level in roll and pitched so that the horizon lands on this row.
        far_distance: radius of the backdrop cylinder in metres (also the largest ground distance).
        dome_elevation_deg: elevation above which the backdrop is a dome rather than a cylinder.
    """

    def __init__(
        self,
        camera_height: float = DEFAULT_CAMERA_HEIGHT,
        horizon_row: float | None = None,
        far_distance: float = DEFAULT_FAR_DISTANCE,
        dome_elevation_deg: float = DEFAULT_DOME_ELEVATION_DEG,
    ):
        if not (math.isfinite(camera_height) and camera_height > 0):
            raise ValueError(f"camera_height must be a positive number of metres, got {camera_height}")
        if not (math.isfinite(far_distance) and far_distance > camera_height):
            raise ValueError(f"far_distance must exceed camera_height ({camera_height} m), got {far_distance}")
        if not 0.0 < dome_elevation_deg < 90.0:
            raise ValueError(f"dome_elevation_deg must be in (0, 90), got {dome_elevation_deg}")
        if horizon_row is not None and not math.isfinite(horizon_row):
            raise ValueError(f"horizon_row must be a finite row, got {horizon_row}")
        self.camera_height = float(camera_height)
        self.horizon_row = None if horizon_row is None else float(horizon_row)
        self.far_distance = float(far_distance)
        self.dome_elevation_deg = float(dome_elevation_deg)

    def estimate(self, image: Tensor, camera: Camera) -> DepthEstimate:  # [H, W, 3] -> values [H, W]
        height, width = image.shape[:2]
        if (camera.height, camera.width) != (height, width):
            camera = camera.scaled(height, width)
        K = camera.K.to(device=image.device, dtype=torch.float64)
        down = self._down_in_camera(camera, K).to(image.device)  # [3] unit, world down (+y) in camera axes
        rays = ray_directions(height, width, K)  # [H, W, 3], z = 1
        ray_length = rays.norm(dim=-1)  # [H, W]

        # Ground: the plane {p : p . down = camera_height}; the ray p = t * ray meets it at t = h / (ray . down).
        along_down = rays @ down  # [H, W]
        below = along_down > 0
        t_ground = torch.where(
            below, self.camera_height / along_down.clamp_min(1e-12), torch.full_like(along_down, math.inf)
        )

        # Backdrop: horizontal distance far_distance (cylinder), or range far / cos(dome elevation) when steeper.
        horizontal = (rays - along_down[..., None] * down).norm(dim=-1)  # [H, W]
        cos_elevation = horizontal / ray_length
        cos_dome = math.cos(math.radians(self.dome_elevation_deg))
        t_far = self.far_distance / (cos_elevation.clamp_min(cos_dome) * ray_length)

        z_depth = torch.minimum(t_ground, t_far)  # t along a z = 1 ray is the z-depth
        return DepthEstimate(values=z_depth.to(image.dtype), kind="metric")

    def _down_in_camera(self, camera: Camera, K: Tensor) -> Tensor:  # -> [3] float64
        """World down (+y) written in the camera's axes."""
        if self.horizon_row is None:
            world_to_cam = camera.world_to_cam.to(torch.float64)
            down = world_to_cam[:3, :3] @ torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
            return down / down.norm()
        # Level in roll, pitched up by theta: down = (0, cos theta, -sin theta), horizon at v = cy + fy tan theta.
        theta = math.atan((self.horizon_row - float(K[1, 2])) / float(K[1, 1]))
        return torch.tensor([0.0, math.cos(theta), -math.sin(theta)], dtype=torch.float64)


# --- user depth file ----------------------------------------------------------------------------------------------

_MIN_VALID_FOR_SCALE = 16  # fewer overlapping valid pixels than this give no trustworthy scale
_EPS = 1e-6


class FileDepth:
    """Depth for view 0 from the user's file where it is valid, and from ``fallback`` elsewhere.

    The fallback is brought to the file's scale by the median ratio over pixels where both are valid (for a
    ``relative_inverse`` fallback, the ratio is taken in inverse depth), so the fill meets the file's values
    roughly at their boundary. Without any valid pixel in the file, the fallback's estimate is returned as is.

    Args:
        depth: the user's depth, from :func:`core.images.load_depth_file` (any size: it is resized to the
            image like :func:`core.images.fit_size` resizes the photo).
        fallback: estimator for the pixels the file leaves unknown.
    """

    def __init__(self, depth: DepthFile, fallback: DepthEstimator):
        self.depth = depth
        self.fallback = fallback

    def estimate(self, image: Tensor, camera: Camera) -> DepthEstimate:  # [H, W, 3] -> values [H, W]
        height, width = image.shape[:2]
        depth, valid = self.depth.depth, self.depth.valid_mask
        if tuple(depth.shape) != (height, width):
            depth, valid = resize_depth(depth, valid, (width, height))
        depth = depth.to(device=image.device, dtype=image.dtype)
        valid = valid.to(image.device)
        estimate = self.fallback.estimate(image, camera)
        if bool(valid.all()):
            return DepthEstimate(values=depth, kind="metric")
        if not bool(valid.any()):
            logger.warning("the depth file has no valid pixel at this size; using the fallback estimate only")
            return estimate
        filled = self._scaled_fallback(estimate, depth, valid)
        return DepthEstimate(values=torch.where(valid, depth, filled), kind="metric")

    @staticmethod
    def _scaled_fallback(estimate: DepthEstimate, depth: Tensor, valid: Tensor) -> Tensor:  # -> [H, W] metres
        """The fallback estimate as metric depth, scaled to agree with the file (median ratio)."""
        inverse = estimate.kind == "relative_inverse"
        values = estimate.values.to(depth)
        usable = torch.isfinite(values) & (values > _EPS)
        overlap = usable & valid
        if int(overlap.sum()) >= _MIN_VALID_FOR_SCALE:
            target, source = (1.0 / depth if inverse else depth)[overlap], values[overlap]
        elif bool(usable.any()):
            # Too little overlap to calibrate per pixel: match the medians of what each side knows.
            target, source = (1.0 / depth if inverse else depth)[valid], values[usable]
            target, source = target.median()[None], source.median()[None]
        else:
            return torch.full_like(depth, float(depth[valid].median()))
        scale = torch.median(target / source)
        scaled = (scale * values).clamp_min(_EPS)
        filled = 1.0 / scaled if inverse else scaled
        return torch.where(usable, filled, depth[valid].median())
