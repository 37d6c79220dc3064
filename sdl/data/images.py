"""Decoding images safely: one function that opens, checks and converts to RGB."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from sdl.safety.errors import UserError

# Pillow's default limit (~89 M pixels) guards against decompression bombs; be explicit.
Image.MAX_IMAGE_PIXELS = 89_478_485


class ImageDecodeError(UserError, ValueError):
    """An image file cannot be decoded; the message names the file and the reason."""


def load_rgb(source: str | Path | bytes, max_pixels: int | None = None) -> Image.Image:
    """Decode an image (path or bytes) fully, apply EXIF orientation, return it as 8-bit RGB.
    ``max_pixels``: refuse larger images before decoding them (Pillow's own bomb check only
    raises at twice its limit)."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
        with handle, Image.open(handle) as image:
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageDecodeError(f"{name}: {width} x {height} pixels, more than the {max_pixels:,} allowed")
            image.load()  # decode now: truncated files fail here, not later in a worker
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                background = Image.new("RGB", image.size, (255, 255, 255))
                rgba = image.convert("RGBA")
                background.paste(rgba, mask=rgba.getchannel("A"))
                return background
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit grey: scale to 8 bits rather than clip (convert("L") would clip).
                image = image.point(lambda v: v / 256).convert("L")
            return image.convert("RGB")
    except ImageDecodeError:
        raise
    except FileNotFoundError as error:
        raise ImageDecodeError(f"{name}: file not found") from error
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(f"{name}: too large to decode safely ({error})") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(f"{name}: not a decodable image ({error})") from error
