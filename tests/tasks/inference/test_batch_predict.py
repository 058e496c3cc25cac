"""Batch prediction logic: input expansion, per-file skips, CSV/JSON output, annotation."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import pytest

from tasks.inference.batch_predict import CSV_COLUMNS, expand_inputs, predict_images, read_image
from tasks.inference.recognizer import Recognizer


@pytest.fixture
def folder(subset_dataset: Path, tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "nested").mkdir(parents=True)
    images = sorted((subset_dataset / "test" / "images").iterdir())[:4]
    for image in images[:3]:
        shutil.copy(image, root / image.name)
    shutil.copy(images[3], root / "nested" / images[3].name)
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_expand_inputs_handles_folders_globs_files_uris_and_misses(folder: Path):
    images, missing = expand_inputs(
        [str(folder), str(folder / "*.jpg"), (folder / "notes.txt").as_uri(), "nowhere/*.png"]
    )
    names = [Path(p).name for p in images]
    assert len(names) == 6  # 4 images + broken.jpg, de-duplicated, + notes.txt (explicit file)
    assert "notes.txt" in names and names.count("broken.jpg") == 1
    assert [m.image for m in missing] == ["nowhere/*.png"]


def test_read_image_names_the_bad_file(folder: Path):
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        read_image(str(folder / "broken.jpg"))
    with pytest.raises(ValueError, match=r"missing\.jpg"):
        read_image(str(folder / "missing.jpg"))


def test_predict_images_skips_bad_files_and_writes_everything(folder: Path, smoke_onnx: Path,
                                                              tmp_path: Path):  # fmt: skip
    recognizer = Recognizer.load(str(smoke_onnx))
    images, missing = expand_inputs([str(folder)])
    out = tmp_path / "out"
    report = predict_images(recognizer, images, out, conf=1e-6, annotate=True, skipped=missing)

    assert report.n_images == 4
    assert [Path(s.image).name for s in report.skipped] == ["broken.jpg"]
    assert "broken.jpg" in report.skipped[0].reason
    with report.csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == report.n_detections >= 4  # a tiny threshold: each image yields some
    assert sum(report.letter_counts.values()) == report.n_detections
    payload = json.loads(report.json_path.read_text())
    assert payload["report"]["n_images"] == 4 and len(payload["images"]) == 4
    annotated = sorted(report.annotated_dir.iterdir())
    assert len(annotated) == 4
    assert cv2.imread(str(annotated[0])) is not None
    assert not list(out.glob(".*")), "no temp files left behind"
