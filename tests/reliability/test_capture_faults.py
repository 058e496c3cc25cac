"""Reliability: a learner's captures when two tabs save at once, or a save is killed half-way."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tasks.data.captures as captures
from tasks.core.records import LETTERS, Box, DatasetRef
from tasks.data.captures import learner_dir, read_bursts, save_burst
from tasks.data.merge import merge_with_captures
from tasks.data.validate import validate_dataset

BOX = Box(x1=4, y1=4, x2=40, y2=40)


def _frames(seed: int, n: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(n)]


def test_two_tabs_saving_at_once_keep_both_bursts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = learner_dir(tmp_path, "ann")
    read = captures.read_bursts

    def slow_read(folder: Path) -> list[captures.Burst]:
        bursts = read(folder)
        time.sleep(0.3)  # the other tab's save reads the index meanwhile, unless it waits
        return bursts

    monkeypatch.setattr(captures, "read_bursts", slow_read)
    errors: list[BaseException] = []

    def tab(seed: int) -> None:
        try:
            save_burst(root, "A", _frames(seed), [BOX, BOX])
        except BaseException as error:  # a thread's failure is reported by the assertion below
            errors.append(error)

    tabs = [threading.Thread(target=tab, args=(seed,)) for seed in (1, 2)]
    for thread in tabs:
        thread.start()
    for thread in tabs:
        thread.join(30)

    assert errors == []
    bursts = read(root)
    assert len(bursts) == 2, "one tab's burst was lost from bursts.json"
    assert sorted(b.split for b in bursts) == ["train", "valid"], "the 2nd burst is held out"
    assert validate_dataset(root, LETTERS, allow_leakage=True).ok


def test_a_save_killed_between_labels_and_images_leaves_no_trace(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = learner_dir(tmp_path, "ann")
    save_burst(root, "B", _frames(0), [BOX, BOX])
    replace = Path.replace

    def killed_at_the_first_image(self: Path, target: Path) -> Path:
        if self.suffix == ".jpg":
            raise KeyboardInterrupt  # what a kill leaves: labels moved, images and index not
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", killed_at_the_first_image)
    with pytest.raises(KeyboardInterrupt):
        save_burst(root, "C", _frames(1), [BOX, BOX])
    monkeypatch.setattr(Path, "replace", replace)
    assert len(list((root / "train" / "labels").iterdir())) == 4, "two labels without images"
    assert not validate_dataset(root, LETTERS, allow_leakage=True).ok

    # Personalize merges the captures as they are: the half-saved burst is no burst.
    base = DatasetRef(id="base", uri=str(dataset))
    merged = merge_with_captures(base, root, tmp_path / "datasets")
    assert merged.counts["train"] == 2 + 2  # the dataset's two, the one saved burst's two
    assert [b.letter for b in read_bursts(root)] == ["B"]
    assert validate_dataset(root, LETTERS, allow_leakage=True).ok
