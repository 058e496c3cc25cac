"""Put a two-stage model together: one folder the recognizer, evaluation and registry take."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from tasks.core.files import build_dir
from tasks.inference.crop_classifier import CLASSIFIER_ONNX
from tasks.inference.fusion import LANDMARK_ONNX, FusionRule
from tasks.inference.landmarks import TASK_FILE

CLASSIFIER_WEIGHTS = "classifier.pt"


def assemble(
    detector_onnx: Path,
    classifier_onnx: Path,
    classifier_weights: Path | None,
    target: Path,
    pad: float,
    detector_int8: Path | None = None,
    mirror: bool = False,
    extra_classifiers: Sequence[Path] = (),
    landmarks: tuple[Path, Path, FusionRule] | None = None,
    fusion_figures: dict[str, float] | None = None,
) -> Path:
    """Write ``target`` holding the hand detector and the letter classifier side by side.

    Args:
        detector_onnx: The one-class hand detector's export (becomes ``model.onnx``).
        classifier_onnx: The letter classifier's export (becomes ``classifier.onnx``).
        classifier_weights: Its ultralytics checkpoint (becomes ``classifier.pt``), if kept.
        target: The folder to (re)create; written beside it and renamed when complete.
        pad: The crop margin the classifier was trained with (kept in ``metadata.json``).
        detector_int8: Optionally, an int8 detector (``model.int8.onnx``) to ship instead of
            the fp32 one: the folder then holds only the int8 detector.
        mirror: Whether the classifier averages each crop with its mirror image (kept in
            ``metadata.json``; see :class:`tasks.inference.crop_classifier.CropClassifier`).
        extra_classifiers: More letter classifiers' exports (``classifier-1.onnx``, …) whose
            probabilities are averaged with the first one's (an ensemble).
        landmarks: The landmark letter classifier (``landmarks.onnx``), MediaPipe's
            ``hand_landmarker.task`` and the fusion rule, for a fused model; the folder then
            holds everything it reads with (``metadata.json`` keeps the rule and the task's
            sha256).
        fusion_figures: How each reading (pixel, landmark, fused) did on valid and on the
            shifted valid when the rule was chosen (shown on the app's Model page).

    Returns:
        ``target``.
    """
    with build_dir(target, replace=True) as staged:
        if detector_int8 is None:
            shutil.copyfile(detector_onnx, staged / "model.onnx")
        else:
            shutil.copyfile(detector_int8, staged / "model.int8.onnx")
        shutil.copyfile(classifier_onnx, staged / CLASSIFIER_ONNX)
        members = [CLASSIFIER_ONNX]
        for i, extra in enumerate(extra_classifiers, start=1):
            members.append(f"classifier-{i}.onnx")
            shutil.copyfile(extra, staged / members[-1])
        if classifier_weights is not None:
            shutil.copyfile(classifier_weights, staged / CLASSIFIER_WEIGHTS)
        meta = two_stage_metadata(pad, mirror, members)
        if landmarks is not None:
            classifier, task, rule = landmarks
            shutil.copyfile(classifier, staged / LANDMARK_ONNX)
            shutil.copyfile(task, staged / TASK_FILE)
            meta["fusion"] = rule.model_dump(mode="json")
            meta["fusion_figures"] = dict(fusion_figures or {})
        (staged / "metadata.json").write_text(json.dumps(meta))
    return target


def is_two_stage(folder: Path) -> bool:
    """True when ``folder`` holds a letter classifier beside its detector."""
    return (folder / CLASSIFIER_ONNX).is_file()


def two_stage_metadata(
    pad: float, mirror: bool = False, classifiers: Sequence[str] = (CLASSIFIER_ONNX,)
) -> dict[str, object]:
    """The metadata keys that tell the recognizer how to run a two-stage model."""
    meta: dict[str, object] = {"two_stage": True, "crop_pad": pad, "crop_mirror": mirror}
    if len(classifiers) > 1:
        meta["classifiers"] = list(classifiers)
    return meta


def extra_classifiers(folder: Path) -> list[Path]:
    """The ensemble members of a two-stage ``folder`` beyond ``classifier.onnx`` (often none)."""
    meta = json.loads((folder / "metadata.json").read_text())
    return [folder / name for name in meta.get("classifiers", [])[1:]]


def crop_settings(folder: Path) -> tuple[float, bool]:
    """The crop margin and mirror setting a two-stage ``folder`` records (see :func:`assemble`)."""
    meta = json.loads((folder / "metadata.json").read_text())
    return float(meta["crop_pad"]), bool(meta.get("crop_mirror", False))


def bundle_artifacts(folder: Path) -> dict[str, Path]:
    """The files of a two-stage ``folder`` logged beside the detector, by artifact name."""
    artifacts = {
        "classifier": folder / CLASSIFIER_ONNX,
        "classifier_weights": folder / CLASSIFIER_WEIGHTS,
    }
    for path in extra_classifiers(folder):
        artifacts[path.stem.replace("-", "_")] = path
    if (folder / LANDMARK_ONNX).is_file():
        artifacts["landmarks"] = folder / LANDMARK_ONNX
        artifacts["hand_landmarker"] = folder / TASK_FILE
    return artifacts


def fusion_parts(folder: Path) -> tuple[Path, Path, FusionRule] | None:
    """A fused ``folder``'s landmark classifier, task file and rule (for :func:`assemble`)."""
    meta = json.loads((folder / "metadata.json").read_text())
    rule = meta.get("fusion")
    if not rule:
        return None
    return folder / LANDMARK_ONNX, folder / TASK_FILE, FusionRule.model_validate(rule)
