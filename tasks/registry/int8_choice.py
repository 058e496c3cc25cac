"""Whether an int8 model ships: quantize, score on test, keep it only if it scores like fp32."""

from __future__ import annotations

import logging
from pathlib import Path

from tasks.core.records import DatasetRef
from tasks.evaluation.evaluate import evaluate
from tasks.evaluation.report import EvalReport
from tasks.inference.bundle import CLASSIFIER_WEIGHTS, assemble, crop_settings, extra_classifiers
from tasks.inference.export import quantize_int8

log = logging.getLogger(__name__)

INT8_TOLERANCE = 0.01
CALIBRATION_IMAGES = 64


def int8_variant(
    onnx: Path,
    dataset: DatasetRef,
    fp32: EvalReport,
    out_dir: Path,
    imgsz: int,
    two_stage: Path | None = None,
) -> tuple[Path | None, dict[str, float]]:
    """Quantize, evaluate on test, and keep the int8 model only if it scores like fp32.

    For a two-stage model the detector is quantized and scored together with its (fp32)
    classifier, since the letters a user gets come from both.
    """
    train_images = sorted((dataset.local_path / "train" / "images").iterdir())
    step = max(1, len(train_images) // CALIBRATION_IMAGES)
    calibration = train_images[::step][:CALIBRATION_IMAGES]
    int8 = quantize_int8(onnx, calibration, onnx.with_name("model.int8.onnx"))
    scored: Path = int8
    if two_stage is not None:
        pad, mirror = crop_settings(two_stage)
        scored = assemble(
            onnx,
            two_stage / "classifier.onnx",
            two_stage / CLASSIFIER_WEIGHTS,
            out_dir / "int8-model",
            pad=pad,
            detector_int8=int8,
            mirror=mirror,
            extra_classifiers=extra_classifiers(two_stage),
        )
    report = evaluate(scored, dataset.data_yaml, "test", out_dir / "int8", imgsz=imgsz)
    drop = fp32.map50 - report.map50
    kept = drop <= INT8_TOLERANCE
    verdict = "kept" if kept else "dropped"
    log.info("int8 test mAP50 %.4f vs fp32 %.4f: %s", report.map50, fp32.map50, verdict)
    return (int8 if kept else None), {"int8_test_map50": report.map50, "int8_kept": float(kept)}
