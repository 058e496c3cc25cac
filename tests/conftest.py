"""Shared fixtures: quiet offline settings and small subsets of the shared dataset.

The real dataset comes from ``FINGERSPELL_DATASET`` (``.ci/run`` and the Makefile point it at
``../shared/datasets/asl-letters``); its images are never committed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest

# Before any test module imports ultralytics/albumentations/mlflow: offline and quiet.
_QUIET = {
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "False",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
}
os.environ.update(_QUIET)
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="fingerspell-yolo-"))

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "asl-letters"


def _shared_dataset_path() -> Path | None:
    candidate = Path(os.environ.get("FINGERSPELL_DATASET", DEFAULT_DATASET))
    return candidate if (candidate / "data.yaml").is_file() else None


@pytest.fixture(scope="session")
def shared_dataset() -> Path:
    """The full shared YOLO dataset (read-only)."""
    path = _shared_dataset_path()
    if path is None:
        message = "shared dataset not found: set FINGERSPELL_DATASET to the asl-letters export"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def copy_subset(source: Path, target: Path, per_class: dict[str, int]) -> Path:
    """Copy the first N images of each class per split (with labels) into a new YOLO folder.

    Args:
        source: A YOLO export with train/valid/test folders and data.yaml.
        target: Folder to create.
        per_class: Images per class to keep, by split name.

    Returns:
        ``target``.
    """
    for split, keep in per_class.items():
        taken: dict[str, int] = defaultdict(int)
        for image in sorted((source / split / "images").iterdir()):
            letter = image.name[0]
            if taken[letter] >= keep:
                continue
            taken[letter] += 1
            label = source / split / "labels" / f"{image.stem}.txt"
            for src, kind in ((image, "images"), (label, "labels")):
                dst = target / split / kind / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
    shutil.copyfile(source / "data.yaml", target / "data.yaml")
    return target


@pytest.fixture(scope="session")
def subset_dataset(shared_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real subset: 2 train, 1 valid, 1 test image per letter (test lacks E and L)."""
    target = tmp_path_factory.mktemp("subset") / "asl-subset"
    return copy_subset(shared_dataset, target, {"train": 2, "valid": 1, "test": 1})
