"""The one image boundary: decode, validate and normalise every picture (and depth map) that enters WorldStitch.

Everything a user hands us — an upload path, raw bytes, a PIL image, a numpy array or a tensor — goes through
:func:`load_image` and comes out as float32 ``[H, W, 3]`` in [0, 1] on the CPU. Nothing else in the project decodes
images. The rules, each covered by a test:

* **Formats are allow-listed**: PNG, JPEG and WEBP. Anything else (GIF, BMP, TIFF, HEIC, ...) is refused with an
  :class:`ImageError` that names the format found. Only the allowed Pillow plugins are ever asked to parse.
* **Size is checked from the header before decoding**: more than ``max_pixels`` pixels is refused without
  allocating the pixel buffer (decompression bombs), fewer than ``min_side`` pixels on a side is refused with a
  message naming the minimum. Pillow's own bomb check is turned into the same :class:`ImageError`.
* **EXIF orientation is applied** (our own transpose table, checked against Pillow's), so a phone photo comes out
  upright.
* **16-bit PNGs keep their precision**: grey (``I;16``/``I``) via Pillow, colour via OpenCV's PNG decoder (Pillow
  reads 16-bit colour as 8-bit), both scaled by 1/65535 — never clipped at 255.
* **Alpha is composited over white** (:data:`ALPHA_BACKGROUND`): cut-out objects read as "on a white page", as
  every image viewer shows them. Palette, grey, grey+alpha and CMYK are converted to RGB.
* **Corrupt or truncated files raise** :class:`ImageError` (a fuzz test flips and truncates bytes).
* Messages name at most the file name the user gave, never a directory.

:func:`fit_size` then brings an image to a working size (sides multiples of 8, aspect kept, bounded aspect ratio),
and :func:`load_depth_file` reads a user-supplied depth map (16-bit PNG in millimetres, ``.npy``/``.npz`` in metres).
"""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import ExifTags, Image
from torch import Tensor

from core.files import atomic_write

# --- limits -------------------------------------------------------------------------------------------------------

DEFAULT_MAX_PIXELS = 40_000_000
"""40 MP: above any phone camera in common use (48 MP sensors save 12 MP by default), and a float32 RGB copy of
it is ~480 MB — the most one request should hold. Checked from the header, before any pixel is decoded."""

DEFAULT_MIN_SIDE = 64
"""Below 64 px a side there is nothing for depth estimation or outpainting to work with (and 64 is the smallest
latent side, 8x8, that a Stable Diffusion VAE can encode usefully)."""

DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
"""256 MiB: a 40 MP 16-bit PNG of a real photo compresses to well below this; larger files are refused unread."""

DEFAULT_MAX_SIDE = 512
"""Working resolution of the default models (SD-2 inpainting and Depth Anything run natively near 512 px)."""

SIZE_MULTIPLE = 8
"""Sides must be multiples of 8: the VAE of latent diffusion models downsamples by 8."""

MAX_ASPECT_RATIO = 3.0
"""Longest side / shortest side. Beyond 3:1 (panoramas, banners) a pinhole camera with the default field of view
does not describe the photo, and the ring of views would hardly overlap vertically."""

ALPHA_BACKGROUND = 1.0
"""Transparent pixels are composited over white (1.0): cut-outs look as in any viewer, and outpainting a white
page around an object is a request the models understand. Change per call with ``background=``."""

MAX_DEPTH_M = 1000.0
"""Depth values above 1 km are not measurements of a photographed scene (often "infinity" placeholders or
millimetres mistaken for metres); they are masked out, not trusted."""

MM_PER_M = 1000.0

_SUSPICIOUS_MEDIAN_DEPTH_M = 100.0  # photographed scenes have median depths of metres to tens of metres; far more
# usually means millimetres (or centimetres) saved where metres were expected, worth a warning
_MAX_DEPTH_ITEMSIZE = 8  # bytes per depth value we accept (float64 / int64); larger dtypes are not depth maps

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")

# Pillow reports phone JPEGs that carry extra pictures (depth, previews: "Multi-Picture Format") as MPO. They are
# JPEG files; the first picture is the photo.
_PILLOW_JPEG_ALIASES = ("MPO",)

_UINT8_MAX = 255.0
_UINT16_MAX = 65535.0
_FLOAT_RANGE_TOLERANCE = 1e-3  # float inputs may overshoot [0, 1] by rounding; more than this is an error

_EXIF_ORIENTATION = int(ExifTags.Base.Orientation)

# Magic numbers of formats we refuse, so the message can name what was found without parsing it.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "BigTIFF"),
    (b"MM\x00+", "BigTIFF"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"%PDF", "PDF"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
    (b"#?RADIANCE", "HDR"),
    (b"\x93NUMPY", "numpy .npy"),
    (b"PK\x03\x04", "zip / .npz"),
)


class ImageError(ValueError):
    """An image (or depth file) we cannot use, with a message the user can act on.

    Messages never contain a directory: at most the file name the user gave.
    """


@dataclass
class DepthFile:
    """A user-supplied depth map, read by :func:`load_depth_file`."""

    depth: Tensor  # [H, W] float32 z-depth in metres, 0 where invalid
    valid_mask: Tensor  # [H, W] bool, True = a value we trust
    warnings: list[str] = field(default_factory=list)  # things the user should know (resized, values dropped)


# --- loading ------------------------------------------------------------------------------------------------------

ImageSource = str | Path | bytes | bytearray | Image.Image | np.ndarray | Tensor


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    background: float = ALPHA_BACKGROUND,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Tensor:  # [H, W, 3] float32 in [0, 1], CPU
    """Decode and validate one image.

    Args:
        source: a file path, the file's bytes, a PIL image, or an array/tensor of shape ``[H, W]``, ``[H, W, 1]``,
            ``[H, W, 3]`` or ``[H, W, 4]`` (RGBA). Arrays may be uint8 (0..255), uint16 (0..65535) or float in
            [0, 1].
        max_pixels: largest accepted ``H * W``; checked from the file header before decoding. Pillow's own
            bomb check (at ``2 * PIL.Image.MAX_IMAGE_PIXELS``, ~179 MP by default) still applies above it.
        min_side: smallest accepted side in pixels.
        background: grey level in [0, 1] that transparent pixels are composited over (default white).
        max_file_bytes: largest accepted file (path or bytes input).

    Returns:
        The image, upright (EXIF orientation applied), RGB, float32 in [0, 1].  # [H, W, 3]

    Raises:
        ImageError: unreadable, corrupt, truncated, not PNG/JPEG/WEBP, too large, too small, or an array with an
            unsupported shape, dtype or value range.

    Example:
        >>> load_image(np.zeros((64, 96, 3), np.uint8)).shape
        torch.Size([64, 96, 3])
    """
    if not 0.0 <= background <= 1.0:
        raise ValueError(f"background must be a grey level in [0, 1], got {background}")
    if isinstance(source, Tensor):
        source = source.detach().cpu()
        source = (source.float() if source.is_floating_point() else source).numpy()  # bfloat16 has no numpy dtype
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels=max_pixels, min_side=min_side, background=background, name="array")
    if isinstance(source, Image.Image):
        return _from_pil(source, "image", max_pixels=max_pixels, min_side=min_side, background=background)
    data, name = _read_source(source, max_file_bytes, what="image")
    return _from_bytes(data, name, max_pixels=max_pixels, min_side=min_side, background=background)


def _read_source(source: str | Path | bytes | bytearray, max_file_bytes: int, what: str) -> tuple[bytes, str]:
    """The bytes of a path or bytes input, and the name to use in messages (file name only, no directory)."""
    if isinstance(source, (bytes, bytearray)):
        if len(source) > max_file_bytes:
            raise ImageError(
                f"the {what} is {len(source) / 2**20:.0f} MiB; the limit is {max_file_bytes / 2**20:.0f} MiB"
            )
        return bytes(source), f"the uploaded {what}"
    if not isinstance(source, (str, Path)):
        raise TypeError(f"cannot read an {what} from a {type(source).__name__}")
    path = Path(source)
    name = f"'{path.name}'"
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ImageError(f"{name} is not a file")
        if size > max_file_bytes:
            raise ImageError(f"{name} is {size / 2**20:.0f} MiB; the limit is {max_file_bytes / 2**20:.0f} MiB")
        return path.read_bytes(), name
    except FileNotFoundError:
        raise ImageError(f"{what} file {name} not found") from None
    except PermissionError:
        raise ImageError(f"{what} file {name} cannot be read (permission denied)") from None
    except OSError as err:
        raise ImageError(f"{what} file {name} cannot be read ({err.strerror or type(err).__name__})") from None


def _sniff_format(head: bytes) -> str | None:
    for magic, fmt in _SIGNATURES:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand[:3] in (b"hei", b"hev", b"mif"):
            return "HEIC/HEIF"
        return "MP4/QuickTime"
    if head.lstrip()[:5].lower() in (b"<svg ", b"<?xml"):
        return "SVG/XML"
    return None


# Exceptions Pillow's PNG/JPEG/WEBP plugins (and zlib under them) raise on malformed input. A hostile file reaches
# parsing code that was not written to validate it, so several types occur; all of them mean "corrupt file".
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError, struct.error, zlib.error)


def _corrupt(name: str, detail: str = "") -> ImageError:
    hint = f" ({detail})" if detail else ""
    return ImageError(
        f"{name} could not be decoded: the file is corrupt or truncated{hint}. Re-export it as PNG or JPEG."
    )


def _from_bytes(data: bytes, name: str, *, max_pixels: int, min_side: int, background: float) -> Tensor:
    found = _sniff_format(data[:32])
    if found is None:
        raise ImageError(f"{name} is not an image we can read; upload a PNG, JPEG or WEBP")
    if found not in ALLOWED_FORMATS:
        raise ImageError(f"{name} is a {found} file; only PNG, JPEG and WEBP are accepted")
    try:
        # Only the allowed plugins may parse the bytes. Pillow's own bomb check raises at 2x its MAX_IMAGE_PIXELS;
        # ours (below) is stricter and comes first for everything between.
        image = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except Image.DecompressionBombError:
        raise ImageError(f"{name} is too large: more than {max_pixels / 1e6:.0f} megapixels") from None
    except _DECODE_ERRORS:
        raise _corrupt(name) from None
    if found == "PNG" and image.format == "PNG" and _png_is_16bit_colour(data):
        _check_size(image.size, name, max_pixels, min_side)
        return _decode_png16_colour(data, image, name, background)
    return _from_pil(image, name, max_pixels=max_pixels, min_side=min_side, background=background)


def _check_size(size_wh: tuple[int, int], name: str, max_pixels: int, min_side: int) -> None:
    width, height = size_wh
    if width * height > max_pixels:
        raise ImageError(
            f"{name} is {width}x{height} ({width * height / 1e6:.1f} megapixels); the limit is "
            f"{max_pixels / 1e6:.0f} megapixels. Downscale it first."
        )
    if min(width, height) < min_side:
        raise ImageError(f"{name} is {width}x{height}; each side must be at least {min_side} pixels")


def _from_pil(image: Image.Image, name: str, *, max_pixels: int, min_side: int, background: float) -> Tensor:
    if image.format is not None and image.format not in ALLOWED_FORMATS + _PILLOW_JPEG_ALIASES:
        raise ImageError(f"{name} is a {image.format} image; only PNG, JPEG and WEBP are accepted")
    _check_size(image.size, name, max_pixels, min_side)  # header only: nothing is decoded yet
    orientation = _orientation(image)
    try:
        image.load()
        array = _pil_to_array(image, background)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{name} is too large: more than {max_pixels / 1e6:.0f} megapixels") from None
    except MemoryError:
        raise ImageError(f"{name} is too large to decode on this server") from None
    except _DECODE_ERRORS:
        raise _corrupt(name) from None
    array = apply_exif_orientation(array, orientation)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1..8; 1 (upright) when absent or unreadable (a broken EXIF block is no reason to refuse)."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_exif_orientation(array: np.ndarray, orientation: int) -> np.ndarray:  # [H, W, ...] -> [H', W', ...]
    """Turn an image stored with EXIF ``orientation`` (1..8) upright, as a viewer would show it."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, k=-1)  # stored rotated 90° counter-clockwise: turn clockwise
    if orientation == 7:
        return array.swapaxes(0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(array, k=1)
    return array


def _pil_to_array(image: Image.Image, background: float) -> np.ndarray:  # -> [H, W, 3] float32
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey PNG. Pillow < 10 reads it as "I" (int32) holding 0..65535.
        grey = np.asarray(image, dtype=np.float32)
        if grey.size and (grey.min() < 0 or grey.max() > _UINT16_MAX):
            raise ImageError("a 32-bit integer image is not supported; save it as 8- or 16-bit PNG")
        return np.repeat((grey / _UINT16_MAX)[..., None], 3, axis=-1)
    if mode == "F":
        raise ImageError("floating-point images are not supported; save it as 8- or 16-bit PNG")
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / _UINT8_MAX
        return _composite(rgba[..., :3], rgba[..., 3:], background)
    # CMYK (Pillow undoes Adobe's inverted CMYK while decoding), palette, 1-bit, grey, YCbCr: all via Pillow.
    return np.asarray(image.convert("RGB"), dtype=np.float32) / _UINT8_MAX


def _composite(rgb: np.ndarray, alpha: np.ndarray, background: float) -> np.ndarray:  # [H,W,3], [H,W,1] -> [H,W,3]
    return rgb * alpha + background * (1.0 - alpha)


def _png_is_16bit_colour(data: bytes) -> bool:
    """Whether a PNG's IHDR says 16 bits per sample in truecolour (2) or truecolour + alpha (6).

    IHDR is the first chunk: signature (8) + length (4) + type (4), then width, height (4 each), bit depth (1),
    colour type (1).
    """
    return len(data) >= 26 and data[12:16] == b"IHDR" and data[24] == 16 and data[25] in (2, 6)


def _decode_png16_colour(data: bytes, image: Image.Image, name: str, background: float) -> Tensor:
    """Decode a 16-bit RGB(A) PNG at full precision. Pillow reduces these to 8 bits, OpenCV's libpng path does not.

    OpenCV is used for the pixels only (``IMREAD_UNCHANGED`` ignores EXIF); orientation comes from Pillow.
    """
    import cv2  # imported here: only this rare path needs it

    orientation = _orientation(image)
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise _corrupt(name)
    if (array.shape[1], array.shape[0]) != image.size:
        raise _corrupt(name, "size differs from its header")
    channels = array.astype(np.float32) / _UINT16_MAX
    rgb = channels[..., 2::-1]  # OpenCV returns BGR(A)
    if array.shape[2] == 4:
        rgb = _composite(rgb, channels[..., 3:], background)
    rgb = apply_exif_orientation(rgb, orientation)
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32))


def _from_array(array: np.ndarray, *, max_pixels: int, min_side: int, background: float, name: str) -> Tensor:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        hint = (
            " (channels first? use array.transpose(1, 2, 0))" if array.ndim == 3 and array.shape[0] in (1, 3, 4) else ""
        )
        raise ImageError(
            f"an image array must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {list(array.shape)}{hint}"
        )
    _check_size((array.shape[1], array.shape[0]), name, max_pixels, min_side)
    if array.dtype == np.uint8:
        values = array.astype(np.float32) / _UINT8_MAX
    elif array.dtype == np.uint16:
        values = array.astype(np.float32) / _UINT16_MAX
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise ImageError("the image array contains NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < -_FLOAT_RANGE_TOLERANCE or high > 1.0 + _FLOAT_RANGE_TOLERANCE:
            raise ImageError(f"a float image array must be in [0, 1], got values in [{low:.4g}, {high:.4g}]")
        values = values.clip(0.0, 1.0)
    else:
        raise ImageError(f"an image array must be uint8, uint16 or float in [0, 1], got dtype {array.dtype}")
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    elif values.shape[2] == 4:
        values = _composite(values[..., :3], values[..., 3:], background)
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


# --- sizing -------------------------------------------------------------------------------------------------------


def check_aspect(width: int, height: int) -> None:
    """Raise :class:`ImageError` unless ``width:height`` lies between 1:3 and 3:1 (:data:`MAX_ASPECT_RATIO`)."""
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO + 1e-9:
        raise ImageError(
            f"the image is {width}x{height} (aspect ratio {ratio:.2f}:1); the aspect ratio must be between "
            f"1:{MAX_ASPECT_RATIO:g} and {MAX_ASPECT_RATIO:g}:1. Crop it first."
        )


def fit_size(
    image: Tensor,  # [H, W, 3]
    size: tuple[int, int] | None = None,  # (W, H)
    max_side: int = DEFAULT_MAX_SIDE,
    *,
    upscale: bool = False,
) -> Tensor:  # [H', W', 3]
    """Bring an image to a working size whose sides are multiples of 8, keeping its aspect ratio.

    Policy:

    * The aspect ratio must lie between 1:3 and 3:1 (:data:`MAX_ASPECT_RATIO`), else :class:`ImageError`.
    * ``size=None``: scale so the longest side is ``max_side`` (only down unless ``upscale``), then round each
      side down to a multiple of 8.
    * ``size=(W, H)``: exactly that size (each a positive multiple of 8).
    * The aspect ratio is never distorted: the image is scaled to cover the target and centre-cropped. With
      ``size=None`` the crop is under 8 scaled pixels on a side; :func:`resize_depth` uses the same geometry, so a
      depth map of the original photo stays aligned.
    * Downscaling is antialiased (bicubic); values stay in [0, 1].

    Example:
        >>> fit_size(torch.rand(300, 900, 3)).shape
        torch.Size([168, 512, 3])
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3], got {list(image.shape)}")
    height, width = image.shape[:2]
    check_aspect(width, height)
    target_w, target_h = target_size(width, height, size, max_side, upscale=upscale)
    if (target_w, target_h) == (width, height):
        return image
    x = image.permute(2, 0, 1)[None]  # [1, 3, H, W]
    x = _resize_cover_crop(x, target_w, target_h, mode="bicubic")
    return x[0].permute(1, 2, 0).clamp(0.0, 1.0).contiguous()


def target_size(
    width: int, height: int, size: tuple[int, int] | None, max_side: int = DEFAULT_MAX_SIDE, *, upscale: bool = False
) -> tuple[int, int]:
    """The (W, H) :func:`fit_size` produces for a ``width`` x ``height`` input."""
    if size is not None:
        if len(size) != 2 or not all(
            isinstance(s, (int, np.integer)) and s >= SIZE_MULTIPLE and s % SIZE_MULTIPLE == 0 for s in size
        ):
            raise ImageError(f"size must be (width, height), each a positive multiple of {SIZE_MULTIPLE}, got {size}")
        check_aspect(*size)
        return int(size[0]), int(size[1])
    if max_side < SIZE_MULTIPLE:
        raise ValueError(f"max_side must be at least {SIZE_MULTIPLE}, got {max_side}")
    scale = max_side / max(width, height)
    if not upscale:
        scale = min(scale, 1.0)

    def snap(side: int) -> int:
        return max(SIZE_MULTIPLE, int(side * scale + 1e-6) // SIZE_MULTIPLE * SIZE_MULTIPLE)

    return snap(width), snap(height)


def _cover_geometry(width: int, height: int, target_w: int, target_h: int) -> tuple[int, int, int, int]:
    """Scaled size (w, h) covering the target with the aspect kept, and the centre-crop offsets (x0, y0)."""
    scale = max(target_w / width, target_h / height)
    scaled_w = max(target_w, round(width * scale))
    scaled_h = max(target_h, round(height * scale))
    return scaled_w, scaled_h, (scaled_w - target_w) // 2, (scaled_h - target_h) // 2


def _resize_cover_crop(x: Tensor, target_w: int, target_h: int, mode: str) -> Tensor:  # [B, C, H, W] -> [B, C, h, w]
    height, width = x.shape[-2:]
    scaled_w, scaled_h, x0, y0 = _cover_geometry(width, height, target_w, target_h)
    if (scaled_w, scaled_h) != (width, height):
        if mode in ("bilinear", "bicubic"):
            x = F.interpolate(x, size=(scaled_h, scaled_w), mode=mode, align_corners=False, antialias=True)
        else:
            x = F.interpolate(x, size=(scaled_h, scaled_w), mode=mode)
    return x[..., y0 : y0 + target_h, x0 : x0 + target_w]


# --- output -------------------------------------------------------------------------------------------------------


def to_uint8(image: Tensor | np.ndarray) -> np.ndarray:  # [H, W, 3] or [H, W] float in [0, 1] -> uint8
    """Quantise a float image to uint8 (round to nearest, clipped). ``load_image`` of the result gives back the input
    to within half a level; uint8 inputs round-trip exactly.

    Raises:
        ValueError: the image contains NaN or infinite values (a failed model output must not be saved).
    """
    array = image.detach().float().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError("image contains NaN or infinite values; refusing to quantise it")
    return np.rint(array.clip(0.0, 1.0) * _UINT8_MAX).astype(np.uint8)


def encode_png(image: Tensor | np.ndarray) -> bytes:  # [H, W, 3] or [H, W] float in [0, 1]
    """PNG bytes of a float image (8 bits per channel)."""
    array = to_uint8(image)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"image must be [H, W, 3] or [H, W], got {list(array.shape)}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(path: str | Path, image: Tensor | np.ndarray) -> Path:  # [H, W, 3] or [H, W] float in [0, 1]
    """Write a float image as an 8-bit PNG atomically (a temporary file in the same folder, then renamed), so a
    crash never leaves a partial file behind. Returns the path written."""
    return atomic_write(path, encode_png(image))


# --- depth files --------------------------------------------------------------------------------------------------


def load_depth_file(
    source: str | Path | bytes | np.ndarray | Tensor,
    size: tuple[int, int] | None = None,  # (W, H)
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    png_unit_m: float | None = None,
) -> DepthFile:
    """Read a user-supplied z-depth map for the input photo.

    Accepted: a 16-bit grey PNG in **millimetres** (or in ``png_unit_m`` metres per step; a PNG inside a
    WorldStitch export uses its ``transforms.json``'s ``depth_unit_scale_factor``, which is coarser than 1 mm
    for scenes deeper than 65.5 m); a ``.npy`` array or a ``.npz`` archive (the array named
    ``depth``, else the first one) in **metres**; or an array/tensor in metres. The type is recognised from the
    content, not the extension. Arrays may be ``[H, W]``, ``[1, H, W]`` or ``[H, W, 1]``.

    Values that are 0, NaN, infinite, negative or above :data:`MAX_DEPTH_M` are masked out (set to 0, the
    project's "unknown"). If ``size`` differs from the file's, the map is resized with :func:`resize_depth`
    (same cover-and-crop geometry as :func:`fit_size`) and a warning says so.

    Raises:
        ImageError: unreadable or unsupported file, wrong shape/dtype, too large, or no valid value at all.
    """
    if size is not None and (len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size)):
        raise ValueError(f"size must be (width, height) in positive pixels, got {size}")
    warnings: list[str] = []
    if isinstance(source, Tensor):
        source = source.detach().cpu()
        source = (source.float() if source.is_floating_point() else source).numpy()
    if isinstance(source, np.ndarray):
        name = "the depth array"
        metres = _depth_array(source, name, max_pixels)
    else:
        data, name = _read_source(source, max_file_bytes, what="depth map")
        unit = png_unit_m if png_unit_m is not None else _export_png_unit(source)
        metres = _decode_depth(data, name, max_pixels, unit)
    depth = torch.from_numpy(np.ascontiguousarray(metres, dtype=np.float32))
    valid = torch.isfinite(depth) & (depth > 0) & (depth <= MAX_DEPTH_M)
    dropped = int((~valid).sum())
    if not bool(valid.any()):
        raise ImageError(
            f"{name} has no usable value: every pixel is 0, NaN, infinite, negative or above {MAX_DEPTH_M:g} m"
        )
    depth = torch.where(valid, depth, torch.zeros_like(depth))
    if dropped:
        warnings.append(
            f"{dropped / valid.numel():.1%} of the depth map was 0, NaN, infinite, negative or above "
            f"{MAX_DEPTH_M:g} m and is ignored"
        )
    median = float(depth[valid].median())
    if median > _SUSPICIOUS_MEDIAN_DEPTH_M:
        warnings.append(f"the median depth is {median:.0f} m; values are read as metres (PNG: millimetres)")
    height, width = depth.shape
    if size is not None and tuple(size) != (width, height):
        target_w, target_h = int(size[0]), int(size[1])
        if abs(width / height - target_w / target_h) > 0.01 * (target_w / target_h):
            warnings.append(
                f"the depth map is {width}x{height} but the image is {target_w}x{target_h} with another aspect "
                "ratio; it was scaled and centre-cropped to fit"
            )
        else:
            warnings.append(f"the depth map was resized from {width}x{height} to {target_w}x{target_h}")
        depth, valid = resize_depth(depth, valid, (target_w, target_h))
    return DepthFile(depth=depth, valid_mask=valid, warnings=warnings)


def resize_depth(
    depth: Tensor,  # [H, W] z-depth, 0 where invalid
    valid_mask: Tensor,  # [H, W] bool
    size: tuple[int, int],  # (W, H)
) -> tuple[Tensor, Tensor]:  # [H', W'], [H', W'] bool
    """Resize a sparse depth map without mixing valid and invalid values.

    Same geometry as :func:`fit_size` (scale to cover, centre crop). The mask is resized nearest-neighbour; depth is
    interpolated bilinearly from valid neighbours only (normalised convolution), so holes never bleed zeros in.
    """
    target_w, target_h = size
    weight = valid_mask.to(depth.dtype)
    stacked = torch.stack([depth * weight, weight])[None]  # [1, 2, H, W]
    # No antialias: averaging depth across an occlusion edge invents surfaces that are in neither layer.
    height, width = depth.shape
    scaled_w, scaled_h, x0, y0 = _cover_geometry(width, height, target_w, target_h)
    smooth = F.interpolate(stacked, size=(scaled_h, scaled_w), mode="bilinear", align_corners=False)
    nearest = F.interpolate(weight[None, None], size=(scaled_h, scaled_w), mode="nearest-exact")
    smooth = smooth[..., y0 : y0 + target_h, x0 : x0 + target_w]
    nearest = nearest[..., y0 : y0 + target_h, x0 : x0 + target_w]
    total = smooth[0, 1]
    valid = (nearest[0, 0] > 0.5) & (total > 1e-6)
    resized = torch.where(valid, smooth[0, 0] / total.clamp_min(1e-6), torch.zeros_like(total))
    return resized, valid


def _export_png_unit(source) -> float:
    """Metres per step of a depth PNG: the ``depth_unit_scale_factor`` of the WorldStitch export it sits in (a
    ``transforms.json`` two folders up that lists it), else 1 mm."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            data = json.loads((path.parent.parent / "transforms.json").read_text())
            listed = {(path.parent.parent / f["depth_file_path"]).resolve() for f in data["frames"]}
            unit = float(data["depth_unit_scale_factor"])
        except (OSError, ValueError, KeyError, TypeError):
            return 1.0 / MM_PER_M
        if path.resolve() in listed and 0.0 < unit <= 1.0:
            return unit
    return 1.0 / MM_PER_M


def _decode_depth(data: bytes, name: str, max_pixels: int, png_unit_m: float) -> np.ndarray:  # -> [H, W] metres
    found = _sniff_format(data[:32])
    if found == "PNG":
        return _depth_png(data, name, max_pixels) * np.float32(png_unit_m * MM_PER_M)
    if found == "numpy .npy":
        return _depth_array(_read_npy(io.BytesIO(data), name, max_pixels), name, max_pixels)
    if found == "zip / .npz":
        return _depth_array(_read_npz(data, name, max_pixels), name, max_pixels)
    what = f"a {found} file" if found else "not a depth map we can read"
    raise ImageError(f"{name} is {what}; depth must be a 16-bit PNG in millimetres or a .npy/.npz array in metres")


def _depth_png(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(f"{name} is {width}x{height}; the limit is {max_pixels / 1e6:.0f} megapixels")
        if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise ImageError(f"{name} is a {image.mode} PNG; a depth PNG must be 16-bit greyscale in millimetres")
        image.load()
        millimetres = np.asarray(image, dtype=np.float32)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{name} is too large: more than {max_pixels / 1e6:.0f} megapixels") from None
    except _DECODE_ERRORS:
        raise _corrupt(name) from None
    return millimetres / MM_PER_M


def _read_npy(handle, name: str, max_pixels: int) -> np.ndarray:
    """Read one ``.npy`` stream (a file object that can seek), refusing object arrays and checking the size from
    the header before anything is allocated."""
    try:
        start = handle.tell()
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(handle)
    except _DECODE_ERRORS:
        raise ImageError(f"{name} does not contain a valid .npy array") from None
    count = math.prod(shape)
    if dtype.hasobject:
        raise ImageError(f"{name} holds Python objects; save the depth as a float32 array")
    if count > max_pixels or count * dtype.itemsize > max_pixels * _MAX_DEPTH_ITEMSIZE:
        raise ImageError(
            f"{name} holds an array of shape {list(shape)} and dtype {dtype}; the limit is "
            f"{max_pixels / 1e6:.0f} million values"
        )
    try:
        handle.seek(start)
        return np.lib.format.read_array(handle, allow_pickle=False)
    except _DECODE_ERRORS:
        raise ImageError(f"{name} does not contain a valid .npy array (corrupt or truncated)") from None


def _read_npz(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """The array named ``depth`` (else the first) of an ``.npz``; only that member is decompressed, and only as
    many bytes as its checked header announces."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [n for n in archive.namelist() if n.endswith(".npy")]
            if not members:
                raise ImageError(f"{name} is a zip archive without .npy arrays")
            member = "depth.npy" if "depth.npy" in members else members[0]
            with archive.open(member) as stream:  # seekable: seeking back re-reads the (small) header
                return _read_npy(stream, name, max_pixels)
    except ImageError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, *_DECODE_ERRORS):
        raise ImageError(f"{name} is not a valid .npz archive (corrupt or truncated)") from None


def _depth_array(array: np.ndarray, name: str, max_pixels: int) -> np.ndarray:  # -> [H, W] float32 metres
    squeezed = array.reshape([s for s in array.shape if s != 1]) if array.ndim > 2 else array
    if squeezed.ndim != 2:
        raise ImageError(f"{name} must be a 2-D depth map [H, W], got shape {list(array.shape)}")
    if squeezed.size > max_pixels:
        raise ImageError(
            f"{name} is {squeezed.shape[1]}x{squeezed.shape[0]}; the limit is {max_pixels / 1e6:.0f} megapixels"
        )
    if not (np.issubdtype(squeezed.dtype, np.floating) or np.issubdtype(squeezed.dtype, np.integer)):
        raise ImageError(f"{name} must hold numbers in metres, got dtype {squeezed.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        return squeezed.astype(np.float32)
