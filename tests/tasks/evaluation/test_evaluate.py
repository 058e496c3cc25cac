"""Evaluation on a tiny trained model and small real subsets of the shared dataset."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from tasks.core.records import LETTERS
from tasks.evaluation import evaluate as evaluation
from tasks.evaluation.evaluate import EvaluationError, TopLetter, evaluate
from tasks.evaluation.report import EvalReport, LetterRow

IMGSZ = 320


@pytest.fixture(scope="module")
def trained_weights(
    request: pytest.FixtureRequest, subset_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The shared smoke model when conftest offers one, else a 2-epoch model trained here."""
    try:
        return Path(request.getfixturevalue("smoke_weights"))
    except pytest.FixtureLookupError:
        pass
    from ultralytics import YOLO

    work = tmp_path_factory.mktemp("eval-train")
    spec = yaml.safe_load((subset_dataset / "data.yaml").read_text())
    spec["path"] = str(subset_dataset)  # the export says "." which ultralytics reads from the cwd
    data = work / "data.yaml"
    data.write_text(yaml.safe_dump(spec))
    YOLO("yolo11n.yaml").train(
        data=str(data),
        epochs=2,
        imgsz=IMGSZ,
        batch=16,
        device="cpu",
        workers=0,
        val=False,
        plots=False,
        amp=False,
        project=str(work),
        name="run",
        exist_ok=True,
        verbose=False,
    )
    return work / "run" / "weights" / "best.pt"


@pytest.fixture(scope="module")
def test_report(
    trained_weights: Path, subset_dataset: Path, tmp_path_factory: pytest.TempPathFactory
):
    """The report on the subset's test split (one image per letter, no E and no L)."""
    out = tmp_path_factory.mktemp("eval-test")
    return evaluate(trained_weights, subset_dataset / "data.yaml", "test", out, imgsz=IMGSZ)


@pytest.fixture(scope="module")
def sparse_dataset(shared_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset whose valid split holds only A–D (3 images each): 22 letters are absent."""
    root = tmp_path_factory.mktemp("sparse") / "asl-sparse"
    for letter in "ABCD":
        for image in sorted((shared_dataset / "valid" / "images").glob(f"{letter}*"))[:3]:
            label = shared_dataset / "valid" / "labels" / f"{image.stem}.txt"
            for src, kind in ((image, "images"), (label, "labels")):
                (root / "valid" / kind).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, root / "valid" / kind / src.name)
    shutil.copyfile(shared_dataset / "data.yaml", root / "data.yaml")
    return root


def _label_letter(image: Path) -> int:
    label = image.parent.parent / "labels" / f"{image.stem}.txt"
    return int(label.read_text().split()[0])


def test_all_letters_reported_and_absent_ones_are_none(test_report: EvalReport) -> None:
    assert [row.letter for row in test_report.per_letter] == list(LETTERS)
    assert test_report.absent_letters == ("E", "L")
    for row in test_report.per_letter:
        if row.letter in ("E", "L"):
            assert not row.present and row.n_boxes == 0
            assert (row.ap50, row.ap50_95, row.top1_accuracy) == (None, None, None)
        else:
            assert row.present and row.n_boxes == 1
            assert None not in (row.ap50, row.ap50_95, row.top1_accuracy)
    assert test_report.n_images == 24
    table = test_report.per_letter_rows()
    assert len(table) == 26 and table[4]["letter"] == "E" and table[4]["ap50"] is None
    markdown = test_report.to_markdown()
    assert "| E | 0 | absent | absent | absent |" in markdown
    assert "| A | 1 |" in markdown


def test_metrics_are_fractions_and_mlflow_dict_is_finite(test_report: EvalReport) -> None:
    overall = (test_report.map50, test_report.map50_95, test_report.precision, test_report.recall)
    for value in (*overall, test_report.top1_accuracy):
        assert 0.0 <= value <= 1.0
    for row in test_report.per_letter:
        for value in (row.ap50, row.ap50_95, row.top1_accuracy):
            assert value is None or 0.0 <= value <= 1.0
    metrics = test_report.metrics_dict("test")
    assert set(metrics) == {
        "test_map50",
        "test_map50_95",
        "test_precision",
        "test_recall",
        "test_top1",
        "test_top1_low",
        "test_top1_high",
    }
    assert metrics["test_top1_low"] <= metrics["test_top1"] <= metrics["test_top1_high"]
    assert all(type(v) is float and math.isfinite(v) for v in metrics.values())
    assert test_report.metrics_dict() == metrics  # the prefix defaults to the split


def test_top1_matches_hand_computation(
    test_report: EvalReport, trained_weights: Path, subset_dataset: Path
) -> None:
    from ultralytics import YOLO

    model = YOLO(str(trained_weights))
    images = sorted((subset_dataset / "test" / "images").iterdir())
    right = 0
    confusion = np.zeros((27, 27), dtype=int)
    for image in images:
        (result,) = model.predict(str(image), imgsz=IMGSZ, conf=0.001, device="cpu", verbose=False)
        boxes = result.boxes
        guess = 26 if len(boxes) == 0 else int(boxes.cls[int(boxes.conf.argmax())])
        truth = _label_letter(image)
        confusion[truth, guess] += 1
        right += guess == truth
        assert test_report.image_correct[image.name] == (guess == truth), image.name
    assert test_report.top1_accuracy == pytest.approx(right / len(images))
    assert len(test_report.image_correct) == len(images)
    assert np.array_equal(np.array(test_report.confusion), confusion)
    assert test_report.confusion_labels[-1] == "background"


def test_top1_with_known_predictions_ignores_absent_letters(
    trained_weights: Path,
    sparse_dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    images = sorted((sparse_dataset / "valid" / "images").iterdir())
    truths = [_label_letter(image) for image in images]
    box = (1.0, 2.0, 30.0, 40.0)

    def fake(i: int, truth: int) -> TopLetter | None:
        # Right, wrong (always "Z"), then nothing: a known mix per image.
        return [TopLetter(truth, 0.9, box), TopLetter(25, 0.4, box), None][i % 3]

    def fake_top_letters(weights: Path, shown: list[Path], *args: object, **kwargs: object):
        assert shown == images
        return [fake(i, truth) for i, truth in enumerate(truths)]

    monkeypatch.setattr(evaluation, "_top_letters", fake_top_letters)
    report = evaluate(trained_weights, sparse_dataset / "data.yaml", "valid", tmp_path, imgsz=IMGSZ)

    assert report.split == "valid" and report.n_images == len(images) == 12
    assert report.absent_letters == tuple(letter for letter in LETTERS if letter not in "ABCD")
    expected = sum(i % 3 == 0 for i in range(len(images))) / len(images)
    assert report.top1_accuracy == pytest.approx(expected)
    present = [row for row in report.per_letter if row.present]
    assert [row.letter for row in present] == list("ABCD")
    for row in present:
        indices = [i for i, t in enumerate(truths) if LETTERS[t] == row.letter]
        assert row.n_boxes == len(indices)
        assert row.top1_accuracy == pytest.approx(sum(i % 3 == 0 for i in indices) / len(indices))
    # A mean over letters must use only present ones: absent letters are None, not zeros.
    letter_mean = sum(row.top1_accuracy or 0.0 for row in present) / len(present)
    assert letter_mean == pytest.approx(1 / 3)
    assert all(r.top1_accuracy is None for r in report.per_letter if not r.present)
    matrix = np.array(report.confusion)
    assert matrix.shape == (27, 27) and matrix.sum() == len(images)
    assert matrix[:, 25].sum() == sum(i % 3 == 1 for i in range(len(images)))  # "Z" guesses
    assert matrix[:, 26].sum() == sum(i % 3 == 2 for i in range(len(images)))  # no detection


def test_artifacts_are_valid_images(test_report: EvalReport) -> None:
    assert test_report.confusion_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert test_report.samples_jpg.read_bytes()[:2] == b"\xff\xd8"
    png = cv2.imread(str(test_report.confusion_png))
    jpg = cv2.imread(str(test_report.samples_jpg))
    assert png is not None and png.shape[0] > 200
    assert jpg is not None and jpg.shape[:2] == (4 * 256, 4 * 256)
    assert not list(test_report.samples_jpg.parent.glob(".*.tmp"))  # no leftovers


def test_missing_weights_raise_naming_the_file(subset_dataset: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "best.pt"
    with pytest.raises(EvaluationError, match=re.escape(str(missing))):
        evaluate(missing, subset_dataset / "data.yaml", "test", tmp_path / "out")


def test_unloadable_weights_raise_naming_the_file(subset_dataset: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"this is not a checkpoint")
    with pytest.raises(EvaluationError, match=re.escape(str(broken))):
        evaluate(broken, subset_dataset / "data.yaml", "test", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_empty_split_raises_naming_the_folder(trained_weights: Path, tmp_path: Path) -> None:
    root = tmp_path / "empty"
    (root / "test" / "images").mkdir(parents=True)
    (root / "data.yaml").write_text(
        yaml.safe_dump(
            {
                "path": ".",
                "train": "train/images",
                "val": "valid/images",
                "test": "test/images",
                "names": list(LETTERS),
            }
        )
    )
    with pytest.raises(EvaluationError, match=re.escape(str(root / "test" / "images"))):
        evaluate(trained_weights, root / "data.yaml", "test", tmp_path / "out")
    (root / "data.yaml").write_text(yaml.safe_dump({"test": "test/images"}))
    with pytest.raises(EvaluationError, match="'val'"):
        evaluate(trained_weights, root / "data.yaml", "valid", tmp_path / "out")


def test_absent_letter_rows_cannot_carry_metrics() -> None:
    with pytest.raises(ValueError, match="absent"):
        LetterRow(letter="E", n_boxes=0, present=False, ap50=0.0)
    with pytest.raises(ValueError, match="present"):
        LetterRow(letter="E", n_boxes=2, present=False)


def test_two_stage_folder_is_scored_from_the_recognizers_own_detections(
    two_stage_model: Path, subset_dataset: Path, tmp_path: Path
) -> None:
    from tasks.inference.recognizer import Recognizer

    report = evaluate(two_stage_model, subset_dataset / "data.yaml", "test", tmp_path, 160)
    assert report.absent_letters == ("E", "L")
    for value in report.metrics_dict().values():
        assert 0.0 <= value <= 1.0
    recognizer = Recognizer.load(str(two_stage_model))
    images = sorted((subset_dataset / "test" / "images").iterdir())
    right = 0
    for image in images:
        top = recognizer.recognize_path(image, conf=0.001, max_det=1).top
        right += top is not None and top.class_id == _label_letter(image)
    assert report.top1_accuracy == pytest.approx(right / len(images))
    assert report.confusion_png.is_file() and report.samples_jpg.is_file()


def test_two_stage_folder_with_a_broken_classifier_raises(
    two_stage_model: Path, subset_dataset: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "model"
    shutil.copytree(two_stage_model, broken)
    (broken / "classifier.onnx").write_bytes(b"not onnx")
    with pytest.raises(EvaluationError, match=re.escape(str(broken))):
        evaluate(broken, subset_dataset / "data.yaml", "test", tmp_path / "out", 160)
