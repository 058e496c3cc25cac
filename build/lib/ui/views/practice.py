"""Practice page: sign the target letter, hold it, get feedback, score and streak."""

from __future__ import annotations

import streamlit as st

from ui.app_settings import get_ui_settings
from ui.practice import PracticeSession, PracticeView
from ui.shared_model import model_or_stop
from ui.video import FrameProcessor, page_processor
from ui.webcam import webcam

REFRESH_SECONDS = 1.0
EXTRA_HOLD = 0.2  # practice asks for a slightly more deliberate hold than typing

st.title("Practice")
recognizer, details = model_or_stop()

settings = get_ui_settings()
state = st.session_state
if "practice_session" not in state:
    state.practice_session = PracticeSession(
        recognizer.names, min(settings.hold_seconds + EXTRA_HOLD, 3.0), settings.min_confidence
    )
    state.practice_processor = page_processor(recognizer)
session: PracticeSession = state.practice_session
processor: FrameProcessor = state.practice_processor

video, panel = st.columns([3, 2])
with panel:
    focus = st.toggle("Practise the letters I miss most", key="practice_focus")
    min_confidence = st.slider(
        "Confidence threshold", 0.0, 1.0, settings.min_confidence, 0.01, key="practice_conf"
    )
    hold_seconds = st.slider(
        "Hold time (s)",
        0.2,
        3.0,
        min(settings.hold_seconds + EXTRA_HOLD, 3.0),
        0.1,
        key="practice_hold",
    )
session.configure(hold_seconds, min_confidence, focus)
processor.recognizer, processor.min_confidence = recognizer, min_confidence
processor.on_top = session.observe

with video:
    context = webcam("practice", processor)
    st.caption(f"Model **{details.name} v{details.version}**")


def feedback(view: PracticeView) -> None:
    """What the app sees, relative to the target."""
    if view.kind == "holding":
        st.progress(view.progress, text=f"Yes, that is **{view.target}**, hold it…")
    elif view.kind == "other":
        st.progress(0.0, text=f"I see **{view.seen}**, not {view.target}")
    else:
        st.progress(0.0, text="Show your hand to the camera")
    last = view.last
    if last is not None and last.correct:
        st.success(f"Correct: {last.target}!")
    elif last is not None and last.seen == "skipped":
        st.info(f"Skipped {last.target}.")
    elif last is not None:
        st.warning(f"That looked like **{last.seen}**, not {last.target}. Try again or skip.")


def board() -> None:
    """Target, feedback and score, polled from the practice session."""
    view = session.view()
    st.markdown(f"## Sign **{view.target}**")
    st.caption(view.description)
    feedback(view)
    score, streak, best = st.columns(3)
    score.metric("Score", f"{view.score}/{view.attempts}")
    streak.metric("Streak", view.streak)
    best.metric("Best streak", view.best_streak)
    if view.most_missed:
        missed = ", ".join(f"{letter} ({n})" for letter, n in view.most_missed)
        st.caption(f"Missed most: {missed}")
    st.button("Skip this letter", on_click=session.skip)


with panel:
    st.fragment(run_every=REFRESH_SECONDS if context.state.playing else None)(board)()
    if st.button("New round (reset score)"):
        del state["practice_session"]
        st.rerun()
