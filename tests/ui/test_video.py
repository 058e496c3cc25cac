"""The frame callback: real av frames through the shared recognizer, results via the lock."""

from __future__ import annotations

import threading
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tasks.recognize import Recognizer
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
