"""The webcam frame callback: recognize, draw, record, hand the top letter on.

streamlit-webrtc calls :meth:`FrameProcessor.__call__` on its own worker thread for every
received frame. Nothing here touches Streamlit; results reach the page through the thread-safe
:class:`~ui.frame_stats.FrameStats` and whatever ``on_top`` writes to (a speller or a practice
session, both locked).

In background mode the callback does not wait for the recognizer: it hands the frame to a
process-wide pool (one thread fewer than the cores) unless this session's previous frame is
still being recognized, and draws the newest finished result on the frame it returns. Video
then flows at what the codecs allow and each session is recognized as often as the CPU can;
the boxes lag the video by about one recognition.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from tasks.inference.draw import FONT, draw_detections
from ui.app_settings import get_ui_settings
from ui.frame_stats import FrameStats

if TYPE_CHECKING:
    import av

    from tasks.core.records import Detection
    from tasks.inference.recognizer import Recognizer

TopObserver = Callable[[str | None, float, float], object]
MAX_DETECTIONS = 3  # one hand shows one letter; a few boxes are enough to see confusions
# Background recognitions of every session share these threads, so recognition never takes
# more cores than this, whatever the number of sessions; the rest are left to the video codecs.
_POOL = ThreadPoolExecutor(
    max_workers=get_ui_settings().background_threads or max(1, (os.cpu_count() or 2) - 1),
    thread_name_prefix="recognize",
)


class FrameProcessor:
    """Runs the shared recognizer on each frame of one browser session.

    Attributes are plain values the page may replace between frames (assigning a Python
    attribute is atomic), e.g. a newly selected model or threshold.

    With ``record_dir`` every received frame is also saved, as it arrived, to
    ``record_dir/<session>/<n>_<top letter or none>.png``: real webcam frames to examine
    offline, and what the browser test compares the page with.
    """

    def __init__(
        self,
        recognizer: Recognizer,
        stats: FrameStats,
        min_confidence: float = 0.5,
        on_top: TopObserver | None = None,
        record_dir: Path | None = None,
        background: bool = False,
    ) -> None:
        self.recognizer = recognizer
        self.stats = stats
        self.min_confidence = min_confidence
        self.on_top = on_top
        self.record_dir = record_dir / uuid.uuid4().hex[:12] if record_dir else None
        self.background = background
        self.show_landmarks = True  # a page's toggle: draw the hand's landmarks on each frame
        self.video = FrameStats()  # background mode: every frame returned, recognized or not
        self._count = itertools.count()
        self._in_flight = threading.Lock()  # held while this session's frame is recognized
        self._latest: tuple[Detection, ...] = ()

    def process(self, image: np.ndarray, received: float | None = None) -> np.ndarray:
        """Recognize one BGR frame and return the annotated copy.

        Args:
            image: The decoded frame (BGR uint8).
            received: When the frame reached the callback (monotonic s); default now.

        Returns:
            The frame with boxes, letters, confidences and the FPS/latency readout drawn.
        """
        start = time.perf_counter() if received is None else received
        detections = self._recognize(image, start)
        return self._annotate(image, detections, start)

    def overlay(self, image: np.ndarray, received: float | None = None) -> np.ndarray:
        """Background mode: queue ``image`` for recognition if this session is idle, and
        return it annotated with the newest finished result (possibly an earlier frame's).

        Args:
            image: The decoded frame (BGR uint8); the callback must not reuse its buffer.
            received: When the frame reached the callback (monotonic s); default now.
        """
        start = time.perf_counter() if received is None else received
        if self._in_flight.acquire(blocking=False):
            try:
                _POOL.submit(self._recognize_then_release, image, start)
            except BaseException:
                self._in_flight.release()
                raise
        return self._annotate(image, self._latest, start)

    def _recognize_then_release(self, image: np.ndarray, start: float) -> None:
        try:
            self._recognize(image, start)
        finally:
            self._in_flight.release()

    def _recognize(self, image: np.ndarray, start: float) -> tuple[Detection, ...]:
        """Recognize, record the top letter (stats, on_top, record_dir) and keep the result."""
        # agnostic NMS: one hand shows one letter, so overlapping boxes of two letters compete.
        result = self.recognizer.recognize(
            image, conf=self.min_confidence, max_det=MAX_DETECTIONS, agnostic=True
        )
        top = result.top
        letter, confidence = (top.letter, top.confidence) if top else (None, 0.0)
        done = time.perf_counter()
        if self.record_dir is not None:  # before counting it, so a counted frame is on disk
            self._save(self.record_dir, image, letter)
        self.stats.record(done, (done - start) * 1e3, letter, confidence)
        if self.on_top is not None:
            self.on_top(letter, confidence, done)
        self._latest = result.detections  # one assignment: readers see old or new, whole
        return result.detections

    def _annotate(
        self, image: np.ndarray, detections: tuple[Detection, ...], start: float
    ) -> np.ndarray:
        annotated = draw_detections(image, detections, self.show_landmarks)
        done = time.perf_counter()
        if self.background:  # returned frames differ from recognized ones only here
            self.video.record(done, (done - start) * 1e3, None, 0.0)
            video, recognized = self.video.snapshot(), self.stats.snapshot(done)
            _readout(annotated, f"{video.fps:4.1f} FPS  {recognized.fps:4.1f} rec/s")
        else:
            view = self.stats.snapshot()
            _readout(annotated, f"{view.fps:4.1f} FPS  {view.latency_ms:3.0f} ms")
        return annotated

    def _save(self, folder: Path, image: np.ndarray, letter: str | None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{next(self._count):06d}_{letter or 'none'}.png"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        """streamlit-webrtc's ``video_frame_callback``."""
        import av

        received = time.perf_counter()
        image = frame.to_ndarray(format="bgr24")  # a fresh array per frame
        annotated = (self.overlay if self.background else self.process)(image, received)
        out = av.VideoFrame.from_ndarray(annotated, format="bgr24")
        out.pts = frame.pts
        if frame.time_base is not None:
            out.time_base = frame.time_base
        return out


def page_processor(recognizer: Recognizer) -> FrameProcessor:
    """A fresh frame processor for a webcam page, as the app's settings ask."""
    settings = get_ui_settings()
    return FrameProcessor(
        recognizer,
        FrameStats(),
        record_dir=settings.record_dir,
        background=settings.background_recognition,
    )


def _readout(image: np.ndarray, text: str) -> None:
    """Draw ``text`` in the bottom-left corner, white on a dark band, in place."""
    h = image.shape[0]
    scale = max(0.5, h / 960)
    (width, height), base = cv2.getTextSize(text, FONT, scale, 1)
    cv2.rectangle(image, (0, h - height - base - 8), (width + 10, h), (0, 0, 0), -1)
    cv2.putText(image, text, (5, h - base - 4), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
