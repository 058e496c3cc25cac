"""Choose how a model fuses its two letter readings, on valid and on a shifted valid.

Valid is the dataset's own domain (phone close-ups, a few people's hands) and favours
pixels: a weight picked on it alone leans on skin, light and room, and loses on signers the
dataset never showed. So each candidate weight is scored twice, on valid and on a copy of
valid shifted toward a learner's webcam (a smaller, blurrier hand, another camera's colour
and light, sensor noise), and the rule keeps the best worst case of the two. A weight must
beat the even mean by more than :data:`NOISE_IMAGES` images in that worst case to replace
it: one valid image is 0.7 points, and two images are noise. Each side's probabilities are
calibrated first with a temperature fitted on valid (they are averaged, so their scales
must agree). Test is never read here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from tasks.inference.crop_classifier import CropClassifier
from tasks.inference.fusion import FusionRule, LandmarkClassifier, fuse
from tasks.inference.landmarks import LandmarkReader, features
from tasks.training.landmark_classifier import LandmarkSet
from tasks.training.landmark_config import LandmarkConfig

WEIGHTS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
EVEN = 0.5
NOISE_IMAGES = 2
_TEMPERATURES = np.geomspace(0.2, 5.0, 41)


class Readings(NamedTuple):
    """Both sides' letter probabilities for each labelled box of a split."""

    pixel: np.ndarray  # (N, C)
    landmark: np.ndarray  # (N, C); NaN rows where no hand was found (not read at all)
    labels: np.ndarray  # (N,)


def shift(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image as a webcam at a desk might show it: smaller, softer, other light and colour."""
    height, width = image.shape[:2]
    factor = rng.uniform(0.3, 0.5)  # the hand spans a third to a half of the pixels
    small = cv2.resize(image, (max(8, int(width * factor)), max(8, int(height * factor))),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    out = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    out *= rng.uniform(0.75, 1.25, 3)  # white balance
    grey = out.mean(axis=2, keepdims=True)
    out = grey + (out - grey) * rng.uniform(0.6, 1.2)  # saturation
    out = 255 * (np.clip(out, 0, 255) / 255) ** rng.uniform(0.7, 1.5)  # exposure
    out += rng.normal(0, rng.uniform(2, 8), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def read_split(
    split: LandmarkSet,
    pixels: CropClassifier,
    landmarks: LandmarkClassifier,
    reader: LandmarkReader,
    config: LandmarkConfig,
    shifted: bool = False,
    seed: int = 0,
) -> Readings:
    """Read every labelled box of ``split`` with both classifiers (optionally :func:`shift`-ed)."""
    rng = np.random.default_rng(seed)
    images: dict[str, np.ndarray] = {}
    pixel, landmark = [], []
    for path, box_array in zip(split.images, split.boxes, strict=True):
        if path not in images:
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"cannot read {path} as an image")
            images[path] = shift(image, rng) if shifted else image
        image, box = images[path], tuple(float(v) for v in box_array)
        pixel.append(pixels.probabilities(image, box))  # type: ignore[arg-type]
        hand = reader.read(image, box, config.crop_pad)  # type: ignore[arg-type]
        if hand.presence >= config.presence:
            landmark.append(landmarks.probabilities(features(hand.points, hand.right))[0])
        else:
            landmark.append(np.full(len(landmarks.names), np.nan, np.float32))
    return Readings(np.asarray(pixel), np.asarray(landmark), split.labels)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels``."""
    if not len(labels):
        return 1.0
    logp = np.log(np.clip(probs, 1e-12, 1.0))

    def nll(t: float) -> float:
        z = logp / t
        z -= z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(axis=1))
        return float((log_norm - z[np.arange(len(labels)), labels]).mean())

    return float(min(_TEMPERATURES, key=nll))


def correct(readings: Readings, rule: FusionRule) -> int:
    """How many boxes the fused rule reads right (a box with no hand found is not read)."""
    found = ~np.isnan(readings.landmark).any(axis=1)
    fused = [
        fuse(p, lm, rule).argmax()
        for p, lm in zip(readings.pixel[found], readings.landmark[found], strict=True)
    ]
    return int((np.asarray(fused, int) == readings.labels[found]).sum())


class Choice(NamedTuple):
    """The chosen rule and every candidate's counts (for the report)."""

    rule: FusionRule
    rows: list[dict[str, float]]
    metrics: dict[str, float]


def choose_rule(
    valid: Readings, shifted: Readings, config: LandmarkConfig, task_sha256: str | None
) -> Choice:
    """Calibrate each side on valid, then pick the landmark weight by best worst case.

    Args:
        valid: Both sides' readings of valid.
        shifted: The same of the shifted valid.
        config: The recipe (a fixed ``landmark_weight`` there skips the choice).
        task_sha256: Recorded in the rule, checked when a model folder is loaded.

    Returns:
        The rule, a row per candidate weight and the metrics to log.
    """
    found = ~np.isnan(valid.landmark).any(axis=1)
    base = FusionRule(
        pixel_temperature=fit_temperature(valid.pixel, valid.labels),
        landmark_temperature=fit_temperature(valid.landmark[found], valid.labels[found]),
        presence=config.presence,
        crop_pad=config.crop_pad,
        task_sha256=task_sha256,
    )
    n_valid, n_shift = max(len(valid.labels), 1), max(len(shifted.labels), 1)
    rows, worst = [], {}
    for weight in WEIGHTS:
        rule = base.model_copy(update={"landmark_weight": weight})
        on_valid, on_shift = correct(valid, rule), correct(shifted, rule)
        worst[weight] = min(on_valid / n_valid, on_shift / n_shift)
        rows.append({"landmark_weight": weight, "valid_top1": on_valid / n_valid,
                     "shifted_top1": on_shift / n_shift})  # fmt: skip
    if config.landmark_weight is not None:
        chosen = config.landmark_weight
    else:
        # A weight replaces the even mean only when its worst case is clearly better.
        margin = NOISE_IMAGES / min(n_valid, n_shift)
        chosen = max(WEIGHTS, key=lambda w: worst[w])
        if worst[chosen] - worst[EVEN] <= margin:
            chosen = EVEN
    rule = base.model_copy(update={"landmark_weight": chosen})
    by_weight = {row["landmark_weight"]: row for row in rows}
    metrics = {
        "fusion_landmark_weight": chosen,
        "fusion_pixel_temperature": base.pixel_temperature,
        "fusion_landmark_temperature": base.landmark_temperature,
        "box_valid_top1_pixel": by_weight[0.0]["valid_top1"],
        "box_valid_top1_landmark": by_weight[1.0]["valid_top1"],
        "shifted_valid_top1_pixel": by_weight[0.0]["shifted_top1"],
        "shifted_valid_top1_landmark": by_weight[1.0]["shifted_top1"],
    }
    metrics["box_valid_top1_fused"] = correct(valid, rule) / n_valid
    metrics["shifted_valid_top1_fused"] = correct(shifted, rule) / n_shift
    return Choice(rule, rows, metrics)


def part_scores(folder: Path, data_yaml: Path, split: str) -> dict[str, float]:
    """Top-1 of each reading of a fused model on a split's labelled boxes: what each part does.

    Args:
        folder: A model folder (or a downloaded MLflow model).
        data_yaml: The dataset.
        split: Its split to read.

    Returns:
        ``{"pixel", "landmark", "fused"}`` shares of boxes read right (a box with no hand
        found counts as wrong for all three, as the recognizer does not read it); empty for a
        model without landmarks.
    """
    from tasks.inference.fusion import load_rule
    from tasks.inference.recognizer import Recognizer
    from tasks.training.landmark_classifier import extract

    places = (folder, folder / "artifacts") if folder.is_dir() else (folder.parent,)
    metas = [p / "metadata.json" for p in places if (p / "metadata.json").is_file()]
    if not metas or load_rule(json.loads(metas[0].read_text())) is None:
        return {}  # no landmarks: nothing to load
    fused = Recognizer.load(str(folder)).fused
    if fused is None:
        return {}
    rule = fused.rule
    config = LandmarkConfig(crop_pad=rule.crop_pad, presence=rule.presence)
    boxes = extract(data_yaml, split, fused.reader, config)
    readings = read_split(boxes, fused.pixels, fused.landmarks, fused.reader, config)
    total = max(len(readings.labels), 1)
    weights = {"pixel": 0.0, "landmark": 1.0, "fused": rule.landmark_weight}
    return {
        part: correct(readings, rule.model_copy(update={"landmark_weight": weight})) / total
        for part, weight in weights.items()
    }
