"""Stage two of a two-stage model: read the letter from the crop around a detected hand.

A two-stage model is a one-class hand detector (``model.onnx``) plus an ultralytics ``-cls``
letter classifier (``classifier.onnx``) in the same folder. The recognizer runs the detector,
then this classifier on :func:`square_crop` of each hand, so the letters,
boxes and confidences it returns look exactly like a 26-class detector's.
"""

from __future__ import annotations

import ast
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from tasks.core.records import Detection
from tasks.inference.runtime import open_session

CLASSIFIER_ONNX = "classifier.onnx"  # the (first) letter classifier of a two-stage folder
LETTERS_PER_HAND = 5  # per-class results (as a detector's NMS keeps) feed mAP; the app asks for 1
# A 128-px classifier runs faster on one thread than on two (1.3 against 1.9 ms on the 2-core
# dev box, idle): handing its small convolutions to a second thread costs more than it saves.
THREADS = 1
DEFAULT_PAD = 0.2  # margin around a hand box, as a fraction of its longer side


def square_crop(
    image: np.ndarray, box_xyxy: tuple[float, float, float, float], pad: float, size: int
) -> np.ndarray:
    """Cut a square around a box, padded by ``pad`` of its longer side, resized to ``size``.

    Args:
        image: BGR image (H, W, 3).
        box_xyxy: Box corners in pixels.
        pad: Extra margin as a fraction of the box's longer side (context around the hand).
        size: Output side in pixels.

    Returns:
        A ``size``×``size`` BGR crop; parts outside the image are clipped, not padded, so the
        classifier never sees artificial borders.
    """
    x0, y0, x1, y1 = box_xyxy
    height, width = image.shape[:2]
    side = max(x1 - x0, y1 - y0) * (1 + pad)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    right, bottom = int(min(width, cx + side / 2)), int(min(height, cy + side / 2))
    if right - left < 2 or bottom - top < 2:
        raise ValueError(f"box {box_xyxy} leaves no pixels inside a {width}×{height} image")
    return cv2.resize(image[top:bottom, left:right], (size, size), interpolation=cv2.INTER_AREA)


Points = tuple[tuple[float, float], ...]


class Reading(NamedTuple):
    """What a reader made of one hand box."""

    probs: np.ndarray  # letter probabilities
    points: Points | None = None  # the hand's landmarks (frame pixels), if read
    presence: float | None = None  # P(hand) by the reader, if it judges that too


def xyxy(det: Detection) -> tuple[float, float, float, float]:
    """A detection's box as ``(x1, y1, x2, y2)``."""
    return (det.box.x1, det.box.y1, det.box.x2, det.box.y2)


class HandReader(ABC):
    """Reads the letters of the hands a detector found; a subclass reads one box.

    The pixel classifier reads every box; the fused reader reads the best few and only those
    its landmark network confirms as a hand (:class:`tasks.inference.fusion.FusedReader`).
    """

    names: tuple[str, ...]
    candidates: int | None = None  # how many of the best boxes are read (None: all)

    @abstractmethod
    def read_box(self, image: np.ndarray, hand: Detection) -> Reading | None:
        """Letter probabilities (and landmarks) of one box; None when it holds no hand."""

    def letters(
        self,
        image: np.ndarray,
        hands: tuple[Detection, ...],
        conf: float,
        max_det: int,
        per_hand: int = LETTERS_PER_HAND,
    ) -> tuple[Detection, ...]:
        """Letter detections for each hand: confidence = P(hand) × P(letter | hand).

        The same product for both kinds of reader, so a threshold means the same for both.

        Args:
            image: The BGR frame the hands were found in.
            hands: One-class detections, best first.
            conf: Keep letters whose combined confidence is above this.
            max_det: Most detections returned.
            per_hand: Letters kept per hand (1 when one letter per hand is wanted).

        Returns:
            Detections in frame pixels, best first (with their hand's landmarks, if read).
        """
        # Boxes the detector is unsure of (under ``conf``: a reader that judges hands asks for
        # them) are read only where no sure box held a hand, and the frame only where no box
        # did: a frame the detector reads well costs no more than before.
        boxes = hands[: self.candidates]
        sure = [hand for hand in boxes if hand.confidence >= conf]
        unsure = [hand for hand in boxes if hand.confidence < conf]
        readings = self._read_boxes(image, sure) or self._read_boxes(image, unsure)
        if not readings:
            readings = self.missed_hands(image)
        found: list[Detection] = []
        for hand, reading in readings:
            found += hand_letters(hand, reading.probs, self.names, conf, per_hand, reading.points)
        return best_first(found, max_det)

    def _read_boxes(
        self, image: np.ndarray, hands: Sequence[Detection]
    ) -> list[tuple[Detection, Reading]]:
        readings = []
        for hand in hands:
            try:
                reading = self.read_box(image, hand)
            except ValueError:  # a sliver of a box at the border: nothing to read
                continue
            if reading is None:
                continue
            if reading.presence is not None and reading.presence > hand.confidence:
                # The reader is surer this is a hand than the detector, which learnt close-ups
                # of a few people, is of another person's hand at a desk.
                hand = hand.model_copy(update={"confidence": reading.presence})
            readings.append((hand, reading))
        return readings

    def missed_hands(self, image: np.ndarray) -> list[tuple[Detection, Reading]]:
        """Hands found another way when no detector box held one (none by default).

        Returns:
            Each hand as a one-class detection (its box, P(hand)) with its reading.
        """
        return []


class CropClassifier(HandReader):
    """Letter probabilities for the square crop around a hand box.

    Thread safety: one onnxruntime session per member (``run`` is re-entrant) and no shared
    buffers.
    """

    def __init__(
        self,
        path: Path | Sequence[Path],
        pad: float = DEFAULT_PAD,
        threads: int | None = None,
        mirror: bool = False,
    ) -> None:
        """Open ``path`` (an ultralytics ``-cls`` ONNX export; its output is softmaxed).

        Args:
            path: ``classifier.onnx``; or several exports over
                the same letters, whose probabilities are averaged (an ensemble of classifiers
                trained apart: steadier confidences, so boxes rank better, at one run per
                member; benchmarks/TRIALS.md, trial 21). Each member reads the crop at its own
                input size.
            pad: Crop margin; must be the one the crops it was trained on were cut with.
            threads: Intra-op threads; default :data:`THREADS`.
            mirror: Average the probabilities of the crop and of its mirror image. A left
                hand fingerspells the mirror image of a right hand, and the classifier was
                trained on randomly mirrored crops, so both views are valid readings; the
                average is steadier and reads a hand and its mirror image alike. It costs a
                second classifier run per hand.

        Raises:
            ValueError: When an export does not name its classes, or members disagree on them.
        """
        paths = (path,) if isinstance(path, Path) else tuple(path)
        if not paths:
            raise ValueError("a crop classifier needs at least one export")
        self.paths = paths
        self.path = paths[0]
        self.pad = pad
        self.mirror = mirror
        self._members = [_Member(member, threads or THREADS) for member in paths]
        first = self._members[0]
        for member in self._members[1:]:
            if member.names != first.names:
                raise ValueError(f"{member.path} reads other letters than {first.path}")
        self.names = first.names
        self.size = first.size
        self.quantized = all(member.quantized for member in self._members)

    def probabilities(
        self, image: np.ndarray, box: tuple[float, float, float, float]
    ) -> np.ndarray:
        """Class probabilities (sum 1) for the hand in ``box`` of a BGR ``image``."""
        crops: dict[int, np.ndarray] = {}
        total = np.zeros(len(self.names), np.float32)
        for member in self._members:
            crop = crops.get(member.size)
            if crop is None:
                crop = crops[member.size] = square_crop(image, box, self.pad, member.size)
            total += member.run(crop)
            if self.mirror:
                total += member.run(cv2.flip(crop, 1))
        return total / (len(self._members) * (2 if self.mirror else 1))

    def read_box(self, image: np.ndarray, hand: Detection) -> Reading | None:
        """The letter probabilities of the crop around ``hand``'s box."""
        return Reading(self.probabilities(image, xyxy(hand)))


def hand_letters(
    hand: Detection,
    probs: np.ndarray,
    names: Sequence[str],
    conf: float,
    per_hand: int,
    landmarks: tuple[tuple[float, float], ...] | None = None,
) -> list[Detection]:
    """A hand's most likely letters: confidence = P(hand) × P(letter), above ``conf``."""
    letters = []
    for cid in np.argsort(-probs)[:per_hand].tolist():
        score = hand.confidence * float(probs[cid])
        if score > conf:
            letters.append(
                Detection(
                    letter=names[cid],
                    class_id=cid,
                    confidence=score,
                    box=hand.box,
                    landmarks=landmarks,
                )
            )
    return letters


def best_first(found: list[Detection], max_det: int) -> tuple[Detection, ...]:
    """The ``max_det`` most confident detections, best first."""
    return tuple(sorted(found, key=lambda d: -d.confidence)[:max_det])


class _Member:
    """One classifier export: its session, input size and letter names."""

    def __init__(self, path: Path, threads: int) -> None:
        self.path = path
        self._session = open_session(path, threads)
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        self.size = int(model_input.shape[2]) if isinstance(model_input.shape[2], int) else 128
        embedded = self._session.get_modelmeta().custom_metadata_map
        if "names" not in embedded:
            raise ValueError(f"{path}: the classifier export does not name its classes")
        names = ast.literal_eval(embedded["names"])
        self.names = tuple(str(names[k]) for k in sorted(names, key=int))
        self.quantized = embedded.get("quantization") == "int8"

    def run(self, crop: np.ndarray) -> np.ndarray:
        # ultralytics classifies RGB in [0, 1] with no mean/std (its DEFAULT_MEAN is 0, STD 1).
        tensor = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None]
        tensor = np.ascontiguousarray(tensor, dtype=np.float32) * np.float32(1 / 255)
        return self._session.run(None, {self._input_name: tensor})[0][0]
