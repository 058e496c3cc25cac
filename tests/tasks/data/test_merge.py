"""Base dataset + a learner's captures: one dataset, captures in train only, built once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.core.records import LETTERS, Box, DatasetRef
from tasks.data.captures import learner_dir, save_burst
from tasks.data.merge import captures_ref, merge_with_captures
from tasks.data.validate import DatasetInvalid
from tasks.data.yolo_format import count_images, read_names

BOX = Box(x1=40, y1=30, x2=200, y2=210)


def _frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (240, 320, 3), dtype=np.uint8)


@pytest.fixture
def base(subset_dataset: Path) -> DatasetRef:
    return DatasetRef(id="base123", uri=str(subset_dataset), names=LETTERS)


def test_captures_join_train_and_valid_and_test_stay_the_bases(base: DatasetRef, tmp_path: Path):
    captures = learner_dir(tmp_path, "ann")
    for seed in range(3):  # train, valid, train
        save_burst(captures, "B", [_frame(seed), _frame(seed + 10)], [BOX, BOX])

    merged = merge_with_captures(base, captures, tmp_path / "datasets")

    counts = count_images(base.local_path)
    assert merged.counts == {**counts, "train": counts["train"] + 4}
    assert merged.parent_id == "base123" and merged.id.startswith("base123-")
    assert read_names(merged.data_yaml) == LETTERS
    assert captures_ref(captures).counts == {"train": 4, "valid": 2}
    again = merge_with_captures(base, captures, tmp_path / "datasets")
    assert again == merged, "the same inputs give the same dataset"

    save_burst(captures, "C", [_frame(99)], [BOX])
    assert merge_with_captures(base, captures, tmp_path / "datasets").id != merged.id


def test_broken_captures_are_named_and_nothing_is_merged(base: DatasetRef, tmp_path: Path):
    captures = learner_dir(tmp_path, "ann")
    burst = save_burst(captures, "B", [_frame(0)], [BOX])
    label = captures / "train" / "labels" / f"{burst.id}-00.txt"
    label.write_text("26 0.5 0.5 0.2 0.2\n")

    with pytest.raises(DatasetInvalid, match=label.name):
        merge_with_captures(base, captures, tmp_path / "datasets")
    assert not (tmp_path / "datasets" / "personal").exists()
