"""Teach page: capture bursts of your own signs, letter by letter, and personalize a model.

Every message built from an error or from the personalize child's output goes through
:func:`tasks.core.redact.redact` (the job's lines and error arrive redacted already).
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from tasks.core.redact import redact
from tasks.core.settings import get_settings
from tasks.data.captures import (
    Removed,
    check_learner,
    delete_learner,
    learner_dir,
    merged_datasets_dir,
    personal_runs_dir,
    read_bursts,
    save_burst,
)
from ui.app_settings import get_ui_settings
from ui.personalize_job import job_for
from ui.practice import HANDSHAPES
from ui.shared_model import (
    LEARNER_KEY,
    current_learner,
    model_label,
    model_or_stop,
    model_switch,
    refresh_models,
    use_personal,
)
from ui.teach import BurstCollector, TeachTap, burst_counts, letter_order, shot_preview
from ui.video import FrameProcessor, page_processor
from ui.webcam import landmarks_toggle, webcam

# Where the app (Recognizer.load's default) and the predict flow (<home>/models) keep models.
APP_MODEL_CACHE = Path.home() / ".cache" / "fingerspell" / "models"
REFRESH_SECONDS = 0.5  # a burst lasts about 2 s: poll often enough to show it filling up
GRID_COLUMNS = 4

st.title("Teach")
recognizer, details = model_or_stop()
settings = get_ui_settings()
state = st.session_state
if "teach_collector" not in state:
    state.teach_collector = BurstCollector(settings.teach_frames, settings.teach_seconds)
    state.teach_processor = page_processor(recognizer)
    state.teach_index = 0
collector: BurstCollector = state.teach_collector
processor: FrameProcessor = state.teach_processor

video, panel = st.columns([3, 2])
with panel:
    learner = st.text_input("Your name", value=current_learner(), key="teach_learner").strip()
    try:
        check_learner(learner)
    except ValueError as error:
        st.error(redact(str(error)))
        st.stop()
    state[LEARNER_KEY] = learner
    with st.expander("Burst settings"):
        frames = st.slider("Frames per burst", 1, 30, settings.teach_frames, key="teach_frames")
        seconds = st.slider(
            "Burst length (s)", 0.5, 10.0, settings.teach_seconds, 0.5, key="teach_seconds"
        )
        min_confidence = st.slider(
            "Hand threshold", 0.0, 1.0, settings.teach_hand_confidence, 0.01, key="teach_conf"
        )
    practice = state.get("practice_session")
    misses = dict(practice.misses) if practice is not None else {}
    focus = st.toggle(
        "Teach the letters I miss most in Practice",
        key="teach_focus",
        disabled=not misses,
        help=None if misses else "Practice first: the letters you miss are listed there.",
    )
    show_landmarks = landmarks_toggle(recognizer, "teach_landmarks")
collector.configure(frames, seconds)
processor.recognizer = TeachTap(recognizer, collector)
processor.min_confidence = min_confidence
processor.show_landmarks = show_landmarks
order = letter_order(recognizer.names, misses if focus else None)
root = learner_dir(get_settings().home, learner)

with video:
    webcam("teach", processor)
    st.caption(f"Recognizing with **{model_label(details)}**. Frames stay on this machine.")
    model_switch("teach_switch")


def step(delta: int) -> None:
    """Move to another letter, dropping an unsaved burst."""
    collector.clear()
    state.teach_index = (state.teach_index + delta) % len(order)


def save(letter: str) -> None:
    """Write the kept shots as one burst of ``letter`` and go on to the next letter."""
    shots = collector.shots()
    if not shots:
        state.teach_message = ("warning", "Nothing to save: every frame was deleted.")
        return
    try:
        burst = save_burst(root, letter, [s.image for s in shots], [s.box for s in shots])
    except (OSError, ValueError) as error:
        state.teach_message = ("error", redact(f"Could not save the burst: {error}"))
        return
    state.teach_message = ("success", f"Saved {burst.frames} frames of {letter} ({burst.split}).")
    # Save is a button of the board fragment, which alone reruns after it; the sections
    # outside it (Personalize, delete) depend on the saved bursts too.
    state.teach_rerun_app = True
    step(1)


def board() -> None:
    """The asked letter, the burst as it fills, then its frames to keep or delete."""
    if state.pop("teach_rerun_app", False):
        st.rerun(scope="app")
    letter = order[state.teach_index % len(order)]
    view = collector.view()
    st.markdown(f"## Sign **{letter}**")
    st.caption(HANDSHAPES.get(letter, ""))
    kind, message = state.pop("teach_message", (None, ""))
    if kind is not None:
        getattr(st, kind)(message)
    if polling and view.state == "done":
        st.rerun()  # the burst is in: show its grid without polling (and re-sending) it
    if view.state == "idle":
        # A whole-page rerun, so the page polls the collector while the burst fills.
        if st.button("Capture a burst", type="primary"):
            collector.arm(letter)
            st.rerun()
    elif view.state == "waiting":
        st.progress(0.0, text="Show one hand holding the sign: the burst starts when I see it")
        if st.button("Cancel"):
            collector.clear()
            st.rerun()
    elif view.state == "capturing":
        st.progress(view.progress, text=f"Hold it… {view.kept}/{view.frames} frames")
    else:
        shots = collector.shots()
        st.markdown(f"**{len(shots)} frames** with one hand. Delete any that look wrong.")
        for start in range(0, len(shots), GRID_COLUMNS):
            for i, column in enumerate(st.columns(GRID_COLUMNS), start):
                if i < len(shots):
                    column.image(shot_preview(shots[i]), width="stretch", output_format="JPEG")
                    column.button("Delete", key=f"teach_delete_{i}", on_click=collector.remove,
                                  args=(i,))  # fmt: skip
        keep, drop = st.columns(2)
        keep.button(f"Save {len(shots)} frames", type="primary", on_click=save, args=(letter,),
                    disabled=not shots)  # fmt: skip
        drop.button("Discard", on_click=collector.clear)
    back, skip = st.columns(2)
    back.button("Previous letter", on_click=step, args=(-1,), width="stretch")
    skip.button("Next letter", on_click=step, args=(1,), width="stretch")
    counts = burst_counts(burst.letter for burst in read_bursts(root))
    saved = " · ".join(f"{x} {n}" for x, n in sorted(counts.items())) or "none yet"
    st.markdown(f"**Saved bursts** (per letter): {saved}")


def captures() -> None:
    """Delete every capture of this learner, after a confirmation."""
    if job_for(learner).state == "running":
        # The running fine-tune reads these files; stop it first.
        st.button("Delete all my captures", disabled=True, help="Stop Personalize first.")
        return
    if not state.get("teach_confirm"):
        home = get_settings().home
        copies = (
            root,
            merged_datasets_dir(home / "datasets", learner),
            personal_runs_dir(home, learner),
        )
        if st.button("Delete all my captures", disabled=not any(p.exists() for p in copies)):
            state.teach_confirm = True
            st.rerun()
        return
    st.warning(
        f"Delete every burst {learner} saved, and every copy a Personalize run made of them "
        "on this machine? This cannot be undone."
    )
    models = st.checkbox(
        "Also delete my downloaded personal models",
        key="teach_delete_models",
        help="The copies of your model this app downloaded; it stays registered in MLflow.",
    )
    yes, no = st.columns(2)
    if yes.button("Yes, delete them all", type="primary"):
        collector.clear()
        home = get_settings().home
        caches = [APP_MODEL_CACHE, home / "models"] if models else []
        removed = delete_learner(home, learner, model_caches=caches)
        state.teach_confirm = False
        state.teach_message = ("info", deleted_message(learner, removed))
        st.rerun()
    if no.button("Cancel", key="teach_confirm_cancel"):
        state.teach_confirm = False
        st.rerun()


def deleted_message(learner: str, removed: Removed) -> str:
    """What a delete removed, each place with its number of files."""
    if not removed:
        return f"{learner} had nothing to delete."
    places = "\n".join(
        f"- `{redact(path)}`: {files} file{'s' if files != 1 else ''}"
        for path, files in removed.paths.items()
    )
    where = f"{len(removed.paths)} place{'s' if len(removed.paths) != 1 else ''}"
    return (
        f"Deleted all of {learner}'s captures: {removed.files} files in {where}.\n\n{places}"
        "\n\nA model registered for you stays in MLflow (its weights, no frames)."
    )


def personalize() -> None:
    """Fine-tune a model on the saved bursts in the background; then use it."""
    st.markdown("### Personalize")
    job = job_for(learner)
    splits = {burst.split for burst in read_bursts(root)}
    ready = splits == {"train", "valid"}
    if st.button(
        "Personalize",
        disabled=job.state == "running" or not ready,
        help=None if ready else "Save at least two bursts of one letter (one is held out).",
    ):
        job.start()
        st.rerun()  # a whole-page rerun: the section below then polls the job
    if job.state == "running":
        minutes, secs = divmod(int(time.time() - job.started), 60)
        if job.stopping:
            st.warning(f"Stopping… {minutes}:{secs:02d}")
        else:
            st.info(f"Training your model… {minutes}:{secs:02d} (you can keep using the app)")
            st.button("Stop", on_click=job.cancel, key="teach_stop")
        st.code(redact("\n".join(job.lines)) or "starting…", language=None)
    elif job.state == "failed":
        st.error(f"Personalizing failed: {redact(job.error or 'no reason given')}")
        if job.lines:
            with st.expander("Its last output"):
                st.code(redact("\n".join(job.lines)), language=None)
    elif job.state == "cancelled" and state.get("teach_stopped") != job.finished:
        # Once per stopped run: a whole-page rerun frees the delete button and stops polling.
        state.teach_stopped = job.finished
        st.rerun(scope="app")
    elif job.state == "cancelled":
        st.info("Personalizing stopped; the model in use did not change.")
    elif job.state == "done" and state.get("teach_applied") != job.finished:
        # Once per finished run: switch this session to the new model and reload the app.
        state.teach_applied = job.finished
        refresh_models()
        use_personal(learner)
        st.rerun(scope="app")
    elif job.state == "done" and job.outcome:
        before, after = job.outcome.get("before", {}), job.outcome.get("after", {})
        if job.outcome.get("reused"):
            st.info("Nothing new since your model was trained: it is in use, none retrained. "
                    "Teach more bursts, then personalize again.")  # fmt: skip
        st.success(
            f"Your model {job.alias} is in use: your held-out bursts top-1 "
            f"{before.get('learner', 0):.2f} → {after.get('learner', 0):.2f}, "
            f"general valid {before.get('base', 0):.2f} → {after.get('base', 0):.2f}."
        )


# Poll only while a burst fills (the buttons that start and end that rerun the whole page),
# whatever the webcam widget says: its state can lag the stream by a rerun.
polling = collector.view().state in ("waiting", "capturing")
with panel:
    st.fragment(run_every=REFRESH_SECONDS if polling else None)(board)()
    captures()
    job_running = job_for(learner).state == "running"
    st.fragment(run_every=2.0 if job_running else None)(personalize)()
