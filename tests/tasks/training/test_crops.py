"""Hand crops: one geometry for the crop dataset and for classifying a detected hand."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks.core.records import LETTERS
from tasks.inference.crop_classifier import square_crop
from tasks.training.crops import build_crop_dataset


def test_square_crop_pads_the_longer_side_and_keeps_the_hand_centred():
    image = np.zeros((200, 300, 3), np.uint8)
    image[80:120, 130:170] = 255  # a 40×40 "hand"
    crop = square_crop(image, (130, 80, 170, 120), pad=1.0, size=80)
    assert crop.shape == (80, 80, 3)
    # pad=1.0 doubles the side: the white square fills the central half of the crop
    assert crop[30:50, 30:50].min() == 255 and crop[:15].max() == 0 and crop[:, -15:].max() == 0


def test_square_crop_clips_at_the_border_instead_of_inventing_pixels():
    image = np.full((100, 100, 3), 7, np.uint8)
    crop = square_crop(image, (0, 0, 40, 60), pad=0.5, size=32)
    assert crop.shape == (32, 32, 3) and (crop == 7).all()


def test_square_crop_rejects_a_box_outside_the_image():
    with pytest.raises(ValueError, match="no pixels"):
        square_crop(np.zeros((50, 50, 3), np.uint8), (60, 60, 80, 80), pad=0.2, size=16)


def _tiny_dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    names = list(LETTERS)
    root.mkdir(parents=True)
    (root / "data.yaml").write_text(f"path: {root}\nnames: {names}\n")
    for split, letters in {"train": "AAB", "valid": "B", "test": "C"}.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for i, letter in enumerate(letters):
            stem = f"{letter}{i}"
            image = rng.integers(0, 255, (64, 96, 3), np.uint8)
            cv2.imwrite(str(root / split / "images" / f"{stem}.jpg"), image)
            cls = names.index(letter)
            (root / split / "labels" / f"{stem}.txt").write_text(f"{cls} 0.5 0.5 0.25 0.5\n")
    (root / "train" / "images" / "notes.txt").write_text("not an image")
    return root


def test_crop_dataset_has_one_crop_per_box_in_letter_folders(tmp_path: Path):
    crops = build_crop_dataset(_tiny_dataset(tmp_path / "ds"), tmp_path / "crops", size=24)
    counts = {
        (split, letter): len(list((crops / split / letter).glob("*.jpg")))
        for split in ("train", "val", "test")
        for letter in "ABC"
    }
    assert counts[("train", "A")] == 2 and counts[("train", "B")] == 1
    assert counts[("val", "B")] == 1 and counts[("test", "C")] == 1
    assert sum(counts.values()) == 5
    # every letter has a folder, so the classifier keeps all 26 classes even if some are empty
    assert sorted(p.name for p in (crops / "train").iterdir()) == list(LETTERS)
    assert cv2.imread(str(next((crops / "test" / "C").glob("*.jpg")))).shape == (24, 24, 3)


def test_crop_dataset_is_written_once_and_leaves_nothing_half_done(tmp_path: Path):
    dataset = _tiny_dataset(tmp_path / "ds")
    (dataset / "valid" / "labels" / "B0.txt").write_text("1 0.5 0.5\n")  # too few fields
    with pytest.raises(ValueError, match=r"B0\.txt: expected"):
        build_crop_dataset(dataset, tmp_path / "crops")
    assert list(tmp_path.iterdir()) == [dataset]  # no staged folder left behind
    (tmp_path / "crops").mkdir()
    with pytest.raises(FileExistsError):
        build_crop_dataset(dataset, tmp_path / "crops")


def test_jitter_moves_and_scales_a_box_within_its_bounds():
    from tasks.training.crops import jitter_box

    rng = np.random.default_rng(1)
    box = (100.0, 50.0, 140.0, 130.0)  # 40 × 80, centre (120, 90)
    assert jitter_box(box, 0.0, rng) == box
    for _ in range(200):
        x0, y0, x1, y1 = jitter_box(box, 0.2, rng)
        assert abs((x0 + x1) / 2 - 120) <= 0.2 * 40 + 1e-9
        assert abs((y0 + y1) / 2 - 90) <= 0.2 * 80 + 1e-9
        assert 0.8 - 1e-9 <= (x1 - x0) / 40 <= 1.2 + 1e-9
        assert (x1 - x0) / 40 == pytest.approx((y1 - y0) / 80)  # one scale for both sides


def test_jittered_train_copies_only_in_train_and_reproducible(tmp_path: Path):
    dataset = _tiny_dataset(tmp_path / "ds")
    first = build_crop_dataset(dataset, tmp_path / "a", size=24, jitter=0.2, train_copies=3)
    again = build_crop_dataset(dataset, tmp_path / "b", size=24, jitter=0.2, train_copies=3)
    assert len(list((first / "train" / "A").glob("*.jpg"))) == 6  # 2 boxes × 3 copies
    assert len(list((first / "val" / "B").glob("*.jpg"))) == 1  # valid/test: the label's crop
    files = sorted(p.relative_to(first) for p in first.rglob("*.jpg"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.jpg"))
    assert all((first / f).read_bytes() == (again / f).read_bytes() for f in files)
    copies = sorted((first / "train" / "A").glob("A0_0_*.jpg"))
    assert copies[0].read_bytes() != copies[1].read_bytes(), "each copy jittered anew"
