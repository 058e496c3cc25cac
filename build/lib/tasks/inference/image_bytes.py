"""Decoding images that arrive as bytes from outside (uploads, serving requests), safely.

The pixel count is read from the header before anything is decoded: a small file can declare
a gigantic image (a 30k × 30k PNG is a few kilobytes and would need 2.7 GB decoded).
"""

from __future__ import annotations

import io

import numpy as np

MAX_PIXELS = 50_000_000  # a 50-megapixel photo is the largest a phone takes


class ImageRejected(ValueError):
    """Bytes that are no image, or an image too large to decode; the message names it."""


def decode_image_bytes(
    data: bytes, max_pixels: int = MAX_PIXELS, name: str = "image"
) -> np.ndarray:
    """Decode ``data`` into a BGR array, refusing non-images and images over ``max_pixels``.

    Args:
        data: The encoded image (JPEG, PNG, WebP, BMP…).
        max_pixels: Images declaring more pixels are refused before decoding.
        name: How messages name the image (a file name, ``image 3`` of a request).

    Raises:
        ImageRejected: With a one-line message naming ``name`` and the problem.
    """
    import cv2
    from PIL import Image

    if not data:
        raise ImageRejected(f"{name} is empty.")
    too_many = f"{name} has too many pixels; images up to {max_pixels:,} are accepted."
    try:
        # Pillow reads only the header here: the pixel count is known before any decoding.
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Image.DecompressionBombError:  # beyond Pillow's own limit (~179 Mpx)
        raise ImageRejected(too_many) from None
    except Exception:  # UnidentifiedImageError, or what a plugin raises (ultralytics patches open)
        raise ImageRejected(f"{name} is not an image (expected JPEG, PNG, WebP, BMP…).") from None
    if width * height > max_pixels:
        raise ImageRejected(
            f"{name} has {width}×{height} pixels; images up to {max_pixels:,} are accepted."
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageRejected(f"{name} could not be decoded as an image (damaged file?).")
    return image
