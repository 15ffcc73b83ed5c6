"""A light learned depth completer in the spirit of KBNet: sees RGB, the known depth, its mask and its 3D points.

The network (:class:`LightCompleterNet`, 0.32 M parameters, 1.3 MB of float32 weights) is a small U-Net fed with

1. RGB (centred on 0);
2. the known-pixel mask and the known depth as ``log(depth / m)``, where ``m`` is the median known depth of the
   view: depth is normalised per view, so one network works at 2 m, 20 m and 80 m;
3. **calibrated backprojection**: the known pixels lifted with ``K⁻¹`` to camera-frame points ``(x, y, z) / m``,
   plus the ray direction ``K⁻¹ [u, v, 1]`` of every pixel, so the network sees 3D positions and the field of view
   (a plane is linear in these, not in pixel coordinates);
4. the harmonic (Laplace) interpolation of the known log-depth, which is also the base the output corrects;
5. **sparse-to-dense pooling**: over windows of :data:`POOL_CELLS` blocks, the masked mean, min and max of the
   known log-depth and the fraction of known pixels — a dense, multi-scale summary of the sparse input that the
   first layers of a small network could not compute themselves.

It predicts ``log(depth / m)`` everywhere. The network runs at a working resolution close to the one it was
trained at (the width stored in the weights), and the prediction is upsampled to the image; known depths are then
put back exactly. With ``harmonic=True`` the mismatch between prediction and known depth on the known pixels is
extended into the unknown region by :func:`models.depth_align.harmonic_fill` (as the training-free completer does),
so the completed depth meets the known depth without a step at the seam.

Weights are one safetensors file; the network's shape (:class:`LightNetConfig`) is stored in its metadata. The
project ships ``models/weights/light_completer.safetensors`` trained by ``python -m training.train_completer``
(see ``models/weights/README.md``).

Conventions are the project's: z-depth ``[H, W]`` in scene units, 0 = unknown, bool masks True = known.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.cameras import Camera
from core.checks import check_completion_inputs
from models.depth_align import harmonic_fill
from models.weights_io import WeightsError, load_weights, read_weights_metadata, save_weights

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "light_completer.safetensors"
"""The weights the project trained and ships (see ``models/weights/README.md``)."""

WEIGHTS_FORMAT = "worldstitch-light-completer"
"""``format`` entry of the safetensors metadata: tells our files from any other safetensors file."""

POOL_CELLS = (1, 4, 16)
"""Sparse-to-dense pooling: each level pools over 3 x 3 blocks of ``cell x cell`` pixels, i.e. windows of 3, 12
and 48 pixels at the working resolution (128 x 96 by default): a few pixels around a hole, a tenth of the image,
and a third of its width — every unknown pixel of a typical outpainting mask (a side band up to ~40 % of the width)
has known samples in its largest window. Cells divide the working size (a multiple of 16)."""

POOL_EMPTY = 0.0
"""Pooled features where a window holds no known pixel (the density channel says so)."""

LOG_FILL = 30.0
"""Stand-in log-depth for unknown pixels inside min/max pooling: far outside any real log ratio (|log| < 10), so
it never wins a min or max against a known pixel."""

MIN_DEPTH = 1e-3
"""Smallest depth returned (0 would read as "unknown")."""

MAX_LOG_RATIO = 8.0
"""Predicted log(depth / median known depth) is clamped to ±8 (a factor of ~3000): keeps exp() finite on garbage
input while leaving every real scene alone (a room's 0.3-15 m around a 3 m median is within ±2)."""

WORK_MULTIPLE = 16
"""The working resolution is a multiple of 16 per side: four stride-2 stages."""


@dataclass(frozen=True)
class LightNetConfig:
    """Shape of the network (stored with the weights)."""

    widths: tuple[int, ...] = (12, 24, 32, 48, 64)
    """Channels at full, 1/2, 1/4, 1/8 and 1/16 of the working resolution."""

    pool_cells: tuple[int, ...] = POOL_CELLS
    """Sparse-to-dense pooling block sizes in pixels (windows of 3 blocks)."""

    work_width: int = 128
    """Width (pixels) the network works at; the height follows the image's aspect. The size it was trained at:
    pooling windows and receptive field are in pixels, so running at the training scale keeps them meaningful."""

    harmonic_input: bool = True
    """Also feed the harmonic (Laplace) interpolation of the known log-depth, and predict the output as a
    correction of it: the network starts from a continuous completion that equals the known depth on known pixels
    and learns only the shapes (floors, walls) that a smooth interpolation misses."""

    def __post_init__(self):
        if len(self.widths) < 2 or any(int(w) < 1 for w in self.widths):
            raise ValueError(f"widths must be at least two positive channel counts, got {self.widths}")
        if any(int(c) < 1 or WORK_MULTIPLE % int(c) for c in self.pool_cells):
            raise ValueError(f"pool_cells must be positive divisors of {WORK_MULTIPLE}, got {self.pool_cells}")
        if int(self.work_width) < WORK_MULTIPLE:
            raise ValueError(f"work_width must be >= {WORK_MULTIPLE}, got {self.work_width}")

    @property
    def in_channels(self) -> int:
        # rgb 3 + mask 1 + log-depth 1 + backprojected xyz 3 + rays 2 + 4 pooled maps per window (+ harmonic 1)
        return 10 + 4 * len(self.pool_cells) + int(self.harmonic_input)


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation), nn.LeakyReLU(0.1, inplace=True)
    )


class LightCompleterNet(nn.Module):
    """The network: features from (image, known depth, mask, K), a U-Net, ``log(depth / m)`` out.

    Batched: all inputs carry a leading batch dimension; each sample has its own intrinsics and its own median.
    """

    def __init__(self, config: LightNetConfig = LightNetConfig()):
        super().__init__()
        self.config = config
        widths = [int(w) for w in config.widths]
        # one convolution at full resolution on each side of the U: most of the cost of a small net is there
        self.stem = _conv(config.in_channels, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(_conv(widths[i], widths[i + 1], stride=2), _conv(widths[i + 1], widths[i + 1]))
            for i in range(len(widths) - 1)
        )
        bottom = widths[-1]
        self.context = nn.Sequential(_conv(bottom, bottom, dilation=2), _conv(bottom, bottom, dilation=4))
        self.up = nn.ModuleList(
            nn.Sequential(_conv(widths[i + 1] + widths[i], widths[i]), *([_conv(widths[i], widths[i])] if i else []))
            for i in reversed(range(len(widths) - 1))
        )
        self.head = nn.Conv2d(widths[0], 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def features(
        self,
        image: Tensor,  # [B, 3, H, W] in [0, 1]
        known_depth: Tensor,  # [B, H, W], 0 where unknown
        known_mask: Tensor,  # [B, H, W] bool
        K: Tensor,  # [B, 3, 3] at this resolution
        dense_log: Tensor | None = None,  # [B, H, W] harmonic fill of log(known depth); None = computed here
    ) -> tuple[Tensor, Tensor]:  # [B, C, H, W], [B] median known depth
        """The network's input channels and each sample's normalising depth (median of its known depth).

        With ``harmonic_input`` the last channel is the harmonic fill of ``log(depth / m)``."""
        batch, _, height, width = image.shape
        known = known_mask & torch.isfinite(known_depth) & (known_depth > 0)
        scale = torch.stack([_median_known(known_depth[b], known[b]) for b in range(batch)])  # [B]
        mask = known.to(image.dtype)[:, None]  # [B, 1, H, W]
        ratio = torch.where(known, known_depth, scale[:, None, None]) / scale[:, None, None]
        log_depth = ratio.clamp_min(MIN_DEPTH).log()[:, None] * mask  # [B, 1, H, W]
        v, u = torch.meshgrid(
            torch.arange(height, device=image.device, dtype=image.dtype) + 0.5,
            torch.arange(width, device=image.device, dtype=image.dtype) + 0.5,
            indexing="ij",
        )
        K = K.to(image)
        ray_x = (u[None] - K[:, 0, 2, None, None]) / K[:, 0, 0, None, None]  # [B, H, W]
        ray_y = (v[None] - K[:, 1, 2, None, None]) / K[:, 1, 1, None, None]
        rays = torch.stack([ray_x, ray_y], dim=1)  # [B, 2, H, W]
        z = ratio[:, None] * mask
        points = torch.cat([rays * z, z], dim=1)  # [B, 3, H, W] known pixels lifted with K⁻¹, in units of m
        pooled = [_sparse_pool(log_depth, mask, cell) for cell in self.config.pool_cells]
        channels = [image - 0.5, mask, log_depth, points, rays, *pooled]
        if self.config.harmonic_input:
            if dense_log is None:
                dense_log = torch.stack([harmonic_log_depth(known_depth[b], known[b]) for b in range(batch)])
            dense = dense_log.to(image) - scale.clamp_min(MIN_DEPTH).log()[:, None, None]
            channels.append(dense.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)[:, None])
        return torch.cat(channels, dim=1), scale

    def forward(
        self,
        image: Tensor,  # [B, 3, H, W] in [0, 1]
        known_depth: Tensor,  # [B, H, W], 0 where unknown
        known_mask: Tensor,  # [B, H, W] bool
        K: Tensor,  # [B, 3, 3]
        dense_log: Tensor | None = None,  # [B, H, W] harmonic fill of log(known depth) (training caches it)
    ) -> tuple[Tensor, Tensor]:  # [B, H, W] log(depth / m), [B] m
        """Predicted ``log(depth / m)`` at the input resolution (sides must be multiples of 16) and ``m``."""
        height, width = image.shape[-2:]
        if height % WORK_MULTIPLE or width % WORK_MULTIPLE:
            raise ValueError(f"the network needs sides that are multiples of {WORK_MULTIPLE}, got {width}x{height}")
        x, scale = self.features(image, known_depth, known_mask, K, dense_log)
        skips = [self.stem(x)]
        for stage in self.down:
            skips.append(stage(skips[-1]))
        y = self.context(skips.pop())
        for stage in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = stage(torch.cat([y, skip], dim=1))
        # the head starts at zero, so an untrained network predicts the harmonic fill (or the widest pooled mean)
        base = x[:, -1] if self.config.harmonic_input else x[:, -4]
        log_ratio = self.head(y)[:, 0] + base  # [B, H, W]
        return log_ratio.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO), scale


def harmonic_log_depth(known_depth: Tensor, known: Tensor) -> Tensor:  # [H, W], [H, W] bool -> [H, W]
    """Harmonic (Laplace) interpolation of the known log-depth over the whole image (0 where nothing is known)."""
    with torch.no_grad():
        values = torch.where(known, known_depth, torch.ones_like(known_depth)).clamp_min(MIN_DEPTH).log()
        return harmonic_fill(values.float().cpu(), known.cpu()).to(known_depth.device)


def _median_known(depth: Tensor, known: Tensor) -> Tensor:  # [H, W], [H, W] bool -> []
    values = depth[known]
    if values.numel() == 0:
        return torch.ones((), dtype=depth.dtype, device=depth.device)
    return values.median()


def _sparse_pool(log_depth: Tensor, mask: Tensor, cell: int) -> Tensor:  # [B,1,H,W], [B,1,H,W] -> [B,4,H,W]
    """Masked mean, min and max of the known log-depth over a ``3 * cell`` window, and the known fraction there.

    Pooled hierarchically for speed: first over ``cell x cell`` blocks (stride ``cell``), then over 3 x 3 blocks
    at that resolution, then bilinearly back to full resolution (the block grid divides the working size).
    """
    height, width = log_depth.shape[-2:]
    masked_high = torch.where(mask > 0, log_depth, torch.full_like(log_depth, -LOG_FILL))
    masked_low = torch.where(mask > 0, -log_depth, torch.full_like(log_depth, -LOG_FILL))
    total, density = log_depth * mask, mask
    if cell > 1:
        total, density = (
            F.avg_pool2d(total, cell, cell, ceil_mode=True),
            F.avg_pool2d(density, cell, cell, ceil_mode=True),
        )
        masked_high = F.max_pool2d(masked_high, cell, cell, ceil_mode=True)
        masked_low = F.max_pool2d(masked_low, cell, cell, ceil_mode=True)
    total = F.avg_pool2d(total, 3, 1, 1, count_include_pad=False)
    density = F.avg_pool2d(density, 3, 1, 1, count_include_pad=False)
    high = F.max_pool2d(masked_high, 3, 1, 1)
    low = -F.max_pool2d(masked_low, 3, 1, 1)
    has = density > 0
    empty = torch.full_like(total, POOL_EMPTY)
    mean = torch.where(has, total / density.clamp_min(1e-6), empty)
    pooled = torch.cat([mean, torch.where(has, low, empty), torch.where(has, high, empty), density], dim=1)
    if cell > 1:
        pooled = F.interpolate(pooled, size=(height, width), mode="bilinear", align_corners=False)
    return pooled


def work_size(height: int, width: int, work_width: int) -> tuple[int, int]:
    """(height, width) the network runs at for an image: ``work_width`` wide (multiple of 16), same aspect."""
    out_w = max(WORK_MULTIPLE, int(round(work_width / WORK_MULTIPLE)) * WORK_MULTIPLE)
    out_h = max(WORK_MULTIPLE, int(round(out_w * height / width / WORK_MULTIPLE)) * WORK_MULTIPLE)
    return out_h, out_w


def downsample_known(
    known_depth: Tensor,  # [B, H, W], 0 where unknown
    known_mask: Tensor,  # [B, H, W] bool
    size: tuple[int, int],  # (height, width)
) -> tuple[Tensor, Tensor]:  # [B, h, w], [B, h, w] bool
    """Known depth at a lower resolution: a cell is known when every input pixel under it is, and its depth is the
    geometric mean of theirs (area resampling in log-depth)."""
    known = (known_mask & torch.isfinite(known_depth) & (known_depth > 0)).float()[:, None]
    if tuple(known_depth.shape[-2:]) == tuple(size):
        return torch.where(known[:, 0] > 0, known_depth, torch.zeros_like(known_depth)), known[:, 0] > 0
    log_depth = torch.where(known > 0, known_depth[:, None], torch.ones_like(known)).clamp_min(MIN_DEPTH).log()
    cover = F.interpolate(known, size=size, mode="area")
    mean = F.interpolate(log_depth * known, size=size, mode="area") / cover.clamp_min(1e-6)
    full = cover[:, 0] > 1 - 1e-4
    return torch.where(full, mean[:, 0].exp(), torch.zeros_like(mean[:, 0])), full


@dataclass(frozen=True)
class LightOptions:
    """Inference settings of the light completer."""

    harmonic: bool = False
    """Add the harmonic residual (prediction vs known depth on the known pixels, extended into the unknown region)
    so the completed depth meets the known depth exactly at the seam."""

    work_width: int | None = None
    """Width the network runs at; None = the width it was trained at (stored in the weights)."""

    restore_known: bool = True
    """Put the given depths back exactly where ``known_mask`` is set (the protocol's contract)."""

    threads: int | None = None
    """torch CPU threads during inference; None = leave torch's setting alone."""


class LightCompleter:
    """``DepthCompleter`` backed by :class:`LightCompleterNet` (see module docstring).

    Args:
        net: the network (eval mode is set here).
        options: inference settings.
        name: for messages.
    """

    def __init__(self, net: LightCompleterNet, options: LightOptions = LightOptions(), name: str = "light"):
        self.net = net.eval()
        self.options = options
        self.name = name

    def predict(
        self,
        image: Tensor,  # [H, W, 3] in [0, 1]
        known_depth: Tensor,  # [H, W], 0 where unknown
        known_mask: Tensor,  # [H, W] bool
        camera: Camera,
    ) -> tuple[Tensor, Tensor, Tensor]:  # [H, W] depth, [h, w] work-resolution depth, [h, w] bool work-res known
        """The network's depth, upsampled to the image (known pixels not restored), and its work-resolution form."""
        height, width = image.shape[:2]
        work_width = self.options.work_width or self.net.config.work_width
        size = work_size(height, width, work_width)
        device = next(self.net.parameters()).device
        rgb = image.detach().float().clamp(0, 1).permute(2, 0, 1)[None].to(device)  # [1, 3, H, W]
        rgb_lo = F.interpolate(rgb, size=size, mode="area") if size != (height, width) else rgb
        depth_lo, known_lo = downsample_known(known_depth.detach().float()[None].to(device), known_mask[None], size)
        K = camera.scaled(size[0], size[1]).K.float()[None].to(device)
        with torch.inference_mode():
            log_ratio, scale = self.net(rgb_lo, depth_lo, known_lo, K)  # [1, h, w], [1]
        pred_lo = (scale[:, None, None] * log_ratio.exp())[0]  # [h, w]
        full = F.interpolate(log_ratio[:, None], size=(height, width), mode="bilinear", align_corners=False)
        depth = (scale * full[0, 0].exp()).clamp_min(MIN_DEPTH)
        return depth.to(known_depth.device), pred_lo.to(known_depth.device), known_lo[0].to(known_depth.device)

    def complete(
        self,
        image: Tensor,  # [H, W, 3] in [0, 1]
        known_depth: Tensor,  # [H, W], 0 where unknown
        known_mask: Tensor,  # [H, W] bool
        camera: Camera,
    ) -> Tensor:  # [H, W] z-depth > 0 everywhere, equal to known_depth on known_mask
        """Complete a partly known depth map.

        Raises:
            ValueError: bad shapes or types, or no known pixel with a finite depth > 0 (the network predicts depth
                relative to the known depth, so it needs at least one).
        """
        _check_inputs(image, known_depth, known_mask, camera)
        known = known_mask & torch.isfinite(known_depth) & (known_depth > 0)
        if not bool(known.any()):
            raise ValueError(
                f"{self.name}: the light completer predicts depth relative to the known depth and needs at least "
                "one known pixel with a finite depth > 0; use a depth estimator for a view with nothing known"
            )
        previous = torch.get_num_threads()
        if self.options.threads:
            torch.set_num_threads(int(self.options.threads))
        try:
            depth, pred_lo, known_lo = self.predict(image, known_depth, known_mask, camera)
        finally:
            torch.set_num_threads(previous)
        if self.options.harmonic:
            depth = self._harmonic(depth, pred_lo, known_lo, known_depth, known)
        if self.options.restore_known:
            depth = torch.where(known, known_depth.float(), depth)
        return depth

    @staticmethod
    def _harmonic(
        depth: Tensor,  # [H, W] prediction
        pred_lo: Tensor,  # [h, w] prediction at the working resolution
        known_lo: Tensor,  # [h, w] bool
        known_depth: Tensor,  # [H, W]
        known: Tensor,  # [H, W] bool
    ) -> Tensor:  # [H, W]
        """Extend the log-depth mismatch on the known pixels into the unknown region (Laplace, no overshoot).

        Solved at the image's resolution when that is small (exact seam), else at the working resolution and
        upsampled (the mismatch is smooth; the solve's cost grows with the unknown pixel count).
        """
        height, width = depth.shape
        if height * width <= HARMONIC_FULL_RES_PIXELS or not bool(known_lo.any()):
            safe = torch.where(known, known_depth.float(), depth)
            residual = torch.where(known, safe.log() - depth.log(), torch.zeros_like(depth))
            return depth * harmonic_fill(residual, known).exp()
        depth_lo, _ = downsample_known(known_depth.float()[None], known[None], tuple(pred_lo.shape))
        safe = torch.where(known_lo, depth_lo[0], pred_lo)
        residual = torch.where(known_lo, safe.log() - pred_lo.log(), torch.zeros_like(pred_lo))
        filled = harmonic_fill(residual, known_lo)
        up = F.interpolate(filled[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
        return depth * up.exp()


HARMONIC_FULL_RES_PIXELS = 256 * 192
"""Up to this many pixels the harmonic residual is solved at full resolution (~50 ms); larger images solve it at
the network's working resolution, which keeps a 512 x 384 view within the completer's time budget."""


def _check_inputs(image: Tensor, known_depth: Tensor, known_mask: Tensor, camera: Camera) -> None:
    shape = check_completion_inputs(image, known_depth, known_mask)
    if not isinstance(camera, Camera) or (camera.height, camera.width) != shape:
        got = (camera.height, camera.width) if isinstance(camera, Camera) else type(camera).__name__
        raise ValueError(f"camera must be a Camera of the image's size {shape}, got {got}")


# --- weights -----------------------------------------------------------------------------------------------------


class LightWeightsError(WeightsError):
    """A light-completer weights file is missing, unreadable or not ours."""


def save_light_weights(net: LightCompleterNet, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write the network to a safetensors file atomically (config and ``extra`` in its metadata)."""
    return save_weights(net, path, WEIGHTS_FORMAT, extra)


def read_light_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a light-completer weights file (raises :class:`LightWeightsError` when not one)."""
    return read_weights_metadata(
        path, WEIGHTS_FORMAT, "light-completer weights", "`python -m training.train_completer`", LightWeightsError
    )


def load_light_net(path: str | Path = DEFAULT_WEIGHTS, device: str | torch.device = "cpu") -> LightCompleterNet:
    """Build the network stored in a weights file.

    Raises:
        LightWeightsError: missing, corrupt, foreign or mismatched file.
    """
    metadata = read_light_metadata(path)
    defaults = {"harmonic_input": False}  # files written before the option existed
    net = load_weights(path, metadata, LightCompleterNet, LightNetConfig, LightWeightsError, defaults)
    return net.to(device).eval()


def load_light_completer(
    path: str | Path | None = None, options: LightOptions = LightOptions(), device: str | torch.device | None = None
) -> LightCompleter:
    """The light completer from a weights file (default: the shipped ``models/weights/light_completer.safetensors``).

    Raises:
        LightWeightsError: missing, corrupt, foreign or mismatched file.
    """
    path = DEFAULT_WEIGHTS if path is None else Path(path)
    net = load_light_net(path, "cpu" if device is None else device)
    return LightCompleter(net, options, name=f"light completer ({Path(path).name})")


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def log_ratio_to_depth(log_ratio: Tensor, scale: Tensor) -> Tensor:  # [B, H, W], [B] -> [B, H, W]
    """Depth from the network's output: ``m · exp(log_ratio)``."""
    return scale[:, None, None] * log_ratio.exp()


__all__ = [
    "DEFAULT_WEIGHTS",
    "LightCompleter",
    "LightCompleterNet",
    "LightNetConfig",
    "LightOptions",
    "LightWeightsError",
    "count_parameters",
    "downsample_known",
    "load_light_completer",
    "load_light_net",
    "log_ratio_to_depth",
    "save_light_weights",
    "work_size",
]
