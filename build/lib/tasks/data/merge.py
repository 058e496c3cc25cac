"""Merge the base dataset and a learner's captures into one dataset under one content id.

Train holds both trains; valid and test stay the base's, so a personal model is still scored
on the same general images (the learner's own held-out bursts are scored apart, from the
captures folder). The merged folder is content-addressed: the same inputs give the same
folder, built once, through a temp folder and a rename. It lives under the learner's name
(``personal/<learner>/<id>``), so that deleting the learner's captures finds every copy.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from tasks.core.files import build_dir
from tasks.core.records import SPLITS, DatasetRef
from tasks.data.acquire import content_id
from tasks.data.captures import discard_unsaved, merged_datasets_dir
from tasks.data.validate import validate_dataset
from tasks.data.yolo_format import (
    count_images,
    data_yaml_spec,
    label_path,
    list_images,
    read_names,
    write_data_yaml,
)

log = logging.getLogger(__name__)


def _link(source: Path, target: Path) -> None:
    # Hard links cost no space; another file system needs a copy.
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _add_split(source: Path, target: Path, split: str) -> None:
    for folder in ("images", "labels"):
        (target / split / folder).mkdir(parents=True, exist_ok=True)
    for image in list_images(source / split / "images"):
        _link(image, target / split / "images" / image.name)
        label = label_path(image)
        if label.exists():
            _link(label, target / split / "labels" / label.name)


def merge_with_captures(base: DatasetRef, captures: Path, datasets_dir: Path) -> DatasetRef:
    """One dataset of ``base`` plus the train bursts of a learner's ``captures``.

    Args:
        base: The base dataset (local), as the data flow returned it.
        captures: A learner's captures folder (:mod:`tasks.data.captures`), named after them.
        datasets_dir: Root of datasets; the result goes to ``personal/<learner>/<id>`` under it.

    Returns:
        The merged dataset; its ``parent_id`` is the base's, so the valid and test figures
        compare with the base models'.

    Raises:
        DatasetInvalid: The captures break a rule of the format (naming each file).
        ValueError: The captures' classes are not the base's.
    """
    names = read_names(base.data_yaml)
    if read_names(captures / "data.yaml") != names:
        raise ValueError(f"{captures / 'data.yaml'}: its classes are not the base dataset's")
    discard_unsaved(captures)  # what a killed save left is no burst
    # Two bursts of one held sign may be near-identical: not leakage between learner splits.
    validate_dataset(captures, names, allow_leakage=True).raise_if_invalid()
    merged_id = f"{base.id}-{content_id(captures, names)}"
    target = merged_datasets_dir(datasets_dir, captures.name) / merged_id
    if not (target / "data.yaml").exists():
        with build_dir(target, complete="data.yaml") as staged:
            for split in SPLITS:
                _add_split(base.local_path, staged, split)
            _add_split(captures, staged, "train")
            write_data_yaml(staged / "data.yaml", data_yaml_spec(target, SPLITS, names))
        log.info("merged %s and %s into %s", base.id, captures, target)
    return DatasetRef(
        id=merged_id,
        uri=str(target),
        names=names,
        counts=count_images(target),
        parent_id=base.parent_id or base.id,
    )


def captures_ref(captures: Path) -> DatasetRef:
    """The learner's captures as a dataset (its valid split is the held-out bursts)."""
    names = read_names(captures / "data.yaml")
    return DatasetRef(
        id=f"captures-{content_id(captures, names)}",
        uri=str(captures),
        names=names,
        counts=count_images(captures),
    )
