"""Whether an int8 model ships: quantize, score on valid, keep it only if it scores like fp32.

The choice reads valid (test stays for the reported figures) and both what a learner feels
(top-1) and what a detector is judged by (mAP50) must hold within the tolerance.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tasks.core.records import DatasetRef
from tasks.evaluation.evaluate import evaluate
from tasks.evaluation.report import EvalReport
from tasks.inference.bundle import (
    CLASSIFIER_WEIGHTS,
    assemble,
    crop_settings,
    extra_classifiers,
    fusion_parts,
)
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
    """Quantize, evaluate on ``fp32``'s split, and keep int8 only if it scores like fp32.

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
            landmarks=fusion_parts(two_stage),  # scored as shipped: fused like the fp32 one
        )
    report = evaluate(scored, dataset.data_yaml, fp32.split, out_dir / "int8", imgsz=imgsz)
    kept = int8_matches(fp32, report)
    verdict = "kept" if kept else "dropped"
    log.info(
        "int8 %s top-1 %.4f / mAP50 %.4f vs fp32 %.4f / %.4f: %s", fp32.split,
        report.top1_accuracy, report.map50, fp32.top1_accuracy, fp32.map50, verdict,
    )  # fmt: skip
    scores = {
        f"int8_{fp32.split}_top1": report.top1_accuracy,
        f"int8_{fp32.split}_map50": report.map50,
        "int8_kept": float(kept),
    }
    return (int8 if kept else None), scores


def int8_matches(fp32: EvalReport, int8: EvalReport, tolerance: float = INT8_TOLERANCE) -> bool:
    """Whether int8 scores like fp32 on the same split: top-1 and mAP50 within ``tolerance``."""
    if fp32.split != int8.split:
        raise ValueError(f"int8 scored on {int8.split}, fp32 on {fp32.split}: not comparable")
    return (
        fp32.top1_accuracy - int8.top1_accuracy <= tolerance
        and fp32.map50 - int8.map50 <= tolerance
    )
