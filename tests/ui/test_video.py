"""The frame callback: real av frames through the shared recognizer, results via the lock."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tasks.inference.recognizer import Recognizer
from ui.frame_stats import FrameStats
from ui.spelling import Speller
from ui.video import FrameProcessor


@pytest.fixture(scope="module")
def recognizer(smoke_onnx: Path) -> Recognizer:
    return Recognizer.load(str(smoke_onnx), threads=1)


def test_callback_returns_an_annotated_frame_and_records_the_top_letter(
    recognizer: Recognizer, shared_dataset: Path
):
    image = cv2.imread(str(sorted((shared_dataset / "test" / "images").iterdir())[0]))
    speller = Speller(hold_seconds=0.0, min_confidence=0.0)
    processor = FrameProcessor(recognizer, FrameStats(), 0.0, on_top=speller.observe)
    frame = av.VideoFrame.from_ndarray(image, format="bgr24")
    frame.pts = 3000

    out = processor(frame)
    assert (out.width, out.height, out.pts) == (frame.width, frame.height, 3000)
    annotated = out.to_ndarray(format="bgr24")
    assert not np.array_equal(annotated, image), "boxes and the readout are drawn"
    expected = recognizer.recognize(image, conf=0.0, max_det=3, agnostic=True).top
    stats = processor.stats.snapshot()
    assert (stats.frames, stats.letter) == (1, expected.letter)
    assert stats.confidence == pytest.approx(expected.confidence)
    assert stats.latency_ms > 0
    assert speller.view().text == expected.letter


def test_threshold_above_every_score_records_no_letter(recognizer: Recognizer):
    processor = FrameProcessor(recognizer, FrameStats(), min_confidence=1.0)
    processor.process(np.full((480, 640, 3), 114, np.uint8))
    stats = processor.stats.snapshot()
    assert (stats.frames, stats.letter, stats.totals) == (1, None, ())


def test_frame_stats_rate_latency_runs_and_window():
    stats = FrameStats()
    for i, letter in enumerate("AAABBA"):
        stats.record(10.0 + i * 0.04, 20.0 + i, letter, 0.9)
    view = stats.snapshot()
    assert view.frames == 6 and view.fps == pytest.approx(25.0)
    assert view.latency_ms == pytest.approx(22.5)
    assert [(r.letter, r.frames) for r in view.runs] == [("A", 3), ("B", 2), ("A", 1)]
    assert view.totals == (("A", 4), ("B", 2))
    assert view.letters_seen(min_frames=2) == ("A", "B")
    assert stats.snapshot(now=30.0).fps == 0.0, "a stopped stream reads 0 FPS"


def test_frame_stats_survive_concurrent_writers_and_readers():
    stats = FrameStats()

    def writer(offset: float) -> None:
        for i in range(2000):
            stats.record(offset + i * 1e-3, 1.0, "A", 0.5)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        stats.snapshot()
    for thread in threads:
        thread.join()
    assert stats.snapshot().frames == 6000 and stats.snapshot().totals == (("A", 6000),)


class _Gated:
    """The real recognizer, held at a gate: a recognition in flight for as long as a test needs."""

    def __init__(self, recognizer: Recognizer) -> None:
        self.recognizer = recognizer
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def recognize(self, image: np.ndarray, **kwargs):
        self.calls += 1
        self.started.set()
        assert self.release.wait(10), "the test never opened the gate"
        return self.recognizer.recognize(image, **kwargs)


def _until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_background_mode_returns_frames_at_once_and_recognizes_one_at_a_time(
    recognizer: Recognizer, shared_dataset: Path
):
    from tasks.inference.draw import draw_detections

    image = cv2.imread(str(sorted((shared_dataset / "test" / "images").iterdir())[0]))
    gated = _Gated(recognizer)
    processor = FrameProcessor(gated, FrameStats(), 0.0, background=True)  # type: ignore[arg-type]
    first = processor.overlay(image)
    assert gated.started.wait(10)
    for _ in range(3):  # the session's recognition is in flight: these frames only get drawn
        processor.overlay(image)
    assert processor.video.snapshot().frames == 4
    assert processor.stats.snapshot().frames == 0 and gated.calls == 1
    body = slice(0, image.shape[0] - 40)  # above the readout band
    assert np.array_equal(first[body], image[body]), "nothing recognized yet: no boxes"

    gated.release.set()
    _until(lambda: processor.stats.snapshot().frames == 1 and not processor._in_flight.locked())
    expected = recognizer.recognize(image, conf=0.0, max_det=3, agnostic=True)
    assert processor.stats.snapshot().letter == expected.top.letter
    later = processor.overlay(image)  # drawn with the finished result; queues the next frame
    assert np.array_equal(later[body], draw_detections(image, expected.detections)[body])
    _until(lambda: processor.stats.snapshot().frames == 2 and not processor._in_flight.locked())
    assert gated.calls == 2


def test_background_callback_counts_video_and_recognitions_apart(recognizer: Recognizer):
    processor = FrameProcessor(recognizer, FrameStats(), 0.0, background=True)
    frame = av.VideoFrame.from_ndarray(np.full((480, 640, 3), 114, np.uint8), format="bgr24")
    for _ in range(5):
        out = processor(frame)
        assert (out.width, out.height) == (640, 480)
    _until(lambda: not processor._in_flight.locked())
    assert processor.video.snapshot().frames == 5
    # How many frames found the session idle depends on thread timing: at least the first.
    assert 1 <= processor.stats.snapshot().frames <= 5
