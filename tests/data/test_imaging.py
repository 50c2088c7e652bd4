"""Defensive image opening on real and deliberately bad files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hemato.data.imaging import ImageError, load_array, open_image


def _real_image(pbc_mini: Path) -> Image.Image:
    return Image.open(next((pbc_mini / "MONOCYTE").glob("*.jpg"))).convert("RGB")


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def test_real_jpeg_opens_as_rgb(pbc_mini: Path) -> None:
    path = next((pbc_mini / "EOSINOPHIL").glob("*.jpg"))
    img = open_image(path)
    assert img.mode == "RGB"
    assert img.size[0] > 300 and img.size[1] > 300


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("I;16", "PNG"), ("RGB", "TIFF")],
)
def test_colour_modes_become_rgb(pbc_mini: Path, mode: str, fmt: str) -> None:
    rgb = _real_image(pbc_mini)
    if mode == "I;16":
        gray = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
        src = Image.fromarray(gray)
    else:
        src = rgb.convert(mode)
    out = open_image(_encode(src, fmt))
    arr = np.asarray(out)
    assert out.mode == "RGB" and arr.shape == (rgb.height, rgb.width, 3)
    assert arr.std() > 5, "conversion must keep the picture, not produce a flat image"


def test_sixteen_bit_keeps_contrast(pbc_mini: Path) -> None:
    gray = np.asarray(_real_image(pbc_mini).convert("L"), dtype=np.uint16) * 257
    out = np.asarray(open_image(_encode(Image.fromarray(gray), "PNG")))
    assert Image.fromarray(gray).mode.startswith("I;16")
    assert int(out.max()) - int(out.min()) > 150, "16-bit range must be stretched to 8 bits, not clipped"


def test_transparent_pixels_become_white() -> None:
    img = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    assert np.asarray(open_image(_encode(img, "PNG")))[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (b"this is a text file, not a picture", "not an image"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "not an image"),
    ],
)
def test_non_images_are_refused(payload: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        open_image(payload)


def test_truncated_jpeg_is_refused_with_name(pbc_mini: Path, tmp_path: Path) -> None:
    data = next((pbc_mini / "NEUTROPHIL").glob("*.jpg")).read_bytes()
    broken = tmp_path / "cut.jpg"
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="truncated") as info:
        open_image(broken)
    assert info.value.name == "cut.jpg"


def test_decompression_bomb_is_refused_before_decoding() -> None:
    big = _encode(Image.new("L", (9000, 9000)), "PNG")
    with pytest.raises(ImageError, match="pixel limit"):
        open_image(big)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot be read"):
        open_image(tmp_path / "nope.png")


def test_load_array_resizes(pbc_mini: Path) -> None:
    arr = load_array(next((pbc_mini / "LYMPHOCYTE").glob("*.jpg")), 64)
    assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8
