"""A learner's own signs, captured in the app: a YOLO dataset per learner, split by burst.

Layout under ``<home>/captures/<learner>/``::

    data.yaml                      # the 26 letters, like the base dataset
    bursts.json                    # one entry per saved burst: id, letter, split, frames
    train/images/<burst>-<i>.jpg   train/labels/<burst>-<i>.txt
    valid/images/…                 valid/labels/…

A burst is the frames of one held sign over a couple of seconds: they are near-duplicates, so
a whole burst goes to one split. The n-th burst of a letter (counting from 0) goes to valid
when ``n % 3 == 1``, so the second burst of every letter is held out first and a fine-tune is
scored on bursts it never saw. Nothing here leaves the machine.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict

from tasks.core.files import staging_dir, write_atomic
from tasks.core.records import LETTERS, Box
from tasks.data.yolo_format import data_yaml_spec, format_labels, write_data_yaml

CAPTURE_SPLITS = ("train", "valid")
INDEX = "bursts.json"
_LEARNER = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


class Burst(BaseModel):
    """One saved burst: frames of one letter, all in one split."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    letter: str
    split: str
    frames: int
    saved_at: str


def check_learner(name: str) -> str:
    """A learner name as folder and alias part: lower-case letters, digits and dashes.

    Raises:
        ValueError: Naming the rule, for names such as ``../x`` or ``Ann Lee``.
    """
    if not _LEARNER.fullmatch(name):
        raise ValueError(
            f"learner name {name!r}: use 1-32 lower-case letters, digits or dashes "
            "(it names a folder and the model alias personal-<name>)"
        )
    return name


def learner_dir(home: Path, learner: str) -> Path:
    """Where ``learner``'s captures live: ``<home>/captures/<learner>``."""
    return home / "captures" / check_learner(learner)


def read_bursts(root: Path) -> list[Burst]:
    """The bursts saved under ``root`` (none when nothing was captured)."""
    index = root / INDEX
    if not index.is_file():
        return []
    return [Burst.model_validate(entry) for entry in json.loads(index.read_text())]


def split_for(bursts: Sequence[Burst], letter: str) -> str:
    """The split of the next burst of ``letter`` (see the module docstring)."""
    n = sum(1 for burst in bursts if burst.letter == letter)
    return "valid" if n % 3 == 1 else "train"


def save_burst(
    root: Path, letter: str, frames: Sequence[np.ndarray], boxes: Sequence[Box]
) -> Burst:
    """Write one burst: each BGR frame as a JPEG and its hand box labelled ``letter``.

    The files are written in a temp folder and moved in, then the index is rewritten
    atomically, so a crash leaves the burst out entirely, never half of it.

    Args:
        root: The learner's folder (see :func:`learner_dir`); created if missing.
        letter: The asked letter, ``A``-``Z``.
        frames: BGR images, each holding one hand.
        boxes: The hand's box in each frame, in pixels.

    Returns:
        The saved burst.

    Raises:
        ValueError: An unknown letter, no frames, or frames and boxes that do not pair up.
    """
    if letter not in LETTERS:
        raise ValueError(f"letter {letter!r} is not one of A-Z")
    if not frames or len(frames) != len(boxes):
        raise ValueError(
            f"a burst needs frames with one box each, got {len(frames)} and {len(boxes)}"
        )
    bursts = read_bursts(root)
    split = split_for(bursts, letter)
    burst_id = f"{letter.lower()}-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    class_id = LETTERS.index(letter)
    _ensure_layout(root)
    staged = staging_dir(root / split)
    try:
        names = []
        for i, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
            height, width = frame.shape[:2]
            name = f"{burst_id}-{i:02d}"
            ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
            if not ok:
                raise ValueError(f"frame {i} of the burst could not be encoded")
            (staged / f"{name}.jpg").write_bytes(jpeg.tobytes())
            x1, x2 = np.clip([box.x1, box.x2], 0, width) / width
            y1, y2 = np.clip([box.y1, box.y2], 0, height) / height
            cxcywh = np.array([[(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]])
            (staged / f"{name}.txt").write_text(format_labels(cxcywh, [class_id]))
            names.append(name)
        # Labels first: a reader that sees an image finds its label already there.
        for name in names:
            (staged / f"{name}.txt").replace(root / split / "labels" / f"{name}.txt")
        for name in names:
            (staged / f"{name}.jpg").replace(root / split / "images" / f"{name}.jpg")
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    burst = Burst(
        id=burst_id,
        letter=letter,
        split=split,
        frames=len(frames),
        saved_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    _write_index(root, [*bursts, burst])
    return burst


def delete_burst(root: Path, burst_id: str) -> None:
    """Remove one burst's frames and labels, and its index entry."""
    bursts = read_bursts(root)
    for burst in bursts:
        if burst.id == burst_id:
            for folder in ("images", "labels"):
                for path in (root / burst.split / folder).glob(f"{burst_id}-*"):
                    path.unlink()
    _write_index(root, [burst for burst in bursts if burst.id != burst_id])


def delete_learner(home: Path, learner: str) -> bool:
    """Delete every capture of ``learner``; True if there was anything to delete."""
    root = learner_dir(home, learner)
    if not root.exists():
        return False
    shutil.rmtree(root)
    return True


def _ensure_layout(root: Path) -> None:
    for split in CAPTURE_SPLITS:
        for folder in ("images", "labels"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
    if not (root / "data.yaml").exists():
        write_data_yaml(root / "data.yaml", data_yaml_spec(root, CAPTURE_SPLITS, LETTERS))


def _write_index(root: Path, bursts: Sequence[Burst]) -> None:
    payload = json.dumps([burst.model_dump() for burst in bursts], indent=2)
    write_atomic(root / INDEX, payload)
