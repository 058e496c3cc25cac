"""A preview grid of (augmented) train samples with their boxes and letters."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tasks.core.files import write_atomic
from tasks.data.yolo_format import list_images, read_labels


def _tile(image: np.ndarray, label: Path, names: Sequence[str], size: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    tile = np.full((size, size, 3), 114, dtype=np.uint8)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    tile[top : top + new_h, left : left + new_w] = cv2.resize(
        image, (new_w, new_h), interpolation=cv2.INTER_AREA
    )
    class_ids, boxes = read_labels(label)
    for cls, (cx, cy, w, h) in zip(class_ids, boxes, strict=True):
        x1 = left + round((cx - w / 2) * new_w)
        y1 = top + round((cy - h / 2) * new_h)
        x2 = left + round((cx + w / 2) * new_w)
        y2 = top + round((cy + h / 2) * new_h)
        cv2.rectangle(tile, (x1, y1), (x2, y2), (0, 255, 0), 2)
        text = names[cls] if 0 <= cls < len(names) else str(cls)
        (text_w, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.7, 2)
        # Keep the letter inside the tile when the box touches the top edge.
        y_text = max(y1, text_h + 6)
        cv2.rectangle(tile, (x1, y_text - text_h - 6), (x1 + text_w + 6, y_text), (0, 255, 0), -1)
        cv2.putText(tile, text, (x1 + 3, y_text - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2)
    return tile


def preview_grid(
    dataset_root: Path,
    names: Sequence[str],
    path: Path,
    n: int = 16,
    seed: int = 0,
    tile: int = 256,
) -> Path:
    """Draw a grid of train samples with boxes and letters, preferring augmented copies.

    Args:
        dataset_root: A YOLO dataset folder (``train/images``, ``train/labels``).
        names: Class names, index = class id.
        path: Image file to write (its suffix picks the format); replaced atomically.
        n: Number of samples; the grid is ``ceil(sqrt(n))`` tiles wide.
        seed: Which samples to pick.
        tile: Tile edge in pixels.

    Returns:
        ``path``.
    """
    images = list_images(Path(dataset_root) / "train" / "images")
    augmented = [p for p in images if "__aug" in p.stem]
    pool = augmented or images
    chosen = random.Random(seed).sample(pool, min(n, len(pool)))
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    grid = np.full((rows * tile, cols * tile, 3), 40, dtype=np.uint8)
    labels = Path(dataset_root) / "train" / "labels"
    for index, image_path in enumerate(chosen):
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode image {image_path}")
        row, col = divmod(index, cols)
        grid[row * tile : (row + 1) * tile, col * tile : (col + 1) * tile] = _tile(
            image, labels / f"{image_path.stem}.txt", names, tile
        )
    path = Path(path)
    try:  # OpenCV raises for a suffix it has no encoder for, rather than returning False
        ok, encoded = cv2.imencode(path.suffix or ".png", grid)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"cannot encode a preview as {path.suffix!r}")
    return write_atomic(path, encoded.tobytes())
