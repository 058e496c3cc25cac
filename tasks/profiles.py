"""Named training recipes. A profile is values, never a branch in code."""

from __future__ import annotations

from tasks.train import TrainConfig

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
    # `make demo`: the whole pipeline in about 15 minutes on a 2-core CPU, from scratch.
    # A quarter of the (augmented) train split per epoch, so the 10 minutes hold whole
    # epochs. It shows every stage working; a useful model needs `cpu` or `gpu`.
    "demo": TrainConfig(
        model="yolo11n.yaml",
        imgsz=320,
        epochs=40,
        time_hours=0.17,
        batch=16,
        fraction=0.25,
        patience=0,
        workers=2,
    ),
    # A 2-core laptop within a 2-hour budget, no pretrained weights needed.
    "cpu": TrainConfig(
        model="yolo11n.yaml",
        imgsz=320,
        epochs=200,
        time_hours=1.9,
        batch=16,
        patience=0,
        workers=2,
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
