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

Every change of a learner's folder holds its lock (``<learner>.lock`` beside it; two browser
tabs of one learner must not lose each other's bursts), and files that no index entry names
(a save killed between its moves) are removed before the folder is used. A personalize run
copies the frames into a merged dataset and a run folder of the learner's own:
:func:`delete_learner` removes those with the captures.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict

from tasks.core.files import run_folder_lock, staging_dir, write_atomic
from tasks.core.records import LETTERS, Box
from tasks.data.yolo_format import data_yaml_spec, format_labels, write_data_yaml

CAPTURE_SPLITS = ("train", "valid")
INDEX = "bursts.json"
_LEARNER = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
# "<burst id>-<i>": a captured frame's name, which the crops cut from it keep as a prefix.
FRAME_NAME = re.compile(r"[a-z]-\d{14}-[0-9a-f]{6}-\d{2}")


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


def merged_datasets_dir(datasets_dir: Path, learner: str) -> Path:
    """Where the merged datasets of ``learner``'s personalize runs live."""
    return datasets_dir / "personal" / check_learner(learner)


def personal_runs_dir(home: Path, learner: str) -> Path:
    """Where ``learner``'s personalize runs train and evaluate (crops and run folders)."""
    return home / "runs" / "personalize" / check_learner(learner)


def discard_unsaved(root: Path) -> list[Path]:
    """Remove the frames and labels of ``root`` that no burst of the index names.

    A save killed between moving its labels and its images (or before writing the index)
    leaves such files; validation would refuse the folder for them.

    Returns:
        The files removed.
    """
    with run_folder_lock(root):
        return _drop_unindexed(root, read_bursts(root))


def _drop_unindexed(root: Path, bursts: Sequence[Burst]) -> list[Path]:
    saved = {burst.id for burst in bursts}
    dropped = []
    for split in CAPTURE_SPLITS:
        for folder in ("images", "labels"):
            for path in sorted((root / split / folder).glob("*")):
                if path.is_file() and path.stem.rpartition("-")[0] not in saved:
                    path.unlink()
                    dropped.append(path)
    return dropped


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
    with run_folder_lock(root):
        _ensure_layout(root)
        return _save(root, letter, frames, boxes)


def _save(root: Path, letter: str, frames: Sequence[np.ndarray], boxes: Sequence[Box]) -> Burst:
    bursts = read_bursts(root)
    _drop_unindexed(root, bursts)
    split = split_for(bursts, letter)
    burst_id = f"{letter.lower()}-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    class_id = LETTERS.index(letter)
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
    with run_folder_lock(root):
        kept = [burst for burst in read_bursts(root) if burst.id != burst_id]
        # The index first: a kill after it leaves files no entry names, removed next time.
        _write_index(root, kept)
        _drop_unindexed(root, kept)


@dataclass(frozen=True)
class Removed:
    """What :func:`delete_learner` removed: each folder or file, with the files it held."""

    paths: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.paths)

    @property
    def files(self) -> int:
        """Files removed in all."""
        return sum(self.paths.values())


def delete_learner(home: Path, learner: str, model_caches: Sequence[Path] = ()) -> Removed:
    """Delete every copy of ``learner``'s frames on this machine.

    The captures, the merged datasets and the run folders (crops, trainings, evaluations) of
    their personalize runs, and copies an older version made where they cannot be told apart
    by learner (``datasets/personal/<id>``, personal run and crop folders directly under
    ``runs/``): those are caches, rebuilt when a learner personalizes again.

    Args:
        home: The data home.
        learner: Whose copies.
        model_caches: Model download caches to rid of this learner's personal models (and of
            personal models that name no learner); none by default.

    Returns:
        What was removed; empty (false) when there was nothing.
    """
    root = learner_dir(home, learner)
    removed: dict[str, int] = {}
    with run_folder_lock(root):
        _remove(root, removed)
        root.with_name(f"{root.name}.lock").unlink(missing_ok=True)  # it names the learner
    _remove(merged_datasets_dir(home / "datasets", learner), removed)
    _remove(personal_runs_dir(home, learner), removed)
    for path in _unattributed_copies(home):
        _remove(path, removed)
    for cache in model_caches:
        for path in _cached_personal_models(cache, learner):
            _remove(path, removed)
    return Removed(removed)


def _remove(path: Path, removed: dict[str, int]) -> None:
    if path.is_dir() and not path.is_symlink():
        removed[str(path)] = sum(1 for p in path.rglob("*") if not p.is_dir())
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        removed[str(path)] = 1
        path.unlink()


def _unattributed_copies(home: Path) -> list[Path]:
    """Merged datasets, crops and run folders of personal runs made before the per-learner
    folders (their names carry no learner)."""
    found = [spec.parent for spec in (home / "datasets" / "personal").glob("*/data.yaml")]
    crops = [
        folder
        for folder in sorted((home / "runs" / "crops").glob("*"))
        if any(FRAME_NAME.match(p.name) for p in folder.rglob("*.jpg"))
    ]
    found += crops
    for args in sorted((home / "runs").glob("*/args.yaml")):
        text = args.read_text(errors="replace")
        if "/datasets/personal/" in text or any(str(folder) in text for folder in crops):
            found.append(args.parent)
    return found


def _cached_personal_models(cache: Path, learner: str) -> list[Path]:
    """The entries of a model download cache holding a personal model of ``learner``."""
    entries = set()
    for meta in cache.glob("*/**/metadata.json"):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if data.get("profile") == "personal" and data.get("learner", learner) == learner:
            entries.add(cache / meta.relative_to(cache).parts[0])
    return sorted(entries)


def _ensure_layout(root: Path) -> None:
    for split in CAPTURE_SPLITS:
        for folder in ("images", "labels"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
    if not (root / "data.yaml").exists():
        write_data_yaml(root / "data.yaml", data_yaml_spec(root, CAPTURE_SPLITS, LETTERS))


def _write_index(root: Path, bursts: Sequence[Burst]) -> None:
    payload = json.dumps([burst.model_dump() for burst in bursts], indent=2)
    write_atomic(root / INDEX, payload)
