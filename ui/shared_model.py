"""The one model of the app process, and the friendly page shown when there is none.

The recognizer is loaded once per process and model version (``st.cache_resource``) and shared
by every browser session: :class:`~tasks.inference.recognizer.Recognizer` is safe to call from many
threads (one onnxruntime session, per-thread buffers). Each session may pick another version on
the model page; it is loaded once too.
"""

from __future__ import annotations

import streamlit as st

from tasks.core.redact import redact
from tasks.core.settings import get_settings
from tasks.inference.recognizer import Recognizer
from tasks.registry.tracking import client_for
from ui.app_settings import get_ui_settings
from ui.model_info import ModelDetails, ModelUnavailable, check_tracking, resolve

VERSION_KEY = "model_version"  # session_state: the version picked on the model page, or absent


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_recognizer(tracking_uri: str, model_uri: str) -> Recognizer:
    """Download (once, cached on disk) and load a pinned model version for this process."""
    client_for(tracking_uri)
    # int8 ships only when it scores like fp32 on valid (top-1 and mAP50); then it is faster.
    return Recognizer.load(model_uri, threads=get_ui_settings().inference_threads, prefer="int8")


@st.cache_data(ttl=15, show_spinner=False)
def _details(tracking_uri: str, version: str | None) -> ModelDetails:
    # A short TTL: an alias moved by a new training shows up within seconds, without asking
    # MLflow on every rerun of every session.
    check_tracking(tracking_uri)
    return resolve(client_for(tracking_uri), version)


def current_details() -> ModelDetails:
    """The version this session uses: the one picked on the model page, else the champion.

    Raises:
        ModelUnavailable: With the reason and what to do.
    """
    uri = get_settings().tracking_uri
    try:
        return _details(uri, st.session_state.get(VERSION_KEY))
    except ModelUnavailable:
        raise
    except Exception as error:  # whatever MLflow raises, the page explains
        raise ModelUnavailable("unreachable", f"MLflow at {uri} failed: {error}") from error


def current_model() -> tuple[Recognizer, ModelDetails]:
    """The loaded recognizer of this session's version and its details.

    Raises:
        ModelUnavailable: With the reason and what to do.
    """
    details = current_details()
    try:
        return load_recognizer(get_settings().tracking_uri, details.uri), details
    except Exception as error:  # a broken download must not show a traceback
        raise ModelUnavailable(
            "unloadable", f"{details.uri} could not be loaded: {error}"
        ) from error


def model_or_stop() -> tuple[Recognizer, ModelDetails]:
    """:func:`current_model`, or the friendly page and the end of this script run."""
    try:
        return current_model()
    except ModelUnavailable as problem:
        show_unavailable(problem)
        st.stop()


def show_unavailable(problem: ModelUnavailable) -> None:
    """A friendly explanation with the exact commands to run; never a traceback."""
    uri = get_settings().tracking_uri
    if problem.kind == "unreachable":
        st.error(f"**Cannot reach MLflow.** {problem}")
        st.markdown("Start the tracking server, or point the app at the right one and restart it:")
        st.code(
            "export FINGERSPELL_MLFLOW_TRACKING_URI=http://127.0.0.1:5000\nmake app",
            language="bash",
        )
    elif problem.kind in ("no_models", "no_champion"):
        st.info(f"**No model to show yet.** {problem}")
        st.markdown("Train and register one (the first model becomes the champion), then reload:")
        st.code(
            "make demo            # about 15 min on 2 CPU cores, then starts this app\n"
            "# or, in a few minutes (a model that barely reads letters):\n"
            ".venv/bin/python -m flows.pipeline --profile smoke",
            language="bash",
        )
    else:
        st.warning(f"**This model cannot be used.** {problem}")
        st.markdown("Pick another version on the **Model** page.")
    st.caption(
        f"The app reads models from `{redact(uri)}` "
        "(set `FINGERSPELL_MLFLOW_TRACKING_URI` to change it)."
    )
