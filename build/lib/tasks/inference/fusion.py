"""Pixels and landmarks, one reading: the fused letter of each confirmed hand.

A two-stage model reads each hand box twice: the crop classifier looks at its pixels, the
landmark classifier at the 21 points MediaPipe's landmark network finds in it. Pixels see
what landmarks miss (the thumb against the fist in A/S/T/M/N); landmarks do not see skin,
light or room, so they carry to people the dataset never showed. Each side's probabilities
are calibrated (a temperature fitted on valid), then averaged with the weight the training
flow chose (``tasks.training.landmark_classifier``). A box whose crop holds no hand by the
landmark network's presence score (a face the detector took for a hand) is not read at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from tasks.core.records import Detection, Record
from tasks.inference.crop_classifier import CropClassifier, HandReader, Reading, xyxy
from tasks.inference.landmarks import (
    CROP_PAD,
    FEATURES,
    PRESENCE,
    TASK_FILE,
    Hand,
    LandmarkError,
    LandmarkReader,
    features,
)
from tasks.inference.runtime import open_session

LANDMARK_ONNX = "landmarks.onnx"  # the landmark letter classifier of a model folder
CANDIDATES = 3  # detector boxes checked for a hand: the top box alone missed 15% of signers


class FusionRule(Record):
    """How a model folder combines its two letter readings (kept in ``metadata.json``)."""

    landmark_weight: float = Field(0.5, ge=0, le=1, description="Share of the landmark side.")
    pixel_temperature: float = Field(1.0, gt=0, description="Calibration of the pixel side.")
    landmark_temperature: float = Field(1.0, gt=0, description="Calibration of the landmarks.")
    presence: float = Field(PRESENCE, ge=0, le=1, description="Least hand presence read.")
    crop_pad: float = Field(CROP_PAD, ge=0, description="Margin of the landmark crop.")
    task_sha256: str | None = Field(None, description="sha256 of hand_landmarker.task.")


def calibrated(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities sharpened or softened by a temperature (softmax of log p / T)."""
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=-1, keepdims=True)


def fuse(pixel: np.ndarray, landmark: np.ndarray | None, rule: FusionRule) -> np.ndarray:
    """The fused letter probabilities; pixels alone where landmarks are missing."""
    pix = calibrated(pixel, rule.pixel_temperature)
    if landmark is None or rule.landmark_weight == 0:
        return pix
    lmk = calibrated(landmark, rule.landmark_temperature)
    return (1 - rule.landmark_weight) * pix + rule.landmark_weight * lmk


class LandmarkClassifier:
    """Letter probabilities from a hand's normalised landmarks (a small ONNX network)."""

    def __init__(self, path: Path) -> None:
        """Open ``path``; its metadata names the letters it reads."""
        if not path.is_file():
            raise LandmarkError(f"landmark classifier {path} is missing")
        self.path = path
        self._session = open_session(path, threads=1)
        self._input = self._session.get_inputs()[0].name
        names = self._session.get_modelmeta().custom_metadata_map.get("names")
        if names is None:
            raise LandmarkError(f"{path}: the landmark classifier does not name its letters")
        self.names = tuple(json.loads(names))

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """(N, 26) probabilities for (N, 63) feature vectors (or one vector)."""
        batch = np.asarray(vectors, np.float32).reshape(-1, FEATURES)
        logits = self._session.run(None, {self._input: batch})[0]
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)


def load_rule(meta: dict[str, Any]) -> FusionRule | None:
    """The fusion rule a model's metadata records, or None for a pixels-only model."""
    fusion = meta.get("fusion")
    return FusionRule.model_validate(fusion) if fusion else None


class FusedReader(HandReader):
    """Reads the letter of each detector box that the landmark network confirms as a hand.

    Only the best :data:`CANDIDATES` boxes are read. Thread safety: the crop classifier and
    the ONNX landmark classifier are re-entrant; the landmark reader serialises its own
    interpreter.
    """

    def __init__(
        self,
        pixels: CropClassifier,
        landmarks: LandmarkClassifier,
        reader: LandmarkReader,
        rule: FusionRule,
    ) -> None:
        if landmarks.names != pixels.names:
            raise LandmarkError(f"{landmarks.path} reads other letters than {pixels.path}")
        self.pixels, self.landmarks, self.reader, self.rule = pixels, landmarks, reader, rule
        self.names = pixels.names
        self.candidates = CANDIDATES

    @classmethod
    def open(cls, folder: Path, pixels: CropClassifier, rule: FusionRule) -> FusedReader:
        """The fused reader of a model ``folder`` (its landmark files beside the detector).

        Raises:
            LandmarkError: Naming the file, when one is missing or has another sha256.
        """
        reader = LandmarkReader(folder / TASK_FILE, rule.task_sha256)
        return cls(pixels, LandmarkClassifier(folder / LANDMARK_ONNX), reader, rule)

    def hand(self, image: np.ndarray, box: tuple[float, float, float, float]) -> Hand:
        """The landmark network's reading of ``box`` (presence, points, handedness)."""
        return self.reader.read(image, box, self.rule.crop_pad)

    def probabilities(
        self, image: np.ndarray, box: tuple[float, float, float, float], hand: Hand
    ) -> np.ndarray:
        """Fused letter probabilities of a confirmed hand."""
        landmark = self.landmarks.probabilities(features(hand.points, hand.right))[0]
        return fuse(self.pixels.probabilities(image, box), landmark, self.rule)

    def read_box(self, image: np.ndarray, hand: Detection) -> Reading | None:
        """Fused letter probabilities and the landmarks (frame pixels) of a confirmed hand.

        None when the landmark network says the box holds no hand: a face, an arm, a shelf.
        """
        box = xyxy(hand)
        found = self.hand(image, box)
        if found.presence < self.rule.presence:
            return None
        points = tuple((float(x), float(y)) for x, y, _ in found.points)
        return self.probabilities(image, box, found), points
