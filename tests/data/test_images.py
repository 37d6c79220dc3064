"""Tests of sdl.data.images.load_rgb on the odd files real datasets contain."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from PIL import Image

from sdl.data.images import ImageDecodeError, load_rgb


def _save(image: Image.Image, path: Path, fmt: str, **kwargs) -> Path:
    image.save(path, format=fmt, **kwargs)
    return path


def test_rgb_png_unchanged(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    path = _save(Image.fromarray(pixels), tmp_path / "a.png", "PNG")
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (5, 6)
    np.testing.assert_array_equal(np.asarray(out), pixels)
    np.testing.assert_array_equal(np.asarray(load_rgb(path.read_bytes())), pixels)


def test_png_alpha_composited_on_white(tmp_path):
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 0)  # fully transparent
    rgba[0, 1] = (10, 20, 30, 255)  # opaque
    rgba[0, 2] = (0, 0, 0, 102)  # 40 % black over white
    out = np.asarray(load_rgb(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png", "PNG")))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[0, 1]) == (10, 20, 30)
    expected = 255 * (1 - 102 / 255)  # 153
    assert np.all(np.abs(out[0, 2].astype(int) - expected) <= 1)


def test_grey_alpha_and_palette_transparency(tmp_path):
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8), "LA")
    out = np.asarray(load_rgb(_save(la, tmp_path / "la.png", "PNG")))
    assert out[0].tolist() == [[255, 255, 255], [0, 0, 0]]
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    out = np.asarray(load_rgb(_save(palette, tmp_path / "p.png", "PNG", transparency=0)))
    assert out[0].tolist() == [[255, 255, 255], [0, 0, 255]]


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    path = _save(cmyk, tmp_path / "c.jpg", "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    out = np.asarray(load_rgb(path)).astype(int)
    assert out.shape == (16, 16, 3)
    assert np.all(np.abs(out - [255, 0, 0]) <= 8)


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "g16.png", "PNG")
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(load_rgb(path))
    assert out.shape == (1, 4, 3)
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]  # v / 256, not min(v, 255)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()


def test_grayscale(tmp_path):
    grey = np.array([[0, 100, 255]], dtype=np.uint8)
    out = np.asarray(load_rgb(_save(Image.fromarray(grey, "L"), tmp_path / "l.png", "PNG")))
    assert out.tolist() == [[[0, 0, 0], [100, 100, 100], [255, 255, 255]]]


def test_exif_orientation_applied(tmp_path):
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high
    stored[:8, :8] = (255, 0, 0)  # red block top-left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(Image.fromarray(stored), tmp_path / "r.jpg", "JPEG", exif=exif, quality=95)
    out = load_rgb(path)
    assert out.size == (20, 40)  # width and height swapped
    pixels = np.asarray(out).astype(int)
    # clockwise rotation takes the stored top-left corner to the top-right corner
    assert np.all(np.abs(pixels[1:6, 14:19] - [255, 0, 0]) <= 30)
    assert np.all(pixels[1:6, 1:6] <= 30)


def _jpeg_bytes() -> bytes:
    noise = np.random.default_rng(1).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("truncated.jpg", _jpeg_bytes()[:1500]),
        ("empty.jpg", b""),
        ("error_page.jpg", b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n"),
    ],
)
def test_undecodable_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=name.replace(".", r"\.")):
        load_rgb(path)


def test_truncated_bytes():
    with pytest.raises(ImageDecodeError, match="<bytes>"):
        load_rgb(_jpeg_bytes()[:-200])
    assert np.asarray(load_rgb(_jpeg_bytes())).shape == (64, 64, 3)  # the untruncated file decodes


def test_missing_file(tmp_path):
    path = tmp_path / "gone.png"
    with pytest.raises(ImageDecodeError, match="gone.png.*not found"):
        load_rgb(path)


def test_decompression_bomb(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (64, 64)), tmp_path / "bomb.png", "PNG")
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > 2 x limit
    with pytest.raises(ImageDecodeError, match="bomb.png"):
        load_rgb(path)
    monkeypatch.undo()
    assert load_rgb(path).size == (64, 64)
