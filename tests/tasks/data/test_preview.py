"""The preview grid: a tile per sample, augmented copies first, boxes drawn, written atomically."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks.data.preview import _tile, preview_grid

NAMES = ("A", "B")


def _sample(root: Path, stem: str, label: str, size: tuple[int, int] = (40, 20)) -> None:
    images, labels = root / "train" / "images", root / "train" / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(images / f"{stem}.png"), np.full((size[1], size[0], 3), 200, np.uint8))
    (labels / f"{stem}.txt").write_text(label)


def test_grid_size_and_format(tmp_path: Path):
    for index in range(5):
        _sample(tmp_path / "data", f"img{index}", "0 0.5 0.5 0.5 0.5\n")
    path = preview_grid(tmp_path / "data", NAMES, tmp_path / "out" / "preview.jpg", n=5, tile=32)
    grid = cv2.imread(str(path))
    assert path.suffix == ".jpg" and grid.shape == (2 * 32, 3 * 32, 3)  # ceil(sqrt(5)) = 3 wide


def test_augmented_copies_are_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _sample(tmp_path, "plain", "")
    _sample(tmp_path, "plain__aug0", "")
    _sample(tmp_path, "plain__aug1", "")
    drawn: list[str] = []

    def fake_tile(image: np.ndarray, label: Path, names: tuple[str, ...], size: int) -> np.ndarray:
        drawn.append(label.stem)
        return np.zeros((size, size, 3), np.uint8)

    monkeypatch.setattr("tasks.data.preview._tile", fake_tile)
    preview_grid(tmp_path, NAMES, tmp_path / "p.png", n=4, tile=8)
    assert sorted(drawn) == ["plain__aug0", "plain__aug1"]


def test_a_tile_keeps_the_aspect_ratio_and_draws_the_box(tmp_path: Path):
    label = tmp_path / "l.txt"
    label.write_text("1 0.5 0.5 0.5 0.5\n")
    image = np.full((50, 100, 3), 200, np.uint8)
    tile = _tile(image, label, NAMES, 100)
    assert tile.shape == (100, 100, 3)
    # letterboxed: grey bands of 25 px (the letter's label may reach into the top one)
    assert (tile[:10] == 114).all() and (tile[76:] == 114).all()
    assert (tile[40, 25:76] == (0, 255, 0)).all(axis=1).any()  # a green box edge
    unknown = tmp_path / "u.txt"
    unknown.write_text("9 0.5 0.5 0.5 0.5\n")  # a class id without a name is drawn as its number
    assert _tile(image, unknown, NAMES, 100).shape == (100, 100, 3)


def test_an_empty_train_split_gives_an_empty_grid(tmp_path: Path):
    path = preview_grid(tmp_path, NAMES, tmp_path / "p.png", n=4, tile=8)
    assert cv2.imread(str(path)).shape == (16, 16, 3)


def test_an_undecodable_image_is_named(tmp_path: Path):
    _sample(tmp_path, "ok", "")
    (tmp_path / "train" / "images" / "ok.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot decode image"):
        preview_grid(tmp_path, NAMES, tmp_path / "p.png", n=1, tile=8)


def test_a_preview_in_an_unknown_format_is_a_clear_error(tmp_path: Path):
    _sample(tmp_path / "data", "img0", "0 0.5 0.5 0.5 0.5\n")
    with pytest.raises(ValueError, match=r"cannot encode a preview as '\.xyz'"):
        preview_grid(tmp_path / "data", NAMES, tmp_path / "out" / "preview.xyz", n=1, tile=16)
