"""Checking uploaded files before they reach the recognizer: size, decodability, dimensions.

Every problem becomes an :class:`UploadProblem` naming the file, never an exception on the page.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tasks.inference.image_bytes import ImageRejected, decode_image_bytes

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class UploadProblem:
    """Why a file cannot be recognized, in words for the page."""

    name: str
    message: str


@dataclass(frozen=True, slots=True)
class UploadedImage:
    """A decoded upload, ready for the recognizer."""

    name: str
    image: np.ndarray  # BGR uint8
    original_size: tuple[int, int]  # (width, height) before any downscaling

    @property
    def downscaled(self) -> bool:
        """Whether the image was made smaller to fit the size limit."""
        h, w = self.image.shape[:2]
        return (w, h) != self.original_size


def read_upload(
    name: str, data: bytes, max_bytes: int, max_side: int, max_pixels: int
) -> UploadedImage | UploadProblem:
    """Decode an uploaded file into a BGR image, downscaled to ``max_side`` if larger.

    Args:
        name: The file name as uploaded (only used in messages).
        data: The file's bytes.
        max_bytes: Larger files are refused.
        max_side: The longest side kept; larger images are shrunk (aspect kept).
        max_pixels: Images declaring more pixels are refused before decoding (a small file
            can declare a gigantic image).

    Returns:
        The image, or the problem found.
    """
    if len(data) > max_bytes:
        return UploadProblem(
            name, f"{name} is {len(data) / MB:.1f} MB; the limit is {max_bytes / MB:.0f} MB."
        )
    try:
        image = decode_image_bytes(data, max_pixels, name)
    except ImageRejected as problem:
        return UploadProblem(name, str(problem))
    h, w = image.shape[:2]
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return UploadedImage(name, image, (w, h))
