"""The image boundary: formats, sizes, bombs, corruption, 16-bit, alpha, CMYK, EXIF, sizing and depth files."""

from __future__ import annotations

import ast
import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from core.images import (
    DEFAULT_MIN_SIDE,
    MAX_DEPTH_M,
    SIZE_MULTIPLE,
    ImageError,
    fit_size,
    load_depth_file,
    load_image,
    resize_depth,
    save_png,
    target_size,
    to_uint8,
)

HEIGHT, WIDTH = 72, 96


def gradient_rgb(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:  # [H, W, 3] uint8
    rows, cols = np.mgrid[:height, :width]
    return np.stack([cols * 255 // (width - 1), rows * 255 // (height - 1), (rows + cols) % 256], -1).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_header_only_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` zeros, built row by row so it never exists decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_block = 256
    block = row * rows_per_block
    parts = [compressor.compress(block) for _ in range(height // rows_per_block)]
    parts += [compressor.compress(row * (height % rows_per_block)), compressor.flush()]
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


# --- inputs agree -------------------------------------------------------------------------------------------------


def test_pil_numpy_bytes_path_and_tensor_inputs_agree(tmp_path):
    pixels = gradient_rgb()
    data = encode(Image.fromarray(pixels), "PNG")
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    expected = torch.from_numpy(pixels.astype(np.float32) / 255.0)
    for source in (data, path, str(path), Image.fromarray(pixels), pixels, expected.clone()):
        image = load_image(source)
        assert image.dtype == torch.float32 and image.shape == (HEIGHT, WIDTH, 3)
        torch.testing.assert_close(image, expected, rtol=0, atol=1e-6)
    assert np.array_equal(to_uint8(load_image(data)), pixels)  # uint8 round-trips exactly


def test_numpy_dtypes_and_range_checks():
    grey16 = np.arange(HEIGHT * WIDTH, dtype=np.uint16).reshape(HEIGHT, WIDTH) * 9
    image = load_image(grey16)
    torch.testing.assert_close(image[..., 0], torch.from_numpy(grey16 / 65535.0).float())
    assert torch.equal(image[..., 0], image[..., 2])
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(np.full((HEIGHT, WIDTH, 3), 2.0, np.float32))
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((HEIGHT, WIDTH, 3), np.nan, np.float32))
    with pytest.raises(ImageError, match="dtype"):
        load_image(np.zeros((HEIGHT, WIDTH, 3), np.int64))
    with pytest.raises(ImageError, match="channels first"):
        load_image(np.zeros((3, HEIGHT, WIDTH), np.uint8))


# --- precision, alpha, colour modes, EXIF -------------------------------------------------------------------------


def test_16bit_grey_png_keeps_precision():
    values = (np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) * 7 % 65536).astype(np.uint16)
    image = load_image(encode(Image.fromarray(values), "PNG"))
    torch.testing.assert_close(image[..., 1], torch.from_numpy(values / 65535.0).float(), rtol=0, atol=1e-7)
    assert len(torch.unique(image)) > 256  # more levels than 8 bits could hold


def test_16bit_colour_png_keeps_precision():
    cv2 = pytest.importorskip("cv2")
    rgb16 = (np.random.default_rng(0).random((HEIGHT, WIDTH, 3)) * 65535).astype(np.uint16)
    ok, buffer = cv2.imencode(".png", rgb16[..., ::-1])  # OpenCV writes BGR
    assert ok
    image = load_image(buffer.tobytes())
    torch.testing.assert_close(image, torch.from_numpy(rgb16 / 65535.0).float(), rtol=0, atol=1e-7)


def test_rgba_and_la_are_composited_over_white():
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[..., 0] = 255  # red ...
    rgba[:, : WIDTH // 2, 3] = 255  # ... opaque on the left, transparent on the right
    image = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    torch.testing.assert_close(image[0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(image[0, -1], torch.ones(3))
    la = Image.fromarray(np.stack([np.zeros((HEIGHT, WIDTH), np.uint8), rgba[..., 3]], -1), "LA")
    image = load_image(encode(la, "PNG"))
    torch.testing.assert_close(image[0, 0], torch.zeros(3))
    torch.testing.assert_close(image[0, -1], torch.ones(3))
    half = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), background=0.5)
    torch.testing.assert_close(half[0, -1], torch.full((3,), 0.5))


def test_palette_grey_and_cmyk_become_rgb():
    palette = Image.fromarray(gradient_rgb()).convert("P")
    assert load_image(encode(palette, "PNG")).shape == (HEIGHT, WIDTH, 3)
    grey = Image.fromarray(gradient_rgb()[..., 0])
    image = load_image(encode(grey, "PNG"))
    assert torch.equal(image[..., 0], image[..., 1])
    cmyk = Image.new("CMYK", (WIDTH, HEIGHT), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    image = load_image(encode(cmyk, "JPEG", quality=95))
    torch.testing.assert_close(image.mean(dim=(0, 1)), torch.tensor([1.0, 0.0, 0.0]), rtol=0, atol=0.03)


def test_exif_rotated_jpeg_comes_out_upright():
    pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)  # landscape, white block at the top-left
    pixels[:20, :30] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = encode(image, "JPEG", quality=95, exif=exif.tobytes())
    upright = load_image(data)
    assert upright.shape == (WIDTH, HEIGHT, 3)  # portrait now
    assert upright[:30, -20:].mean() > 0.9 and upright[-30:, :20].mean() < 0.1  # block now at the top-right
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert np.abs(to_uint8(upright).astype(int) - reference).max() <= 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_exif_orientations_match_pillow(orientation):
    image = Image.fromarray(gradient_rgb())
    exif = image.getexif()
    exif[0x0112] = orientation
    data = encode(image, "PNG", exif=exif.tobytes())
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert np.array_equal(to_uint8(load_image(data)), reference)


# --- refusals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_refused_by_name(fmt):
    data = encode(Image.fromarray(gradient_rgb()), fmt)
    with pytest.raises(ImageError, match=f"{fmt} file; only PNG, JPEG and WEBP"):
        load_image(data)


def test_pil_image_of_other_format_is_refused():
    opened = Image.open(io.BytesIO(encode(Image.fromarray(gradient_rgb()), "GIF")))
    with pytest.raises(ImageError, match="GIF"):
        load_image(opened)


def test_webp_is_accepted():
    image = load_image(encode(Image.fromarray(gradient_rgb()), "WEBP", lossless=True))
    assert np.array_equal(to_uint8(image), gradient_rgb())


def test_too_small_image_names_the_minimum():
    with pytest.raises(ImageError, match=f"at least {DEFAULT_MIN_SIDE} pixels"):
        load_image(encode(Image.fromarray(gradient_rgb(32, 200)), "PNG"))


@pytest.mark.parametrize("side", [8000, 30000])  # above our 40 MP cap; above Pillow's own bomb limit
def test_decompression_bomb_is_refused_without_decoding(side):
    bomb = png_header_only_bomb(side, side)
    assert len(bomb) < 200_000  # tiny file ...
    # ... that would need side² bytes (64 MB / 900 MB) decoded. Measured in a fresh process: this one's
    # high-water mark was set by earlier tests and would hide growth below it.
    child = subprocess.run([sys.executable, "-c", BOMB_CHILD], input=bomb, capture_output=True, timeout=300)
    assert child.returncode == 0, child.stderr.decode()[-2000:]
    message, grown_kib = ast.literal_eval(child.stdout.decode().strip().splitlines()[-1])
    assert "megapixels" in message
    assert grown_kib / 1024 < 32


BOMB_CHILD = """
import resource, sys
from core.images import ImageError, load_image
data = sys.stdin.buffer.read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
try:
    load_image(data)
    message = "decoded"
except ImageError as err:
    message = str(err)
print(repr((message, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)))
"""


def test_error_messages_carry_only_the_file_name(tmp_path):
    path = tmp_path / "deep" / "secret_dir" / "holiday.gif"
    path.parent.mkdir(parents=True)
    path.write_bytes(encode(Image.fromarray(gradient_rgb()), "GIF"))
    with pytest.raises(ImageError) as caught:
        load_image(path)
    assert "holiday.gif" in str(caught.value) and "secret_dir" not in str(caught.value)
    with pytest.raises(ImageError, match="not found") as caught:
        load_image(tmp_path / "nowhere" / "missing.png")
    assert "nowhere" not in str(caught.value)


def test_fuzzed_png_jpeg_webp_raise_only_image_error():
    rng = np.random.default_rng(1234)
    sources = [
        encode(Image.fromarray(gradient_rgb()), "PNG"),
        encode(Image.fromarray(gradient_rgb()).convert("RGBA"), "PNG"),
        encode(Image.fromarray(gradient_rgb()), "JPEG", quality=90),
        encode(Image.fromarray(gradient_rgb()), "JPEG", progressive=True),
        encode(Image.fromarray(gradient_rgb()), "WEBP"),
    ]
    cv2 = pytest.importorskip("cv2")
    sources.append(cv2.imencode(".png", gradient_rgb().astype(np.uint16) * 257)[1].tobytes())  # 16-bit colour path
    outcomes = {"decoded": 0, "refused": 0}
    for data in sources:
        for _ in range(150):
            mutated = bytearray(data)
            if rng.random() < 0.3:
                mutated = mutated[: rng.integers(0, len(mutated))]
            else:
                for position in rng.integers(0, len(mutated), size=rng.integers(1, 8)):
                    mutated[position] = rng.integers(0, 256)
            try:
                image = load_image(bytes(mutated))
            except ImageError:
                outcomes["refused"] += 1
            else:
                assert image.dtype == torch.float32 and bool(torch.isfinite(image).all())
                outcomes["decoded"] += 1
    assert outcomes["refused"] > 100  # the fuzzing did hit the error paths


# --- sizing -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(300, 900), (900, 300), (480, 640), (1000, 999), (100, 150), (64, 64)])
def test_fit_size_multiples_of_8_and_aspect_kept(height, width):
    image = torch.rand(height, width, 3)
    fitted = fit_size(image, max_side=512)
    out_h, out_w = fitted.shape[:2]
    assert out_h % SIZE_MULTIPLE == 0 and out_w % SIZE_MULTIPLE == 0
    assert max(out_h, out_w) <= 512 and max(out_h, out_w) <= max(height, width)  # never upscaled by default
    assert abs(out_w / out_h - width / height) <= SIZE_MULTIPLE / min(out_h, out_w)
    assert float(fitted.min()) >= 0.0 and float(fitted.max()) <= 1.0


def test_fit_size_explicit_size_upscale_and_aspect_policy():
    image = torch.rand(100, 150, 3)
    assert fit_size(image, size=(64, 48)).shape == (48, 64, 3)
    assert fit_size(image, max_side=512, upscale=True).shape == (336, 512, 3)
    with pytest.raises(ImageError, match="multiple of 8"):
        fit_size(image, size=(65, 48))
    with pytest.raises(ImageError, match="aspect ratio"):
        fit_size(torch.rand(100, 400, 3))
    assert target_size(4000, 3000, None) == (512, 384)


def test_save_png_round_trip_is_atomic(tmp_path):
    pixels = gradient_rgb()
    path = save_png(tmp_path / "out.png", torch.from_numpy(pixels / 255.0))
    assert np.array_equal(np.asarray(Image.open(path)), pixels)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match="NaN"):
        save_png(tmp_path / "bad.png", torch.full((8, 8, 3), float("nan")))
    assert not (tmp_path / "bad.png").exists()


# --- depth files --------------------------------------------------------------------------------------------------


def depth_metres(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:  # [H, W] in (1, 5) m
    rows, cols = np.mgrid[:height, :width]
    return (1.0 + 4.0 * (rows + cols) / (height + width)).astype(np.float32)


def test_depth_png_in_millimetres():
    metres = depth_metres()
    millimetres = np.rint(metres * 1000).astype(np.uint16)
    millimetres[0, 0] = 0  # unknown
    result = load_depth_file(encode(Image.fromarray(millimetres), "PNG"))
    assert result.depth.dtype == torch.float32 and result.depth.shape == (HEIGHT, WIDTH)
    assert not bool(result.valid_mask[0, 0]) and float(result.depth[0, 0]) == 0.0
    torch.testing.assert_close(result.depth[1:], torch.from_numpy(metres[1:]), rtol=0, atol=6e-4)


def test_depth_npy_and_npz(tmp_path):
    metres = depth_metres()
    npy = tmp_path / "depth.npy"
    np.save(npy, metres)
    npz = tmp_path / "scene.npz"
    np.savez(npz, confidence=np.ones_like(metres), depth=metres[None])  # "depth" wins over the first array
    for source in (npy, npz, npy.read_bytes()):
        result = load_depth_file(source)
        torch.testing.assert_close(result.depth, torch.from_numpy(metres))
        assert bool(result.valid_mask.all()) and result.warnings == []
    first_only = tmp_path / "first.npz"
    np.savez(first_only, metres * 2)
    torch.testing.assert_close(load_depth_file(first_only).depth, torch.from_numpy(metres * 2))


def test_depth_invalid_values_are_masked_with_a_warning():
    metres = depth_metres()
    metres[0, :4] = [0.0, np.nan, np.inf, -1.0]
    metres[1, 0] = MAX_DEPTH_M * 2
    result = load_depth_file(metres)
    assert int((~result.valid_mask).sum()) == 5
    assert bool((result.depth[~result.valid_mask] == 0).all()) and bool(torch.isfinite(result.depth).all())
    assert any("ignored" in w for w in result.warnings)


def test_depth_wrong_size_is_resized_with_a_warning():
    metres = depth_metres(HEIGHT * 2, WIDTH * 2)
    metres[:, :10] = np.nan  # a hole at the left edge must not bleed zeros into its neighbours
    result = load_depth_file(metres, size=(WIDTH, HEIGHT))
    assert result.depth.shape == (HEIGHT, WIDTH)
    assert any("resized" in w for w in result.warnings)
    assert not bool(result.valid_mask[:, :4].any()) and bool(result.valid_mask[:, 6:].all())
    assert float(result.depth[result.valid_mask].min()) >= 1.0  # no mixing with the invalid zeros
    reference = torch.from_numpy(depth_metres())
    assert float((result.depth - reference)[:, 8:].abs().max()) < 0.05


def test_resize_depth_keeps_valid_values_apart():
    depth = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    valid = depth > 0
    resized, resized_valid = resize_depth(depth, valid, (4, 4))
    assert torch.equal(resized_valid[:, :2], torch.ones(4, 2, dtype=torch.bool))
    assert torch.equal(resized[resized_valid], torch.ones(8))


def test_bad_depth_files_raise_image_error(tmp_path):
    with pytest.raises(ImageError, match="16-bit greyscale"):
        load_depth_file(encode(Image.fromarray(gradient_rgb()), "PNG"))
    with pytest.raises(ImageError, match="no usable value"):
        load_depth_file(np.zeros((HEIGHT, WIDTH), np.float32))
    with pytest.raises(ImageError, match="2-D"):
        load_depth_file(np.ones((2, HEIGHT, WIDTH), np.float32))
    with pytest.raises(ImageError, match="GIF"):
        load_depth_file(encode(Image.fromarray(gradient_rgb()), "GIF"))
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"depth": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageError, match="Python objects"):
        load_depth_file(pickled)
    huge_header = io.BytesIO()
    np.lib.format.write_array_header_1_0(huge_header, {"descr": "<f4", "fortran_order": False, "shape": (90000, 90000)})
    with pytest.raises(ImageError, match="limit"):
        load_depth_file(huge_header.getvalue())  # 8.1 G values announced, none present
    good = io.BytesIO()
    np.save(good, depth_metres())
    for cut in (10, 100, len(good.getvalue()) - 5):
        with pytest.raises(ImageError):
            load_depth_file(good.getvalue()[:cut])


def test_multi_picture_jpeg_from_a_phone_is_accepted():
    pixels = gradient_rgb()
    data = encode(Image.fromarray(pixels), "MPO", save_all=True, append_images=[Image.fromarray(255 - pixels)])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert np.abs(to_uint8(load_image(data)).astype(int) - pixels).mean() < 3  # the first picture
