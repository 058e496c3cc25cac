"""Fixtures of the reliability matrix: a tiny clean 26-letter YOLO dataset and image encoders.

Every image is made here with numpy/OpenCV/Pillow (a few hundred bytes each), so each bad-input
case starts from a dataset that validates cleanly and changes exactly one thing.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from tasks.core.records import LETTERS

# train: a (A), b (B); valid: c (C); test: d (Z): every split has one clean labelled image.
CLEAN = {"train": {"a": 0, "b": 1}, "valid": {"c": 2}, "test": {"d": 25}}

Encoder = Callable[..., bytes]


def encode(
    fmt: str = ".jpg", seed: int = 0, size: tuple[int, int] = (64, 48), mode: str = "RGB"
) -> bytes:
    """Encoded bytes of a noise image; a different seed gives different bytes.

    Args:
        fmt: ``.jpg`` or ``.png``.
        seed: Seed of the pixels.
        size: (width, height).
        mode: ``RGB``, ``RGBA`` (alpha channel) or ``L`` (grayscale).
    """
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), np.uint8)
    buffer = io.BytesIO()
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)  # mode from the shape
    image.save(buffer, format="JPEG" if fmt == ".jpg" else "PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` × ``height`` pixels but holds a 1×1 image's data.

    Only a header check can tell its size; decoding it would fail or allocate the full image.
    """
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    # IHDR follows the 8-byte signature: length(4) type(4) width(4) height(4) ... crc(4).
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture
def encoder() -> Encoder:
    """:func:`encode`, for tests that need more images."""
    return encode


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A clean YOLO dataset of 26 letters with one labelled image per file in :data:`CLEAN`."""
    root = tmp_path / "asl"
    seed = 0
    for split, items in CLEAN.items():
        for kind in ("images", "labels"):
            (root / split / kind).mkdir(parents=True)
        for stem, class_id in items.items():
            seed += 1
            (root / split / "images" / f"{stem}.jpg").write_bytes(encode(".jpg", seed))
            (root / split / "labels" / f"{stem}.txt").write_text(f"{class_id} 0.5 0.5 0.5 0.5\n")
    meta = {
        "path": ".",
        "train": "train/images",
        "val": "valid/images",
        "test": "test/images",
        "nc": len(LETTERS),
        "names": list(LETTERS),
    }
    (root / "data.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return root


def decodes(data: bytes) -> bool:
    """Whether OpenCV decodes ``data`` (how the validator and training read images)."""
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    except cv2.error:
        return False


@pytest.fixture
def opencv_decodes() -> Callable[[bytes], bool]:
    """:func:`decodes`, to check that a broken file is really broken for OpenCV."""
    return decodes


@pytest.fixture
def huge_png() -> Callable[[int, int], bytes]:
    """:func:`png_header_only`."""
    return png_header_only
