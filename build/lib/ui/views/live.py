"""Live page: webcam frames through the shared recognizer; hold a letter to type it."""

from __future__ import annotations

import time

import streamlit as st

from ui.app_settings import get_ui_settings
from ui.frame_stats import processed_line, video_line
from ui.shared_model import model_label, model_or_stop
from ui.spelling import Speller
from ui.video import FrameProcessor, page_processor
from ui.webcam import landmarks_toggle, webcam

REFRESH_SECONDS = 1.0  # how often the readout polls the callback's results while streaming

st.title("Live fingerspelling")
recognizer, details = model_or_stop()

settings = get_ui_settings()
state = st.session_state
if "live_speller" not in state:
    # Session objects survive reruns; the frame callback holds references to them.
    state.live_speller = Speller(settings.hold_seconds, settings.min_confidence)
    state.live_processor = page_processor(recognizer)
speller: Speller = state.live_speller
processor: FrameProcessor = state.live_processor

video, panel = st.columns([3, 2])
with panel:
    min_confidence = st.slider(
        "Confidence threshold", 0.0, 1.0, settings.min_confidence, 0.01, key="live_conf"
    )
    hold_seconds = st.slider("Hold time (s)", 0.0, 3.0, settings.hold_seconds, 0.1, key="live_hold")
    show_landmarks = landmarks_toggle(recognizer, "live_landmarks")
speller.configure(hold_seconds, min_confidence)
processor.recognizer, processor.min_confidence = recognizer, min_confidence
processor.show_landmarks = show_landmarks
processor.on_top = speller.observe

with video:
    context = webcam("live", processor)
    st.caption(
        f"Model **{details.name} v{details.version}** "
        f"{'(' + ', '.join(details.aliases) + ')' if details.aliases else ''} · "
        "each frame: letter and confidence drawn on the box, FPS and latency bottom-left."
    )
    st.caption(f"Recognizing with **{model_label(details)}** (switch in the sidebar).")
playing = context.state.playing


def readout() -> None:
    """Figures (since the page opened) and transcript, polled from the callback's state."""
    now = time.perf_counter()
    stats = processor.stats.snapshot(now)
    if processor.background:  # frames returned and frames recognized differ
        st.markdown(video_line(processor.video.snapshot(now)))
    st.markdown(processed_line(stats))
    seen = " · ".join(f"{letter} {frames}" for letter, frames in stats.totals) or "none yet"
    st.markdown(f"**Letters seen** (frames): {seen}")
    view = speller.view()
    if view.candidate is None:
        st.progress(0.0, text="Show a letter and hold it")
    else:
        st.progress(view.progress, text=f"Holding **{view.candidate}**")
    st.markdown("**Transcript** (copy with the icon on the right)")
    st.code(view.text or " ", language=None)
    # on_click runs before the fragment reruns, so the transcript above is already updated.
    space, back, clear = st.columns(3)
    space.button("Space", on_click=speller.space, use_container_width=True)
    back.button("⌫ Backspace", on_click=speller.backspace, use_container_width=True)
    clear.button("Clear", on_click=speller.clear, use_container_width=True)


with panel:
    st.fragment(run_every=REFRESH_SECONDS if playing else None)(readout)()
