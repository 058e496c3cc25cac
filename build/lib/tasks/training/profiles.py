"""Named training recipes. A profile is values, never a branch in code."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.training.classifier_config import ClassifierConfig
from tasks.training.detector import TrainConfig
from tasks.training.landmark_config import LandmarkConfig

# Pretrained: the YOLOv5u family. Online, ultralytics downloads ``yolov5nu.pt`` (COCO); an offline
# machine keeps its stand-in (the same backbone and neck) in FINGERSPELL_WEIGHTS_DIR.
PRETRAINED = "yolov5nu.pt"
# Both stages start from those weights: the hand detector is yolov5n itself (its stride-8
# head kept: a learner at a desk shows a smaller hand than these close-ups), the letter
# classifier is the yolov5n backbone with a Classify head (tasks/training/architectures/).
_CPU_CLASSIFIER = ClassifierConfig(
    model="yolov5n-cls.yaml",
    weights=PRETRAINED,
    imgsz=128,
    epochs=1000,
    time_hours=90 / 60,
    batch=32,
    optimizer="AdamW",
    lr0=0.002,
    jitter=0.15,
)
# A 2-core laptop within a 2-hour budget (benchmarks/TRIALS.md, session 11, #40): the
# pretrained hand detector and, side by side with it (ultralytics trains on one thread on 2
# cores), the pretrained letter classifier on jittered hand crops. Both saturate early on 504
# photos: the classifier stops when valid has not improved for 100 epochs (~36 min in #40),
# giving valid top-1 0.90, test 0.83. AdamW is explicit: with a time budget,
# optimizer=auto picks MuSGD, ~13x slower per step on a CPU.
_CPU = TrainConfig(
    model="yolov5n.yaml",
    weights=PRETRAINED,
    imgsz=256,
    epochs=1000,
    time_hours=40 / 60,
    batch=16,
    patience=0,
    workers=2,
    optimizer="AdamW",
    overrides={"lr0": 0.002},
    classifier=_CPU_CLASSIFIER,
    # Hand landmarks beside the pixels, for people the dataset never showed (issue 27;
    # benchmarks/TRIALS.md, session 15). About a minute on 2 cores, after the detector.
    landmarks=LandmarkConfig(),
    # Measured on the export as it is (Roboflow augmented its train split ×3 already).
    augment_copies=0,
)
# The from-scratch recipe of sessions 5-10 (no weights to be had): YOLO11 at half of n's width
# without the stride-8 head, and a 128-px yolo11n-cls classifier (100 min). Trained in full
# (2026-12-03): valid top-1 0.84, test 0.78, test mAP50 0.88 (TRIALS.md #38).
_SCRATCH = _CPU.model_copy(
    update={
        "model": "yolo11-hand-p45.yaml",
        "weights": None,
        "time_hours": 45 / 60,
        "classifier": _CPU_CLASSIFIER.model_copy(
            update={"model": "yolo11n-cls.yaml", "weights": None, "time_hours": 100 / 60}
        ),
    }
)


def _within(recipe: TrainConfig, hours: float) -> TrainConfig:
    """``recipe`` with both stages' time budgets set to ``hours``."""
    if recipe.classifier is None:
        raise ValueError("a time budget per stage needs a two-stage recipe")
    stage2 = recipe.classifier.model_copy(update={"time_hours": hours})
    return recipe.model_copy(update={"time_hours": hours, "classifier": stage2})


PROFILES: dict[str, TrainConfig] = {
    # Seconds to a couple of minutes: exercises every stage (pretrained weights included),
    # learns next to nothing.
    "smoke": TrainConfig(
        model="yolov5n.yaml",
        weights=PRETRAINED,
        imgsz=160,
        epochs=1,
        batch=16,
        fraction=0.1,
        patience=0,
        workers=0,
        overrides={"val": False},
    ),
    # `make demo`: the `cpu` recipe with 8 minutes for each stage (side by side), about 10
    # minutes of training on a 2-core CPU.
    "demo": _within(_CPU, 0.13),
    "cpu": _CPU,
    # For a machine that can get no pretrained weights at all.
    "scratch": _SCRATCH,
    # Vertex AI GPU: the same family and stages, trained by epochs rather than minutes.
    "gpu": _CPU.model_copy(
        update={
            "imgsz": 320,
            "epochs": 100,
            "time_hours": None,
            "batch": 64,
            "patience": 30,
            "workers": 8,
            "cache": "ram",
            "classifier": _CPU_CLASSIFIER.model_copy(
                update={"epochs": 100, "time_hours": None, "batch": 128, "workers": 8}
            ),
        }
    ),
}


def get_profile(name: str) -> TrainConfig:
    """The training recipe called ``name``; a clear error lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None


def with_changes(recipe: TrainConfig, changes: Mapping[str, Any]) -> TrainConfig:
    """``recipe`` with some fields changed, the rest kept.

    Args:
        recipe: A profile's recipe or an explicit one.
        changes: Dotted field names and values, e.g. ``{"imgsz": 320,
            "classifier.time_hours": 0.25}``.

    Raises:
        ValueError: A name that is no field of the recipe, or a value the field refuses.
    """
    data = recipe.model_dump()
    for dotted, value in changes.items():
        *sections, name = dotted.split(".")
        target = data
        for section in sections:
            if not isinstance(target.get(section), dict):
                raise ValueError(f"cannot change {dotted!r}: the recipe has no section {section!r}")
            target = target[section]
        if name not in target:
            raise ValueError(f"cannot change {dotted!r}: the recipe has no field {name!r}")
        target[name] = value
    return TrainConfig.model_validate(data)


# A learner's fine-tune (the personalize flow): a few minutes per stage from the champion's own
# weights, at a tenth of the learning rate and without warm-up, so that the general skill
# stays while the new hands, camera and room are learnt. No plots: ultralytics' plots draw the
# training images (the learner's webcam frames) into the run folder.
PERSONAL_LR = 0.0002


def _trained_imgsz(checkpoint: Path, default: int) -> int:
    """The input size an ultralytics ``checkpoint`` was trained at (``default`` if it has none)."""
    from tasks.training.weights import load_checkpoint  # here only: profiles import cheaply

    try:
        args = load_checkpoint(checkpoint).get("train_args")
    except (OSError, EOFError):  # an empty stand-in (unit tests); training would refuse it
        return default
    size = (args or {}).get("imgsz", default)
    return int(size if isinstance(size, int) else size[0])


def personal(meta: Mapping[str, Any], artifacts: Path, minutes: float | None) -> TrainConfig:
    """The recipe that fine-tunes a registered model on base data plus a learner's captures.

    Args:
        meta: The model's ``metadata.json`` (its profile, input size, crop settings).
        artifacts: The folder holding its ``best.pt`` (and ``classifier.pt``).
        minutes: Time budget per stage (stages train side by side); None keeps the profile's
            epochs (the ``smoke`` profile in tests).

    Returns:
        The champion's own recipe, starting from its weights, at its input sizes.
    """
    recipe = PROFILES.get(str(meta.get("profile")), _CPU)
    letters = artifacts / "classifier.pt"
    # The stages follow the champion's files, not its profile's name: a two-stage model
    # registered under a one-stage profile must not lose its classifier, nor the reverse.
    stage2 = (recipe.classifier or _CPU_CLASSIFIER) if letters.exists() else None
    changes: dict[str, Any] = {
        "weights": str(artifacts / "best.pt"),
        "imgsz": int(meta["imgsz"]),
        "overrides": {**recipe.overrides, "lr0": PERSONAL_LR, "warmup_epochs": 0, "plots": False},
        "augment_copies": 0,
    }
    if minutes is not None:
        changes |= {"time_hours": minutes / 60, "epochs": 1000}
    if stage2 is not None:
        # The crops must be cut and sized as the champion's classifier learnt them; its size
        # is in its checkpoint only (it may differ from the profile's, e.g. an override).
        changes |= {
            "classifier.weights": str(letters),
            "classifier.imgsz": _trained_imgsz(letters, stage2.imgsz),
            "classifier.pad": float(meta.get("crop_pad", stage2.pad)),
            "classifier.mirror": bool(meta.get("crop_mirror", stage2.mirror)),
            "classifier.lr0": PERSONAL_LR,
            "classifier.warmup_epochs": 0,
        }
        if minutes is not None:
            changes |= {"classifier.time_hours": minutes / 60, "classifier.epochs": 1000}
    return with_changes(
        # The landmark classifier is refit on base data plus the learner's captures (seconds).
        recipe.model_copy(
            update={
                "extra_classifiers": (),
                "classifier": stage2,
                "landmarks": recipe.landmarks if stage2 is not None else None,
            }
        ),
        changes,
    )
