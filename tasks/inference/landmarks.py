"""Hand landmarks, one home: MediaPipe's landmark network on a hand box, and its features.

MediaPipe Hands is two networks: a palm detector that finds hands, and a landmark network
that reads 21 points, a hand-presence score and handedness from a crop around one hand.
Fingerspell finds hands with its YOLO detector first, so the landmark network runs on the
detector's box: 7-8 ms a crop on one core, against ~34 ms for the Tasks API's palm detector
plus landmarks, and with no native code that looks up Google's metrics host (the
``mediapipe`` wheel's Tasks API does; LiteRT opens no socket). Its presence score tells a
hand from a face the detector mistook for one. The palm detector
(:mod:`tasks.inference.palm`) runs only where no detector box held a hand.

The model comes from MediaPipe's ``hand_landmarker.task`` bundle (a zip holding
``hand_landmarks_detector.tflite``), read in place; the runtime is Google's LiteRT.
"""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from tasks.core.files import sha256_of
from tasks.core.records import Box

TASK_FILE = "hand_landmarker.task"
TASK_URL = (
    "https://storage.googleapis.com/mediapipe-models/hand_landmarker/hand_landmarker/"
    "float16/latest/hand_landmarker.task"
)
LANDMARK_NETWORK = "hand_landmarks_detector.tflite"
PALM_NETWORK = "hand_detector.tflite"
INPUT = 224  # the landmark network's square input, in pixels
CROP_PAD = 0.2  # margin around a detector box (the crop classifier's default too)
PRESENCE = 0.05  # below: no hand (TRIALS 50: faces read <= 0.0012, other objects <= 0.031)
# Below: read the crop turned as well (TRIALS 54: 22 of 1512 train hands, all G, H, J, P or Q,
# read under 0.05 upright and over 0.5 turned; faces stay under 0.007 every way).
TURN_BELOW = 0.5
# A turned reading replaces the upright one only from this presence on: the best of four
# readings of something that is no hand passes the least presence five times as often as one
# reading does (TRIALS 56: 48 against 9 of 2789 picture tiles; 10 with this floor).
SURE = 0.5
# Names how a crop is read, for caches of readings.
READING = f"turn{TURN_BELOW:g}-sure{SURE:g}"
# A dataset label box, against the tight box of the 21 points read in it (478 train photos,
# medians): as wide as 1.28 and as tall as 1.19 of the points' longer side, on the same
# centre (fingertip and palm flesh reach past the joints the points mark).
LABEL_WIDTH, LABEL_HEIGHT = 1.28, 1.19
POINTS = 21
FEATURES = POINTS * 3
WRIST, MIDDLE_MCP = 0, 9
# The bones between landmarks, for drawing (MediaPipe's hand topology).
CONNECTIONS: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10),
    (10, 11), (11, 12), (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17),
    (17, 18), (18, 19), (19, 20),
)  # fmt: skip


class LandmarkError(RuntimeError):
    """A hand landmark model is missing, corrupt or not the one a model folder recorded."""


class Hand(NamedTuple):
    """What the landmark network read in one crop.

    ``points`` are (x, y, z) in frame pixels (z in the same scale, relative to the wrist's
    depth); ``presence`` is the probability that the crop holds a hand; ``right`` the
    probability that it is a right hand as the camera sees it.
    """

    points: np.ndarray  # (21, 3) float32
    presence: float
    right: float

    def box(self) -> tuple[float, float, float, float]:
        """The tight box around the 21 points, in frame pixels."""
        x, y = self.points[:, 0], self.points[:, 1]
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())

    def hand_box(self) -> tuple[float, float, float, float]:
        """The hand's box as the dataset labels one (see :func:`hand_box`)."""
        return hand_box(self.points)


def hand_box(
    points: np.ndarray | tuple[tuple[float, float], ...],
) -> tuple[float, float, float, float]:
    """The box a dataset label would draw around a hand with these landmarks (frame pixels).

    The crop classifier was trained on label boxes, and the Teach page's captures become
    labels, so a hand found by its points gets a box of the labels' proportions, not the
    tighter box of the joints.
    """
    xy = np.asarray(points, np.float32)[:, :2]
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    side = max(float(x1 - x0), float(y1 - y0), 1.0)
    cx, cy = float(x0 + x1) / 2, float(y0 + y1) / 2
    half_w, half_h = LABEL_WIDTH * side / 2, LABEL_HEIGHT * side / 2
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def frame_box(corners: tuple[float, float, float, float], shape: tuple[int, ...] | None) -> Box:
    """``corners`` as a :class:`Box` kept inside a frame of ``shape`` (height, width, ...).

    A box of points may reach past the frame's edge (a hand at the border); the box a
    detection or a label carries may not. With no shape only the top and left edges hold.
    """
    x1, y1, x2, y2 = corners
    height, width = shape[:2] if shape else (float("inf"), float("inf"))
    return Box(x1=max(x1, 0.0), y1=max(y1, 0.0), x2=min(x2, width), y2=min(y2, height))


def read_task(path: Path, sha256: str | None = None, network: str = LANDMARK_NETWORK) -> bytes:
    """One network inside a ``hand_landmarker.task`` bundle (the landmark one by default).

    Args:
        path: The bundle.
        sha256: The digest the model folder recorded, checked when given.
        network: The member: :data:`LANDMARK_NETWORK` or :data:`PALM_NETWORK`.

    Raises:
        LandmarkError: Naming the file, when it is missing, has another digest, or is not
            a bundle holding that network.
    """
    if not path.is_file():
        raise LandmarkError(f"hand landmark model {path} is missing")
    if sha256 is not None and (found := sha256_of(path)) != sha256:
        raise LandmarkError(
            f"hand landmark model {path} has sha256 {found}, not the {sha256} its model recorded"
        )
    try:
        with zipfile.ZipFile(path) as bundle:
            return bundle.read(network)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise LandmarkError(f"{path} is not a MediaPipe hand landmarker bundle: {exc}") from None


def square_patch(
    image: np.ndarray, box: tuple[float, float, float, float], pad: float = CROP_PAD
) -> tuple[np.ndarray, float, float, float]:
    """The square around ``box`` (padded by ``pad`` of its longer side) at :data:`INPUT` px.

    Parts outside the frame are filled with black rather than clipped, so the hand keeps its
    proportions (the network was trained on undistorted squares).

    Returns:
        The RGB patch, and its frame origin (x, y) and side in frame pixels.
    """
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 2.0) * (1 + pad)
    left, top = (x0 + x1 - side) / 2, (y0 + y1 - side) / 2
    scale = INPUT / side
    # One affine warp crops, pads and resizes at once.
    matrix = np.array([[scale, 0, -left * scale], [0, scale, -top * scale]], np.float32)
    patch = cv2.warpAffine(image, matrix, (INPUT, INPUT), flags=cv2.INTER_LINEAR)
    return cv2.cvtColor(patch, cv2.COLOR_BGR2RGB), left, top, side


class LandmarkReader:
    """Reads a hand's 21 landmarks from the crop around a box.

    Thread safety: a LiteRT interpreter holds its tensors, so one call runs at a time (a
    lock); a reading takes ~8 ms, well inside a frame.
    """

    def __init__(self, task: Path, sha256: str | None = None, threads: int = 1) -> None:
        """Open the landmark network of ``task`` (see :func:`read_task`)."""
        from ai_edge_litert.interpreter import Interpreter

        self.path = task
        self._interpreter = Interpreter(model_content=read_task(task, sha256), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
        # Named as converted from MediaPipe's graph: screen landmarks, presence, handedness.
        self._points, self._presence, self._right = (
            outputs["Identity"], outputs["Identity_1"], outputs["Identity_2"],
        )  # fmt: skip
        self._lock = threading.Lock()

    def read(
        self,
        image: np.ndarray,
        box: tuple[float, float, float, float],
        pad: float = CROP_PAD,
        turn_below: float = TURN_BELOW,
    ) -> Hand:
        """The landmarks of the hand in ``box`` of a BGR ``image``, in frame pixels.

        The network was trained on crops turned so that the fingers point up. A hand read
        upright with a presence under ``turn_below`` (H and G point sideways, P and Q down)
        is read again with the crop turned a quarter each way and upside down; the most
        hand-like turned reading replaces the upright one if it is also sure (presence over
        :data:`SURE`), its points turned back into the frame.
        """
        patch, left, top, side = square_patch(image, box, pad)
        raw, presence, right = self.run_patch(patch)
        if presence < turn_below:
            for turns in (1, 3, 2):
                turned, turned_presence, turned_right = self.run_patch(np.rot90(patch, turns))
                if turned_presence > max(presence, SURE):
                    raw, presence, right = _turn_back(turned, turns), turned_presence, turned_right
        points = raw * np.float32(side / INPUT)
        points[:, 0] += left
        points[:, 1] += top
        return Hand(points=points.astype(np.float32), presence=presence, right=right)

    def run_patch(self, patch: np.ndarray) -> tuple[np.ndarray, float, float]:
        """One reading: points (patch pixels), hand presence and right-handedness.

        The patch is RGB and :data:`INPUT` px square, as :func:`square_patch` cuts it.
        """
        tensor = np.ascontiguousarray(patch, dtype=np.float32)[None] * np.float32(1 / 255)
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor)
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._points).reshape(POINTS, 3).copy()
            presence = float(self._interpreter.get_tensor(self._presence).ravel()[0])
            right = float(self._interpreter.get_tensor(self._right).ravel()[0])
        return raw, presence, right


def _turn_back(points: np.ndarray, turns: int) -> np.ndarray:
    """Points read on ``np.rot90(patch, turns)``, in the unturned patch's pixels."""
    x, y = points[:, 0].copy(), points[:, 1].copy()
    out = points.copy()
    if turns == 1:  # a quarter anticlockwise
        out[:, 0], out[:, 1] = INPUT - y, x
    elif turns == 3:  # a quarter clockwise
        out[:, 0], out[:, 1] = y, INPUT - x
    else:  # upside down
        out[:, 0], out[:, 1] = INPUT - x, INPUT - y
    return out


def features(points: np.ndarray, right: float) -> np.ndarray:
    """The normalised feature vector of one hand: what the landmark classifier reads.

    The wrist goes to the origin, the hand is scaled so that its farthest point is at
    distance 1 (size and distance to the camera drop out), and a left hand is mirrored
    into a right one (a left hand fingerspells the mirror image).

    Args:
        points: (21, 3) landmarks in any pixel frame.
        right: The probability that it is a right hand.

    Returns:
        A float32 vector of :data:`FEATURES` values.
    """
    centred = np.asarray(points, np.float32) - np.asarray(points, np.float32)[WRIST]
    if right < 0.5:
        centred[:, 0] = -centred[:, 0]
    reach = float(np.linalg.norm(centred[:, :2], axis=1).max())
    return (centred / max(reach, 1e-6)).reshape(-1).astype(np.float32)
