"""The landmark stage of a two-stage recipe: landmarks, their classifier, the fusion rule.

Runs once the crop classifier is exported: it finds MediaPipe's landmark model (the weights
folder first, as pretrained YOLO weights are found), reads the landmarks of train and valid
(cached by dataset id), trains the landmark classifier, and chooses the fusion rule on
valid and a shifted valid (:mod:`tasks.training.fusion_choice`). Test is never read here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

from tasks.inference.crop_classifier import CropClassifier
from tasks.inference.fusion import FusionRule, LandmarkClassifier
from tasks.inference.landmarks import READING, TASK_FILE, LandmarkReader
from tasks.training.fusion_choice import choose_rule, read_split
from tasks.training.landmark_classifier import extract, train_landmarks
from tasks.training.landmark_config import LandmarkConfig
from tasks.training.weights import PRETRAINED_CACHE, StartingWeights, resolve_weights

log = logging.getLogger(__name__)


class LandmarkStage(NamedTuple):
    """What the landmark stage made: files for the model folder, the rule, the figures."""

    classifier: Path  # landmarks.onnx
    rule: FusionRule
    metrics: dict[str, float]
    rows: list[dict[str, float]]  # each candidate weight on valid and the shifted valid
    started_from: StartingWeights  # hand_landmarker.task: its path, sha256 and origin

    @property
    def task(self) -> Path:
        """The ``hand_landmarker.task`` file the stage read with."""
        assert self.started_from.path is not None  # a stage exists only when it was found
        return self.started_from.path


def find_task(config: LandmarkConfig, weights_dir: Path | None, cache_dir: Path) -> StartingWeights:
    """MediaPipe's ``hand_landmarker.task``: in ``weights_dir``, the cache, or downloaded."""
    found = resolve_weights(config.task, weights_dir, cache_dir)
    if found.path is not None and found.path.name != TASK_FILE:
        log.info("hand landmark model %s stands in for %s", found.path, TASK_FILE)
    return found


def train_landmark_stage(
    data_yaml: Path,
    dataset_id: str,
    names: tuple[str, ...],
    pixels: Path,
    pixels_pad: float,
    pixels_mirror: bool,
    config: LandmarkConfig,
    out_dir: Path,
    cache_dir: Path,
    weights_dir: Path | None,
) -> LandmarkStage | None:
    """Train the landmark classifier of a two-stage model and choose how to fuse it.

    Args:
        data_yaml: The (augmented) dataset the crop classifier trained on.
        dataset_id: Its content id (names the landmark cache).
        names: Letter names by class id.
        pixels: The crop classifier's ONNX export.
        pixels_pad: Its crop margin.
        pixels_mirror: Whether it averages each crop with its mirror image.
        config: The landmark recipe.
        out_dir: Where ``landmarks.onnx`` is written.
        cache_dir: A runs folder: a downloaded task file is kept in its ``pretrained/`` (as
            YOLO weights are), the landmarks of each split in its ``landmarks/``; a learner's
            runs folder lies under their name, so deleting the learner removes both.
        weights_dir: Searched first for ``hand_landmarker.task``.

    Returns:
        The stage's files and figures; None when the landmark model cannot be had (the
        model then reads pixels alone, and the log says why).
    """
    task = find_task(config, weights_dir, cache_dir / PRETRAINED_CACHE)
    if task.path is None:
        log.warning("no hand landmark model, the model reads pixels alone: %s", task.reason)
        return None
    log.info("hand landmark model: %s", task.describe())
    reader = LandmarkReader(task.path, task.sha256)
    # What decides the cached rows: the images, the model, the crop, the least presence and
    # how a crop is read (turned where unsure).
    key = (
        f"{dataset_id[:16]}-{(task.sha256 or '')[:12]}-pad{config.crop_pad:g}"
        f"-p{config.presence:g}-{READING}"
    )
    train, valid = (
        extract(data_yaml, split, reader, config, cache_dir / "landmarks" / f"{key}-{split}.npz")
        for split in ("train", "valid")
    )
    trained = train_landmarks(train, valid, names, config, out_dir)
    crop = CropClassifier(pixels, pixels_pad, mirror=pixels_mirror)
    landmarks = LandmarkClassifier(trained.onnx)
    on_valid = read_split(valid, crop, landmarks, reader, config)
    on_shifted = read_split(valid, crop, landmarks, reader, config, shifted=True, seed=config.seed)
    choice = choose_rule(on_valid, on_shifted, config, task.sha256)
    metrics = {
        **trained.metrics,
        **choice.metrics,
        "landmark_train_missing": float((~train.found).sum()),
        "landmark_valid_missing": float((~valid.found).sum()),
        "landmark_train_seconds": trained.seconds,
    }
    log.info("fusion rule %s (%s)", choice.rule, metrics)
    return LandmarkStage(trained.onnx, choice.rule, metrics, choice.rows, task)


def summary(stage: LandmarkStage) -> str:
    """What the landmark stage found and chose, as Markdown (the Prefect UI shows it)."""
    m, rule = stage.metrics, stage.rule
    rows = "".join(
        f"| {part} | {m[f'box_valid_top1_{part}']:.3f} | {m[f'shifted_valid_top1_{part}']:.3f} |\n"
        for part in ("pixel", "landmark", "fused")
    )
    return (
        f"**Hand landmarks** ({stage.started_from.describe()}): no hand found in "
        f"{m['landmark_train_missing']:.0f} train and {m['landmark_valid_missing']:.0f} valid "
        "labelled boxes (counted as wrong, not dropped).\n\n"
        "| top-1 on valid's boxes | valid | webcam-shifted valid |\n|---|---|---|\n"
        f"{rows}\nFusion: landmark weight {rule.landmark_weight:.1f}; temperatures pixel "
        f"{rule.pixel_temperature:.2f}, landmark {rule.landmark_temperature:.2f}."
    )
