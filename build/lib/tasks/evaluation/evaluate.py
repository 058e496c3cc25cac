"""Evaluate a trained detector on a split: detection mAP, top-1 letter accuracy, per-letter rows.

Detection metrics of a 26-class detector come from ultralytics' validator; a two-stage model
(a folder: hand detector + crop classifier) is scored from the recognizer's own detections
by :mod:`tasks.evaluation.matching` with the same AP definition. Top-1 accuracy asks, image by
image, whether the most confident detection names the image's letter (each image shows one hand).
Letters with no box in the split are reported as *absent* (``None``), never as zero, so they
cannot drag an average down. Any failure raises :class:`EvaluationError`: the registry relies
on that so a broken evaluation never promotes a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from tasks.core.records import LETTERS
from tasks.data.sources import AcquireError
from tasks.data.yolo_format import (
    label_path,
    list_images,
    read_label_lines,
    split_images,
    write_data_yaml,
)
from tasks.evaluation.plots import plot_confusion, plot_samples
from tasks.evaluation.report import CONFUSION_LABELS, EvalReport, LetterRow

SAMPLE_GRID = 4


class EvaluationError(RuntimeError):
    """The evaluation could not be completed; no metrics were produced."""


class TopLetter(NamedTuple):
    """The most confident detection in one image."""

    class_id: int
    confidence: float
    box: tuple[float, float, float, float]


def _top_letters(
    weights: Path, images: list[Path], imgsz: int, device: str = "cpu", conf: float = 0.001
) -> list[TopLetter | None]:
    """Each image's most confident detection (``None`` when there is none).

    Through the shared recognizer, so top-1 is what the app and the predict flow would say.
    ``imgsz`` and ``device`` are the model's own here (a .pt or .onnx file knows its size).
    """
    from tasks.inference.recognizer import Recognizer

    recognizer = Recognizer.load(str(weights))
    tops: list[TopLetter | None] = []
    for path in images:
        top = recognizer.recognize_path(path, conf=conf, max_det=1).top
        if top is None:
            tops.append(None)
            continue
        box = (top.box.x1, top.box.y1, top.box.x2, top.box.y2)
        tops.append(TopLetter(top.class_id, top.confidence, box))
    if len(tops) != len(images):
        raise EvaluationError(f"predicted {len(tops)} of {len(images)} images with {weights}")
    return tops


def _image_truths(images: list[Path]) -> list[int | None]:
    """The class of each image's (first) labelled box, ``None`` when it has no box."""
    truths: list[int | None] = []
    for image in images:
        boxes = read_label_lines(label_path(image))
        truths.append(boxes[0].cls if boxes else None)
    return truths


def _confusion(truths: list[int | None], tops: list[TopLetter | None]) -> np.ndarray:
    """27×27 top-1 counts; index 26 is "no labelled box" (rows) or "no detection" (columns)."""
    none = len(LETTERS)
    matrix = np.zeros((none + 1, none + 1), dtype=int)
    for truth, top in zip(truths, tops, strict=True):
        matrix[none if truth is None else truth, none if top is None else top.class_id] += 1
    return matrix


def _letter_rows(box: Any, counts: np.ndarray, labelled: np.ndarray) -> list[LetterRow]:
    """One row per letter from the validator's per-class AP and the top-1 confusion rows.

    ultralytics computes AP only for classes with targets (``ap_class_index``); every other
    letter is absent and keeps ``None`` rather than the zeros some of its arrays hold.
    """
    position = {int(c): i for i, c in enumerate(box.ap_class_index)}
    rows: list[LetterRow] = []
    for cls, letter in enumerate(LETTERS):
        n_boxes = int(counts[cls]) if cls < len(counts) else 0
        index = position.get(cls) if n_boxes else None
        seen = int(labelled[cls].sum())
        rows.append(
            LetterRow(
                letter=letter,
                n_boxes=n_boxes,
                present=n_boxes > 0,
                ap50=None if index is None else float(box.ap50[index]),
                ap50_95=None if index is None else float(box.ap[index]),
                top1_accuracy=float(labelled[cls, cls] / seen) if n_boxes and seen else None,
            )
        )
    return rows


def evaluate(
    weights: Path,
    data_yaml: Path,
    split: Literal["test", "valid"],
    out_dir: Path,
    imgsz: int = 320,
    batch: int = 16,
    device: str = "cpu",
    conf: float = 0.001,
) -> EvalReport:
    """Evaluate ``weights`` on one split of a YOLO dataset and draw the report's pictures.

    Args:
        weights: A trained ultralytics ``.pt`` (or ``.onnx``) file with the 26 letter classes,
            or a two-stage model folder (``model.onnx`` + ``classifier.onnx``).
        data_yaml: The dataset's ``data.yaml``.
        split: ``"test"`` or ``"valid"``.
        out_dir: Folder for the validator's run folder and the artifacts (under ``out_dir/split``).
        imgsz: Inference image size.
        batch: Validation batch size.
        device: Torch device, e.g. ``"cpu"`` or ``"0"``.
        conf: Confidence threshold for validation and for top-1 predictions.

    Returns:
        The complete report.

    Raises:
        ValueError: ``split`` is neither ``"test"`` nor ``"valid"``.
        EvaluationError: The weights or dataset are missing or unreadable, the split is empty,
            or validation failed. Nothing partial is ever returned.
    """
    if split not in ("test", "valid"):
        raise ValueError(f"split must be 'test' or 'valid', not {split!r}")
    weights, data_yaml = Path(weights), Path(data_yaml)
    if not weights.exists():
        raise EvaluationError(f"weights not found: {weights}")
    if not data_yaml.is_file():
        raise EvaluationError(f"dataset spec not found: {data_yaml}")
    try:
        images_dir, spec = split_images(data_yaml, split)
    except AcquireError as exc:
        raise EvaluationError(str(exc)) from exc
    images = list_images(images_dir)
    if not images:
        raise EvaluationError(f"split '{split}' of {data_yaml} has no images in {images_dir}")

    run_dir = Path(out_dir) / split
    if weights.is_dir():
        box, counts, tops = _two_stage_metrics(weights, images, conf)
    else:
        box, counts, tops = _validator_metrics(
            weights, images, images_dir, spec, out_dir, split, imgsz, batch, device, conf
        )
    if counts is None or int(np.sum(counts)) == 0:
        raise EvaluationError(f"split '{split}' of {data_yaml} has no labelled boxes")
    return _report(weights, split, imgsz, images, box, counts, tops, run_dir, data_yaml)


def _two_stage_metrics(folder: Path, images: list[Path], conf: float):
    from tasks.evaluation.matching import recognizer_metrics
    from tasks.inference.recognizer import Recognizer

    try:
        recognizer = Recognizer.load(str(folder))
        if len(recognizer.names) != len(LETTERS):
            raise EvaluationError(f"{folder} reads {len(recognizer.names)} classes, not 26 letters")
        box, counts, raw = recognizer_metrics(recognizer, images, conf)
    except EvaluationError:
        raise
    except Exception as exc:
        raise EvaluationError(f"evaluating {folder} on {images[0].parent} failed: {exc}") from exc
    tops = [None if t is None else TopLetter(t[0], t[1], t[2]) for t in raw]  # type: ignore[arg-type]
    return box, counts, tops


def _validator_metrics(
    weights: Path,
    images: list[Path],
    images_dir: Path,
    spec: dict[str, Any],
    out_dir: Path,
    split: str,
    imgsz: int,
    batch: int,
    device: str,
    conf: float,
):
    from ultralytics import YOLO

    try:
        model = YOLO(str(weights))
    except Exception as exc:
        raise EvaluationError(f"cannot load weights {weights}: {exc}") from exc
    if len(model.names) != len(LETTERS):
        raise EvaluationError(f"weights {weights} have {len(model.names)} classes, not 26 letters")

    run_dir = Path(out_dir) / split
    # The validator gets a spec whose root is absolute and whose val split is the one asked for.
    resolved = {"path": str(images_dir.parent), "train": str(images_dir), "val": str(images_dir)}
    resolved |= {"names": spec.get("names", list(LETTERS)), "nc": len(LETTERS)}
    data_file = write_data_yaml(run_dir / "data.yaml", resolved)
    try:
        metrics = model.val(
            data=str(data_file),
            split="val",
            imgsz=imgsz,
            batch=batch,
            device=device,
            conf=conf,
            plots=False,
            project=str(Path(out_dir).resolve()),
            name=split,
            exist_ok=True,
            verbose=False,
        )
        tops = _top_letters(weights, images, imgsz, device=device, conf=conf)
    except EvaluationError:
        raise
    except Exception as exc:
        raise EvaluationError(f"evaluating {weights} on {images_dir} failed: {exc}") from exc
    return metrics.box, getattr(metrics, "nt_per_class", None), tops


def _report(
    weights: Path,
    split: Literal["test", "valid"],
    imgsz: int,
    images: list[Path],
    box: Any,
    counts: np.ndarray,
    tops: list[TopLetter | None],
    run_dir: Path,
    data_yaml: Path,
) -> EvalReport:
    truths = _image_truths(images)
    confusion = _confusion(truths, tops)
    labelled = confusion[: len(LETTERS)]  # images without a box have no letter to get right
    if labelled.sum() == 0:
        raise EvaluationError(f"split '{split}' of {data_yaml} has no labelled images")
    rows = _letter_rows(box, counts, labelled)

    # Spread the sample grid over the (name-sorted, hence letter-sorted) images for variety.
    picks = np.unique(np.linspace(0, len(images) - 1, SAMPLE_GRID**2).round().astype(int))
    try:
        confusion_png = plot_confusion(
            confusion,
            CONFUSION_LABELS,
            run_dir / "confusion_matrix.png",
            title=f"Top-1 letters on {split} ({len(images)} images)",
        )
        samples_jpg = plot_samples(
            [images[i] for i in picks],
            [None if (t := tops[i]) is None else (LETTERS[t.class_id], *t[1:]) for i in picks],
            [CONFUSION_LABELS[-1 if truths[i] is None else truths[i]] for i in picks],
            run_dir / "samples.jpg",
            columns=SAMPLE_GRID,
        )
    except Exception as exc:  # a report without its pictures would be a partial report
        raise EvaluationError(f"writing evaluation artifacts to {run_dir} failed: {exc}") from exc
    return EvalReport(
        split=split,
        weights=str(weights),
        imgsz=imgsz,
        n_images=len(images),
        map50=float(box.map50),
        map50_95=float(box.map),
        precision=float(box.mp),
        recall=float(box.mr),
        top1_accuracy=float(np.trace(labelled[:, : len(LETTERS)]) / labelled.sum()),
        per_letter=tuple(rows),
        absent_letters=tuple(r.letter for r in rows if not r.present),
        confusion=confusion.tolist(),
        confusion_png=confusion_png,
        samples_jpg=samples_jpg,
        image_correct={
            image.name: top is not None and top.class_id == truth
            for image, truth, top in zip(images, truths, tops, strict=True)
            if truth is not None
        },
    )
