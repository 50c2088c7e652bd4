"""Defensive image opening: every image the app touches goes through here.

Converts the colour modes found in the wild (16-bit, CMYK, RGBA, palette, grayscale) to 8-bit RGB and
refuses what cannot be used (non-images, truncated files, decompression-bomb sizes) with a reason a
person can act on.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
MAX_PIXELS = 40_000_000
MAX_FILE_BYTES = 50 * 1024 * 1024

ImageSource = str | Path | bytes | IO[bytes]


class ImageError(ValueError):
    """An image that cannot be used, with a human-readable reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def _name_of(source: ImageSource) -> str:
    if isinstance(source, str | Path):
        return Path(source).name
    if isinstance(source, bytes):
        return "uploaded image"
    return Path(getattr(source, "name", "uploaded image")).name


def _read_bytes(source: ImageSource, name: str) -> bytes:
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, str | Path):
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ImageError(name, f"cannot be read ({exc.strerror or exc}).") from exc
        if size > MAX_FILE_BYTES:
            raise ImageError(name, f"file is {size / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB.")
        data = path.read_bytes()
    else:
        data = source.read(MAX_FILE_BYTES + 1)
    if not data:
        raise ImageError(name, "the file is empty.")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(name, f"file is larger than the {MAX_FILE_BYTES / 1e6:.0f} MB limit.")
    return data


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.min(arr)), float(np.max(arr))
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(scaled.astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def open_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open an image from a path, bytes or file object as a fully loaded 8-bit RGB PIL image.

    Args:
        source: File path, raw bytes or a binary file object (e.g. a Streamlit upload).
        max_pixels: Refuse images with more pixels than this (decompression-bomb guard).

    Returns:
        The image in RGB mode, EXIF orientation applied.

    Raises:
        ImageError: The source is not a usable image; ``reason`` says why and what to do.
    """
    name = _name_of(source)
    data = _read_bytes(source, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(
                    name,
                    f"is {width}×{height} pixels, over the {max_pixels:,}-pixel limit; crop or downscale it first.",
                )
            if img.format == "GIF" and getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(name, "is not an image file Pillow can read (use JPEG, PNG, BMP or TIFF).") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(name, "is too large to open safely; crop or downscale it first.") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(name, f"is damaged or truncated ({exc}); re-export or re-download it.") from exc
    if img.width == 0 or img.height == 0:
        raise ImageError(name, "has no pixels.")
    img = ImageOps.exif_transpose(img) or img
    return _to_rgb(img)


def probe_image(path: Path) -> str | None:
    """Check a file cheaply (header and full decode); return a reason if unusable, else None."""
    try:
        open_image(path)
    except ImageError as exc:
        return exc.reason
    return None


def load_array(source: ImageSource, size: int | None = None) -> np.ndarray:
    """Return an image as a ``uint8`` array of shape (H, W, 3), optionally resized to ``size``×``size``."""
    img = open_image(source)
    if size is not None:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def is_image_path(path: Path) -> bool:
    """True when the file name has an image extension the app accepts."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


ImageLike = Image.Image | np.ndarray


def resize_image(image: ImageLike, size: int) -> np.ndarray:
    """A PIL image or (H, W, 3)/(H, W) array as a ``uint8`` (size, size, 3) array, resized like ``load_array``."""
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ValueError(f"Expected an (H, W, 3) image array, got shape {arr.shape}.")
        arr = arr[..., :3]
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        if arr.shape[:2] == (size, size):
            return arr
        image = Image.fromarray(arr)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def prepare_batch(images: np.ndarray | Sequence[ImageLike], size: int) -> np.ndarray:
    """Stack images into a float32 (N, size, size, 3) batch of raw [0, 255] pixels (the models' input)."""
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1:3] == (size, size):
        return images[..., :3].astype(np.float32, copy=False)
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    if len(images) == 0:
        return np.zeros((0, size, size, 3), dtype=np.float32)
    return np.stack([resize_image(img, size) for img in images]).astype(np.float32)
