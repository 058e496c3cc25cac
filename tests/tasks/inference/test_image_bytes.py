"""Untrusted image bytes: what decodes, and the one-line reasons for what does not."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tasks.inference.image_bytes import ImageRejected, decode_image_bytes


def _encoded(mode: str, fmt: str = "PNG", size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color=128 if mode in ("L", "1") else None).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGBA", "RGB", "1"])
def test_grayscale_alpha_and_bilevel_images_decode_to_three_channels(mode: str):
    image = decode_image_bytes(_encoded(mode))
    assert image.shape == (48, 64, 3) and image.dtype.name == "uint8"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "upload.jpg is empty."),
        (b"hello, this is text", "upload.jpg is not an image (expected JPEG, PNG, WebP, BMP…)."),
    ],
)
def test_empty_and_non_image_bytes_are_named(data: bytes, message: str):
    with pytest.raises(ImageRejected) as problem:
        decode_image_bytes(data, name="upload.jpg")
    assert str(problem.value) == message


def test_a_truncated_jpeg_is_refused_not_half_decoded():
    jpeg = _encoded("RGB", "JPEG", (640, 480))
    with pytest.raises(ImageRejected, match=r"cut\.jpg"):
        decode_image_bytes(jpeg[:200], name="cut.jpg")


def test_the_pixel_limit_is_checked_on_the_header():
    with pytest.raises(ImageRejected, match="has 640×480 pixels; images up to 1,000 are"):
        decode_image_bytes(_encoded("RGB", size=(640, 480)), max_pixels=1_000)
