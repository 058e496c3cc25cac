"""MediaPipe's palm detector: hands the YOLO detector missed, found from the frame itself.

The second network of ``hand_landmarker.task`` (``hand_detector.tflite``, 192×192 input, an
SSD over 2016 fixed-size anchors) finds palms, not whole hands: a palm is a rigid, nearly
square shape, easier to find at any pose than a hand with its fingers spread. Each palm comes
with seven keypoints; the wrist and the middle finger's knuckle give the direction of the
fingers, so the region the landmark network needs (the whole hand) is the palm's box moved
half a palm towards the fingers and grown 2.6 times, as MediaPipe's own hand graph does.

The recognizer runs it only when no detector box holds a hand, so a frame the detector reads
well costs nothing more. Runtime: LiteRT, like the landmark network (no socket opened).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tasks.inference.landmarks import PALM_NETWORK, read_task
from tasks.inference.yolo_decode import letterbox, nms, unletterbox

INPUT = 192  # the palm detector's square input, in pixels
SCORE = 0.5  # least palm score kept (MediaPipe's hand graph uses the same)
OVERLAP = 0.3  # palms overlapping more than this are one palm
MAX_PALMS = 2  # two hands at most, as the app's hands are a learner's
WRIST, MIDDLE_KNUCKLE = 0, 2  # the palm keypoints that give the fingers' direction
GROWTH = 2.6  # palm box side -> whole-hand region side
SHIFT = 0.5  # of the palm's side, towards the fingers


class Palm(NamedTuple):
    """One palm: its score, box and the region around its whole hand, in frame pixels."""

    score: float
    box: tuple[float, float, float, float]
    keypoints: np.ndarray  # (7, 2)

    def hand_region(self) -> tuple[float, float, float, float]:
        """The square where the whole hand should be, for the landmark network (no margin)."""
        x0, y0, x1, y1 = self.box
        side = max(x1 - x0, y1 - y0)
        direction = self.keypoints[MIDDLE_KNUCKLE] - self.keypoints[WRIST]
        norm = float(np.linalg.norm(direction))
        unit = direction / norm if norm > 1e-6 else np.array([0.0, -1.0])  # fingers up
        cx = (x0 + x1) / 2 + SHIFT * side * float(unit[0])
        cy = (y0 + y1) / 2 + SHIFT * side * float(unit[1])
        half = GROWTH * side / 2
        return cx - half, cy - half, cx + half, cy + half


def anchors() -> np.ndarray:
    """The detector's 2016 anchor centres, (x, y) in [0, 1] of the input.

    Four layers with strides 8, 16, 16, 16 and two fixed-size anchors per layer and cell;
    layers of one stride share a grid, so a 24×24 grid holds 2 anchors per cell and a 12×12
    grid 6, in row-major cell order.
    """
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        cells = INPUT // stride
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


class PalmDetector:
    """Finds palms in a BGR frame.

    Thread safety: one LiteRT interpreter, so one call runs at a time (a lock).
    """

    def __init__(self, task: Path, sha256: str | None = None, threads: int = 1) -> None:
        """Open the palm network of ``task`` (see :func:`tasks.inference.landmarks.read_task`)."""
        from ai_edge_litert.interpreter import Interpreter

        model = read_task(task, sha256, PALM_NETWORK)
        self._interpreter = Interpreter(model_content=model, num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
        self._regressors, self._scores = outputs["Identity"], outputs["Identity_1"]
        self._anchors = anchors()
        self._canvas = np.empty((INPUT, INPUT, 3), np.uint8)
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray, score: float = SCORE, most: int = MAX_PALMS) -> list[Palm]:
        """The palms in ``image`` (BGR), best first, at most ``most``."""
        with self._lock:
            canvas, placement = letterbox(image, (INPUT, INPUT), self._canvas)
            tensor = (canvas[..., ::-1].astype(np.float32) * np.float32(1 / 255))[None]
            self._interpreter.set_tensor(self._input, np.ascontiguousarray(tensor))
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._regressors)[0].copy()
            logits = self._interpreter.get_tensor(self._scores)[0, :, 0].copy()
        scores = 1 / (1 + np.exp(-np.clip(logits.astype(np.float64), -100, 100)))
        keep = np.flatnonzero(scores >= score)
        if keep.size == 0:
            return []
        raw, scores, centres = raw[keep], scores[keep], self._anchors[keep] * INPUT
        middle = raw[:, :2] + centres
        half = raw[:, 2:4] / 2
        boxes = np.concatenate([middle - half, middle + half], axis=1)
        points = raw[:, 4:].reshape(-1, 7, 2) + centres[:, None, :]
        kept = nms(boxes, scores, OVERLAP, most)
        frame_boxes = unletterbox(boxes[kept], placement)
        (gain_x, gain_y), (left, top) = placement.gain, placement.pad
        frame_points = (points[kept] - np.array([left, top])) / np.array([gain_x, gain_y])
        return [
            Palm(
                float(scores[i]),
                (float(x0), float(y0), float(x1), float(y1)),
                pts.astype(np.float32),
            )
            for i, (x0, y0, x1, y1), pts in zip(kept, frame_boxes, frame_points, strict=True)
        ]
