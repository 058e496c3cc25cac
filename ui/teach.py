"""Teach mode: capture bursts of a learner's own signs (``ui.personalize_job`` trains on them).

Pure logic, no Streamlit. The frame callback feeds :meth:`BurstCollector.offer` (through
:class:`TeachTap`, which stands in for the recognizer) and the page reads
:meth:`BurstCollector.view`; one lock guards both. A burst keeps at most one frame per equal
slice of its duration, so its frames spread over the whole hold instead of bunching at 30 fps.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from tasks.core.records import LETTERS, Box, Detection
from tasks.inference.draw import draw_box
from tasks.inference.landmarks import frame_box, hand_box

CaptureState = Literal["idle", "waiting", "capturing", "done"]


@dataclass(frozen=True, slots=True)
class Shot:
    """One kept frame of a burst: the BGR image, its one hand's box, seconds into the burst."""

    image: np.ndarray
    box: Box
    at: float


@dataclass(frozen=True, slots=True)
class BurstView:
    """A consistent snapshot of the collector for the page."""

    state: CaptureState
    letter: str | None
    kept: int
    frames: int
    progress: float


def one_hand(detections: Iterable[Detection], frame: tuple[int, ...] | None = None) -> Box | None:
    """The box of the only hand in a frame, or None for no hand or several.

    Detections sharing a box are one hand read as several letters (a two-stage model asked
    for more than one letter per hand), so hands are counted by distinct boxes. A hand read
    with its landmarks (a fused model) gets the box of its points, shaped as the dataset's
    labels are, so the label a capture becomes follows the hand the landmark network saw,
    not wherever the detector's box fell.

    Args:
        detections: One frame's detections.
        frame: The frame's shape (height, width, ...), to keep a box of points inside it.
    """
    hands = {(d.box.x1, d.box.y1, d.box.x2, d.box.y2): d for d in detections}
    if len(hands) != 1:
        return None
    hand = next(iter(hands.values()))
    return frame_box(hand_box(hand.landmarks), frame) if hand.landmarks else hand.box


def slot_of(elapsed: float, seconds: float, frames: int) -> int | None:
    """Which of ``frames`` equal slices of ``seconds`` the time ``elapsed`` falls in."""
    if elapsed < 0 or elapsed >= seconds:
        return None
    return min(int(elapsed / seconds * frames), frames - 1)


def letter_order(
    letters: Sequence[str] = LETTERS, misses: Mapping[str, int] | None = None
) -> tuple[str, ...]:
    """The letters to teach: the most missed first (most misses first), else A-Z.

    Args:
        letters: The letters the model knows.
        misses: Misses per letter from the practice page; letters never missed are left out
            when any was missed, since those are the ones worth teaching.
    """
    missed = [x for x in letters if misses and misses.get(x, 0) > 0]
    if not missed:
        return tuple(letters)
    return tuple(sorted(missed, key=lambda x: (-(misses or {})[x], x)))


def shot_preview(shot: Shot) -> np.ndarray:
    """An RGB copy of the shot with its hand box drawn, for the grid."""
    image = shot.image.copy()
    draw_box(image, (shot.box.x1, shot.box.y1, shot.box.x2, shot.box.y2), f"{shot.at:.1f} s")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def burst_counts(letters: Iterable[str]) -> dict[str, int]:
    """Saved bursts per letter, from each saved burst's letter."""
    return dict(Counter(letters))


class BurstCollector:
    """Collects one burst at a time from the video thread.

    :meth:`arm` waits for the first frame with exactly one hand; that frame starts the clock.
    Each of ``frames`` equal slices of ``seconds`` keeps its first one-hand frame; frames with
    no hand or several are skipped. The burst is done when the time is up or every slice holds
    a frame; the page may then delete shots before saving them.
    """

    def __init__(self, frames: int = 8, seconds: float = 2.0) -> None:
        self._lock = threading.Lock()
        self.frames, self.seconds = frames, seconds
        self._state: CaptureState = "idle"
        self._letter: str | None = None
        self._start = 0.0
        self._elapsed = 0.0
        self._slots: dict[int, Shot] = {}
        self._shots: list[Shot] = []

    def configure(self, frames: int, seconds: float) -> None:
        """Change the burst size and duration (takes effect at the next :meth:`arm`)."""
        if frames < 1 or seconds <= 0:
            raise ValueError(f"a burst needs frames >= 1 and seconds > 0, got {frames}, {seconds}")
        with self._lock:
            self.frames, self.seconds = frames, seconds

    def arm(self, letter: str) -> None:
        """Start a new burst of ``letter``: the next one-hand frame starts the clock."""
        with self._lock:
            self._state, self._letter, self._elapsed = "waiting", letter, 0.0
            self._slots, self._shots = {}, []

    def clear(self) -> None:
        """Drop the burst (captured or not) and stop capturing."""
        with self._lock:
            self._state, self._letter, self._elapsed = "idle", None, 0.0
            self._slots, self._shots = {}, []

    def offer(self, image: np.ndarray, detections: Iterable[Detection], now: float) -> bool:
        """Feed one recognized frame (from the video thread).

        Returns:
            Whether the frame was kept.
        """
        box = one_hand(detections, image.shape)
        with self._lock:
            if self._state == "waiting" and box is not None:
                self._state, self._start = "capturing", now
            if self._state != "capturing":
                return False
            self._elapsed = now - self._start
            slot = slot_of(self._elapsed, self.seconds, self.frames)
            kept = box is not None and slot is not None and slot not in self._slots
            if kept:
                # The callback hands a fresh array per frame, but a copy costs little for N
                # frames and keeps the burst safe from any caller that reuses its buffer.
                self._slots[slot] = Shot(image.copy(), box, self._elapsed)
            if slot is None or len(self._slots) == self.frames:
                self._state = "done"
                self._shots = [self._slots[i] for i in sorted(self._slots)]
            return kept

    def view(self) -> BurstView:
        """A snapshot for the page."""
        with self._lock:
            progress = {"idle": 0.0, "waiting": 0.0, "done": 1.0}.get(
                self._state, min(self._elapsed / self.seconds, 1.0)
            )
            kept = len(self._shots) if self._state == "done" else len(self._slots)
            return BurstView(self._state, self._letter, kept, self.frames, progress)

    def shots(self) -> tuple[Shot, ...]:
        """The finished burst's shots, in time order (empty until it is done)."""
        with self._lock:
            return tuple(self._shots)

    def remove(self, index: int) -> None:
        """Delete one shot of the finished burst before it is saved."""
        with self._lock:
            if 0 <= index < len(self._shots):
                del self._shots[index]


class TeachTap:
    """Stands in for the recognizer in a frame processor and hands each result to a collector.

    The frame processor only passes the top letter on; the Teach page also needs the frame and
    every box, which only the recognizer call sees.
    """

    def __init__(
        self,
        recognizer: Any,
        collector: BurstCollector,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.inner, self.collector, self.clock = recognizer, collector, clock

    def recognize(self, image: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        """Recognize as the wrapped recognizer does, then offer the frame to the collector."""
        result = self.inner.recognize(image, *args, **kwargs)
        self.collector.offer(image, result.detections, self.clock())
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
