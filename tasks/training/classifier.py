"""Stage two of the two-stage recipe: train a letter classifier on hand crops.

The crops come from :func:`tasks.training.crops.build_crop_dataset` (train boxes jittered so the
classifier learns to read the slightly-off boxes a detector draws), and the model is an
ultralytics ``-cls`` network, started from pretrained weights where a recipe names them and
they can be had (:mod:`tasks.training.weights`). Like :func:`tasks.training.detector.train`, a
finished training of the same dataset and recipe is reused, and an interrupted one resumes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from tasks.training import architectures
from tasks.training.classifier_config import ClassifierConfig
from tasks.training.crops import build_crop_dataset
from tasks.training.resume import Recording, TrainResult, claim, finish_run, resumed_model
from tasks.training.ultralytics_hooks import (
    MlflowLogger,
    note,
    quiet_ultralytics,
    reporting,
    reused,
)
from tasks.training.weights import PRETRAINED_CACHE, resolve_weights, transfer

log = logging.getLogger(__name__)

DONE_MARKER = "fingerspell-classifier.json"


def train_classifier(
    dataset_root: Path,
    dataset_id: str,
    config: ClassifierConfig,
    runs_dir: Path,
    device: str = "cpu",
    mlflow_run_id: str | None = None,
    tracking_uri: str | None = None,
    weights_dir: Path | None = None,
    progress: Path | None = None,
) -> TrainResult:
    """Cut hand crops from a YOLO dataset and train (or resume, or reuse) the classifier.

    Args:
        dataset_root: A validated YOLO dataset (``data.yaml``, ``<split>/images|labels``).
        dataset_id: Its content id, part of the run and crop folder keys.
        config: The recipe.
        runs_dir: Where run folders (and the ``crops`` folder) live.
        device: Torch device.
        mlflow_run_id: If given, params and per-epoch metrics are logged to this run.
        tracking_uri: The MLflow server of that run (needed in a fresh process).
        weights_dir: Searched first for ``config.weights`` (see :mod:`tasks.training.weights`).
        progress: A record file to keep this training's progress in (a display in another
            process shows it); ultralytics' own console output is quiet then.

    Returns:
        The weights and a summary of the training; ``metrics`` holds the valid top-1.
    """
    quiet_ultralytics()
    note(progress, "preparing")  # cutting crops may take a while
    from ultralytics import YOLO

    crops = runs_dir / "crops" / config.crops_key(dataset_id)
    if not crops.exists():
        log.info("cutting hand crops of %s into %s", dataset_root, crops)
        build_crop_dataset(
            dataset_root,
            crops,
            pad=config.pad,
            size=config.crop_side,
            jitter=config.jitter,
            train_copies=config.train_copies,
            seed=config.seed,
        )
    start = resolve_weights(config.weights, weights_dir, runs_dir / PRETRAINED_CACHE)
    run_dir = runs_dir / config.key(dataset_id, start.sha256)
    recording = Recording(
        n_train=lambda: _count_crops(crops),
        fraction=config.fraction,
        row_metrics=_top1_metrics,
        best_metric=TOP1,
    )
    with claim(run_dir, DONE_MARKER, start, recording) as state:
        if state.finished is not None:
            return reused(progress, state.finished, *BEST)
        if state.resume:
            model, transferred = resumed_model(run_dir, state), None
            kwargs: dict[str, Any] = {"resume": True, "data": str(crops), "workers": config.workers}
        else:
            model = YOLO(architectures.resolve(config.model))
            transferred = transfer(model, start)
            kwargs = _fresh_args(config, crops, runs_dir, run_dir, device, start.pretrained)
        if mlflow_run_id:
            MlflowLogger(mlflow_run_id, tracking_uri).attach(model)
        started = time.time()
        with reporting(model, progress, TOP1, BEST[0]):
            model.train(**kwargs)
        trainer_metrics = getattr(model.trainer, "metrics", None) or {}
        return finish_run(
            run_dir, _count_crops(crops), config.fraction, state.resume,
            _top1_metrics(trainer_metrics), start, transferred, DONE_MARKER,
            fallback_seconds=time.time() - started,
        )  # fmt: skip


TOP1 = "metrics/accuracy_top1"
BEST = ("top1", "valid_crop_top1")  # display name, and name in a TrainResult


def _count_crops(crops: Path) -> int:
    return sum(1 for _ in (crops / "train").rglob("*.jpg"))


def _top1_metrics(values: dict[str, Any]) -> dict[str, float]:
    top1 = float(values.get(TOP1, float("nan")))
    return {"valid_crop_top1": top1} if top1 == top1 else {}


def _fresh_args(
    config: ClassifierConfig,
    crops: Path,
    runs_dir: Path,
    run_dir: Path,
    device: str,
    pretrained: bool,
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "data": str(crops),
        "imgsz": config.imgsz,
        "epochs": config.epochs,
        "batch": config.batch,
        "optimizer": config.optimizer,
        "lr0": config.lr0,
        "fraction": config.fraction,
        "seed": config.seed,
        "deterministic": True,
        "device": device,
        "workers": config.workers,
        # False makes ultralytics re-initialise every layer, loaded ones too.
        "pretrained": pretrained,
        "amp": False,
        "project": str(runs_dir),
        "name": run_dir.name,
        "exist_ok": True,
        "plots": False,
        "verbose": False,
    }
    if config.time_hours is not None:
        kwargs["time"] = config.time_hours
    if config.warmup_epochs is not None:
        kwargs["warmup_epochs"] = config.warmup_epochs
    return kwargs
