"""Evaluation pictures: the confusion matrix PNG and the sample grid JPG, from files made here."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks.evaluation.plots import GREEN, RED, TILE, plot_confusion, plot_samples


def _image(path: Path, size: tuple[int, int] = (60, 40)) -> Path:
    assert cv2.imwrite(str(path), np.full((size[1], size[0], 3), 128, np.uint8))
    return path


def test_confusion_matrix_png(tmp_path: Path):
    matrix = np.array([[3, 1, 0], [0, 0, 0], [0, 2, 5]])  # an empty row must not divide by 0
    path = plot_confusion(matrix, ["A", "B", "background"], tmp_path / "c.png", "valid")
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (1000, 1100, 3)  # 11 x 10 inches at 100 dpi
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]  # no temp file left behind


def test_sample_grid_is_square_at_most_and_colours_right_and_wrong(tmp_path: Path):
    images = [_image(tmp_path / f"{n}.jpg") for n in range(3)]
    predictions = [("A", 0.9, (5.0, 5.0, 30.0, 30.0)), ("B", 0.4, (0.0, 0.0, 10.0, 10.0)), None]
    path = plot_samples(images, predictions, ["A", "C", "D"], tmp_path / "s.jpg", columns=2)
    grid = cv2.imread(str(path))
    assert grid.shape == (2 * TILE, 2 * TILE, 3)
    right, wrong = grid[TILE // 2, 1], grid[TILE // 2, TILE + 1]  # each tile's frame
    assert np.abs(right.astype(int) - GREEN).max() < 40
    assert np.abs(wrong.astype(int) - RED).max() < 40
    assert not grid[TILE + 10 :, TILE + 10 :].any()  # the fourth tile is blank


def test_only_columns_squared_are_drawn_and_unreadable_files_are_blank(tmp_path: Path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    images = [broken] + [_image(tmp_path / f"{n}.jpg") for n in range(5)]
    path = plot_samples(images, [None] * 6, ["A"] * 6, tmp_path / "s.jpg", columns=2)
    assert cv2.imread(str(path)).shape == (2 * TILE, 2 * TILE, 3)


def test_no_images_is_an_error(tmp_path: Path):
    with pytest.raises(ValueError, match="no images"):
        plot_samples([], [], [], tmp_path / "s.jpg")
    with pytest.raises(ValueError):
        plot_samples([_image(tmp_path / "a.jpg")], [], ["A"], tmp_path / "s.jpg")  # not aligned
