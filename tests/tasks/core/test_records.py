"""The records flows pass between stages: immutable, strict, and where a dataset lives."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.core.records import LETTERS, SPLITS, Box, DatasetRef, Detection, ModelVersion


def test_constants():
    assert LETTERS[0] == "A" and LETTERS[-1] == "Z" and len(LETTERS) == 26
    assert SPLITS == ("train", "valid", "test")


def test_records_are_frozen_and_refuse_unknown_fields():
    box = Box(x1=0, y1=0, x2=1, y2=1)
    with pytest.raises(ValidationError):
        box.x1 = 5  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Box(x1=0, y1=0, x2=1, y2=1, z=2)  # type: ignore[call-arg]
    detection = Detection(letter="A", class_id=0, confidence=0.9, box=box)
    assert Detection.model_validate_json(detection.model_dump_json()) == detection


def test_a_local_dataset_path_from_a_plain_path_or_a_file_uri(tmp_path: Path):
    folder = tmp_path / "my data"
    plain = DatasetRef(id="d1", uri=str(folder))
    assert plain.local_path == folder and plain.data_yaml == folder / "data.yaml"
    assert DatasetRef(id="d1", uri=folder.as_uri()).local_path == folder  # %20 decoded
    assert plain.names == LETTERS and plain.counts == {} and plain.parent_id is None


def test_a_remote_dataset_must_be_materialized_first():
    remote = DatasetRef(id="d2", uri="gs://bucket/asl")
    with pytest.raises(ValueError, match="dataset d2 is at gs://bucket/asl; materialize it first"):
        _ = remote.local_path


def test_model_version_defaults():
    version = ModelVersion(name="asl-detector", version="3")
    assert version.aliases == () and version.metrics == {} and version.run_id is None
