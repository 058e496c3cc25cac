"""The live page's video path with recognition taken out: what WebRTC alone costs here.

``benchmarks/browser.py --no-recognition`` serves this page instead of ``ui/app.py``. It uses
the app's own webcam widget (``ui.webcam``) and frame callback (``ui.video.FrameProcessor``:
decode to BGR, draw, readout, encode) with a recognizer that returns no detections at once,
and prints the same readout line the live page does, so the benchmark reads both alike. The
FPS it reaches is the ceiling any recognizer can reach in the same browser set-up.
"""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from tasks.inference.recognizer import Recognition
from ui.frame_stats import FrameStats, processed_line
from ui.video import FrameProcessor
from ui.webcam import webcam


class NoRecognizer:
    """Stands in for :class:`tasks.inference.recognizer.Recognizer`: finds nothing, free."""

    def recognize(self, image: np.ndarray, **_: object) -> Recognition:
        """No detections, no time spent."""
        return Recognition(detections=(), timing_ms={"total": 0.0})


st.title("WebRTC ceiling (no recognition)")
if "ceiling_processor" not in st.session_state:
    st.session_state.ceiling_processor = FrameProcessor(NoRecognizer(), FrameStats())  # type: ignore[arg-type]
processor: FrameProcessor = st.session_state.ceiling_processor
context = webcam("ceiling", processor)


def readout() -> None:
    """The live page's readout line, in its format."""
    stats = processor.stats.snapshot(time.perf_counter())
    st.markdown(processed_line(stats))


st.fragment(run_every=1.0 if context.state.playing else None)(readout)()
