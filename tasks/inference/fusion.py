"""Pixels and landmarks, one reading: the fused letter of each confirmed hand.

A two-stage model reads each hand box twice: the crop classifier looks at its pixels, the
landmark classifier at the 21 points MediaPipe's landmark network finds in it. Pixels see
what landmarks miss (the thumb against the fist in A/S/T/M/N); landmarks do not see skin,
light or room, so they carry to people the dataset never showed. Each side's probabilities
are calibrated (a temperature fitted on valid), then averaged with the weight the training
flow chose (``tasks.training.landmark_classifier``). A box whose crop holds no hand by the
landmark network's presence score (a face the detector took for a hand) is not read at all;
where no box holds one, MediaPipe's palm detector looks for hands the detector missed.
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
    frame_box,
)
from tasks.inference.palm import PalmDetector
from tasks.inference.runtime import open_session

LANDMARK_ONNX = "landmarks.onnx"  # the landmark letter classifier of a model folder
CANDIDATES = 3  # detector boxes checked for a hand: the top box alone missed 15% of signers
# Least detector score of a box checked for a hand. The detector learnt close-ups of a few
# people and is unsure of other hands at a desk; a confirmed hand then counts by its hand
# presence (TRIALS 52: at the Live page's threshold, +50 of 312 simulated-signer frames read).
CANDIDATE_SCORE = 0.1


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

    Only the best :data:`CANDIDATES` boxes are read. When none of them holds a hand, the
    palm detector looks at the whole frame (a hand the detector missed: another skin, light
    or size than the dataset's), and each hand it finds is read on the box of its points.
    Thread safety: the crop classifier and the ONNX landmark classifier are re-entrant; the
    landmark reader and the palm detector serialise their own interpreters.
    """

    def __init__(
        self,
        pixels: CropClassifier,
        landmarks: LandmarkClassifier,
        reader: LandmarkReader,
        rule: FusionRule,
        palms: PalmDetector | None = None,
    ) -> None:
        if landmarks.names != pixels.names:
            raise LandmarkError(f"{landmarks.path} reads other letters than {pixels.path}")
        self.pixels, self.landmarks, self.reader, self.rule = pixels, landmarks, reader, rule
        self.palms = palms
        self.names = pixels.names
        self.candidates = CANDIDATES

    @classmethod
    def open(
        cls, folder: Path, pixels: CropClassifier, rule: FusionRule, palms: bool = True
    ) -> FusedReader:
        """The fused reader of a model ``folder`` (its landmark files beside the detector).

        Args:
            folder: The model folder.
            pixels: Its crop classifier.
            rule: The fusion rule its metadata records.
            palms: Look for hands with the palm detector when no detector box holds one.

        Raises:
            LandmarkError: Naming the file, when one is missing or has another sha256.
        """
        task = folder / TASK_FILE
        reader = LandmarkReader(task, rule.task_sha256)
        detector = PalmDetector(task) if palms else None  # the digest was checked just above
        return cls(pixels, LandmarkClassifier(folder / LANDMARK_ONNX), reader, rule, detector)

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
        Its hand presence is the reading's P(hand) where it is surer than the detector.
        """
        box = xyxy(hand)
        found = self.hand(image, box)
        if found.presence < self.rule.presence:
            return None
        return Reading(self.probabilities(image, box, found), _xy(found), found.presence)

    def missed_hands(self, image: np.ndarray) -> list[tuple[Detection, Reading]]:
        """Hands the palm detector finds, each read on the box of its landmarks.

        The landmark network reads the palm's whole-hand region first, then again, as it
        reads a detector box, the label-shaped box around those points; the pixels are read
        on the box of its second reading's points.
        P(hand) is the palm's score or the hand presence, whichever is higher.
        """
        if self.palms is None:
            return []
        hands: list[tuple[Detection, Reading]] = []
        for palm in self.palms.detect(image):
            first = self.reader.read(image, palm.hand_region(), pad=0.0)
            if first.presence < self.rule.presence:
                continue
            found = self.hand(image, first.hand_box())
            if found.presence < self.rule.presence:
                continue
            box = found.hand_box()
            try:
                probs = self.probabilities(image, box, found)
            except ValueError:  # the hand lies all outside the frame
                continue
            score = max(palm.score, found.presence)
            inside = frame_box(box, image.shape)
            hand = Detection(letter="hand", class_id=0, confidence=score, box=inside)
            hands.append((hand, Reading(probs, _xy(found))))
        return hands


def _xy(hand: Hand) -> tuple[tuple[float, float], ...]:
    return tuple((float(x), float(y)) for x, y, _ in hand.points)
