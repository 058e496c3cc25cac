"""Evaluation pictures: the top-1 confusion matrix (PNG) and a grid of sample predictions (JPG).

Both are written atomically (a temp file in the target folder, then ``os.replace``) so a reader
never sees half a file. Only matplotlib's Agg canvas and OpenCV's built-in Hershey fonts are
used: nothing is downloaded and no global pyplot state is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tasks.core.files import write_atomic

GREEN = (40, 170, 40)  # BGR
RED = (30, 30, 220)
TILE = 256


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str) -> Path:
    """Draw a confusion matrix (rows true, columns predicted) as a PNG.

    Args:
        matrix: Square count matrix, one row/column per label.
        labels: Tick labels, in matrix order.
        path: Destination ``.png``.
        title: Figure title.

    Returns:
        ``path``.
    """
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=float)
    # Row-normalised colours keep rare letters readable; the cells still print raw counts.
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)

    fig = Figure(figsize=(11, 10), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true row")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels=list(labels), rotation=90, fontsize=8)
    ax.set_yticks(ticks, labels=list(labels), fontsize=8)
    ax.set_xlabel("predicted (top-1)")
    ax.set_ylabel("true")
    ax.set_title(title)
    for row, col in zip(*np.nonzero(counts), strict=True):
        colour = "white" if shares[row, col] > 0.5 else "black"
        ax.text(
            col, row, str(int(counts[row, col])), ha="center", va="center", fontsize=6, color=colour
        )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return write_atomic(path, buffer.getvalue())


def _tile(image: np.ndarray, caption: str, truth: str, colour: tuple[int, int, int]) -> np.ndarray:
    """Letterbox one image into a square tile and print the prediction and truth on it."""
    height, width = image.shape[:2]
    scale = TILE / max(height, width)
    resized = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))))
    tile = np.full((TILE, TILE, 3), 32, dtype=np.uint8)
    top, left = (TILE - resized.shape[0]) // 2, (TILE - resized.shape[1]) // 2
    tile[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    font = cv2.FONT_HERSHEY_SIMPLEX
    for text, y in ((caption, 22), (truth, TILE - 10)):
        # A dark band behind the text keeps it legible on any photo.
        cv2.rectangle(tile, (0, y - 18), (TILE, y + 6), (0, 0, 0), thickness=-1)
        cv2.putText(tile, text, (6, y), font, 0.6, colour, 2, cv2.LINE_AA)
    cv2.rectangle(tile, (0, 0), (TILE - 1, TILE - 1), colour, thickness=3)
    return tile


def plot_samples(
    images: Sequence[Path],
    predictions: Sequence[tuple[str, float, tuple[float, float, float, float]] | None],
    truths: Sequence[str],
    path: Path,
    columns: int = 4,
) -> Path:
    """Draw a grid of images with the predicted letter, its confidence and the true letter.

    Args:
        images: Image files to show (at most ``columns``² are drawn).
        predictions: Per image ``(letter, confidence, (x1, y1, x2, y2))`` or ``None`` if nothing
            was detected.
        truths: Per image the true letter (or ``"background"``).
        path: Destination ``.jpg``.
        columns: Grid width; the grid is at most square.

    Returns:
        ``path``.
    """
    tiles: list[np.ndarray] = []
    for image_path, prediction, truth in zip(images, predictions, truths, strict=True):
        image = cv2.imread(str(image_path))
        if image is None:  # unreadable file: show a blank tile rather than fail the report
            image = np.zeros((TILE, TILE, 3), dtype=np.uint8)
        if prediction is None:
            caption, right = "pred: none", False
        else:
            letter, confidence, (x1, y1, x2, y2) = prediction
            caption, right = f"pred: {letter} {confidence:.2f}", letter == truth
            colour = GREEN if right else RED
            cv2.rectangle(image, (int(x1), int(y1)), (int(x2), int(y2)), colour, thickness=3)
        tiles.append(_tile(image, caption, f"true: {truth}", GREEN if right else RED))
        if len(tiles) == columns * columns:
            break
    if not tiles:
        raise ValueError("no images to draw")
    rows = -(-len(tiles) // columns)
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (rows * columns - len(tiles))
    grid = np.vstack([np.hstack(tiles[r * columns : (r + 1) * columns]) for r in range(rows)])
    ok, encoded = cv2.imencode(".jpg", grid, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError(f"could not encode {path}")
    return write_atomic(path, encoded.tobytes())
