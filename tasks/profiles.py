"""Named training recipes. A profile is values, never a branch in code."""

from __future__ import annotations

from tasks.classifier_config import ClassifierConfig
from tasks.train import TrainConfig

# The hand detector of the two-stage recipes (tasks/architectures/): the slim detector without
# its stride-8 branch: in these photos the hand fills much of the frame (TRIALS.md #37, #38).
_HAND_DETECTOR = "yolo11-hand-p45.yaml"
# The letter classifier of the `cpu` recipe (an ensemble member would differ in seed and budget).
_CPU_CLASSIFIER = ClassifierConfig(
    imgsz=128, epochs=1000, time_hours=100 / 60, batch=32, optimizer="AdamW", lr0=0.002, jitter=0.15
)

PROFILES: dict[str, TrainConfig] = {
    # Seconds to a couple of minutes: exercises every stage, learns next to nothing.
    "smoke": TrainConfig(
        model="yolo11n.yaml",
        imgsz=160,
        epochs=1,
        batch=16,
        fraction=0.1,
        patience=0,
        workers=0,
        overrides={"val": False},
    ),
    # `make demo`: the whole pipeline in about 10 minutes on a 2-core CPU, from scratch: the
    # two-stage recipe of `cpu` with 8 minutes for each stage (side by side). It shows
    # every stage working and reads some letters; a useful model needs `cpu` or `gpu`.
    "demo": TrainConfig(
        model=_HAND_DETECTOR,
        imgsz=256,
        epochs=1000,
        time_hours=0.13,
        batch=16,
        patience=0,
        workers=2,
        optimizer="AdamW",
        overrides={"lr0": 0.002},
        classifier=ClassifierConfig(time_hours=0.13, epochs=1000),
        augment_copies=0,
    ),
    # A 2-core laptop within a 2-hour budget, no pretrained weights (benchmarks/TRIALS.md):
    # a one-class hand detector and, side by side with it, a letter classifier on jittered
    # hand crops (100 min). Ultralytics trains on one thread on a 2-core CPU, so the two
    # stages together use both cores, and the detector's 45 minutes end well inside the
    # classifier's 100. The detector is YOLO11 at half of n's width with no stride-8 head: a
    # fifth of YOLO11n's compute, and 60 epochs in its 45 minutes (40 with that head kept).
    # Trained in full (2026-12-03): valid top-1 0.84, test 0.78, test mAP50 0.88.
    # AdamW is explicit: with a time budget, optimizer=auto picks MuSGD, which costs ~13x
    # more per step on a CPU. Two more classifiers averaged with it (extra_classifiers,
    # 2 x 45 min after the detector) were tried in full: mAP50 +3 to +5 points, top-1 no
    # better on valid, and the classifier stage three times as slow, so they are not in it.
    "cpu": TrainConfig(
        model=_HAND_DETECTOR,
        imgsz=256,
        epochs=1000,
        time_hours=45 / 60,
        batch=16,
        patience=0,
        workers=2,
        optimizer="AdamW",
        overrides={"lr0": 0.002},
        classifier=_CPU_CLASSIFIER,
        # Measured on the export as it is (Roboflow augmented its train split ×3 already).
        # Our ×3 copies on top (with a 160-px classifier) scored lower on valid: TRIALS.md #25.
        augment_copies=0,
    ),
    # Vertex AI GPU: pretrained weights, the full recipe.
    "gpu": TrainConfig(
        model="yolo11n.pt",
        imgsz=640,
        epochs=100,
        batch=32,
        patience=30,
        workers=8,
        cache="ram",
    ),
}


def get_profile(name: str) -> TrainConfig:
    """The training recipe called ``name``; a clear error lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
