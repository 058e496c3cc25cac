"""The one model of the app process, and the friendly page shown when there is none.

The recognizer is loaded once per process and model version (``st.cache_resource``) and shared
by every browser session: :class:`~tasks.inference.recognizer.Recognizer` is safe to call from many
threads (one onnxruntime session, per-thread buffers). Each session may pick another version on
the model page, or the learner's own model (alias ``personal-<learner>``, trained on the Teach
page); it is loaded once too.
"""

from __future__ import annotations

import streamlit as st

from tasks.core.redact import redact
from tasks.core.settings import get_settings
from tasks.inference.recognizer import Recognizer
from tasks.registry.models import (
    CHAMPION,
    MODEL_NAME,
    PERSONAL_PREFIX,
    get_version,
    personal_alias,
)
from tasks.registry.tracking import client_for
from ui.app_settings import get_ui_settings
from ui.model_info import ModelDetails, ModelUnavailable, check_tracking, resolve

# session_state: the version picked on the model page ("3"), a learner's alias ("@personal-ann"),
# or absent for the champion.
VERSION_KEY = "model_version"
LEARNER_KEY = "learner"  # session_state: the learner named on the Teach page


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
    client = client_for(tracking_uri)
    if version is not None and version.startswith("@"):
        # An alias is resolved here, and the version it names is what gets loaded, so a
        # personal model retrained meanwhile shows up within the TTL, never half-loaded.
        alias = version[1:]
        pinned = _alias_version(tracking_uri, alias)
        if pinned is None:
            raise ModelUnavailable(
                "no_version",
                f"{MODEL_NAME} has no model {alias} yet: teach some letters and personalize "
                "on the Teach page, or use the champion.",
            )
        version = pinned
    return resolve(client, version)


@st.cache_data(ttl=15, show_spinner=False)
def _alias_version(tracking_uri: str, alias: str) -> str | None:
    check_tracking(tracking_uri)
    version = get_version(alias, MODEL_NAME, tracking_uri)
    return version.version if version else None


def refresh_models() -> None:
    """Forget cached registry lookups, e.g. right after a personal model was registered."""
    _alias_version.clear()
    _details.clear()


def current_learner() -> str:
    """The learner named on the Teach page, else the default from the settings."""
    return st.session_state.get(LEARNER_KEY) or get_ui_settings().learner


def use_personal(learner: str) -> None:
    """Use ``learner``'s own model in this session (an ``on_click`` callback)."""
    st.session_state[VERSION_KEY] = "@" + personal_alias(learner)


def use_champion() -> None:
    """Use the general champion in this session (an ``on_click`` callback)."""
    st.session_state.pop(VERSION_KEY, None)


def model_label(details: ModelDetails) -> str:
    """Which model this is, in words: the learner's own, the general champion, or a version."""
    mine = [a for a in details.aliases if a.startswith(PERSONAL_PREFIX)]
    if mine:
        return f"your own model ({mine[0]}, v{details.version})"
    if CHAMPION in details.aliases:
        return f"the general model (champion, v{details.version})"
    return f"version {details.version}"


def model_switch(key: str) -> None:
    """Say which model is in use and offer the other one: the champion or the learner's own.

    Args:
        key: Prefix of the widget keys, unique per place the switch is shown.
    """
    learner = current_learner()
    alias = personal_alias(learner)
    choice = st.session_state.get(VERSION_KEY)
    if choice == "@" + alias:
        st.caption(f"Using **your own model** ({alias}).")
        st.button("Use the general model", key=f"{key}_general", on_click=use_champion)
        return
    st.caption(
        "Using **the general model** (champion)."
        if choice is None
        else f"Using version **{choice.lstrip('@')}** (picked on the Model page)."
    )
    try:
        exists = _alias_version(get_settings().tracking_uri, alias) is not None
    except Exception:  # MLflow unreachable: the page says so itself
        exists = False
    st.button(
        f"Use my model ({alias})",
        key=f"{key}_personal",
        on_click=use_personal,
        args=(learner,),
        disabled=not exists,
        help=None if exists else "Teach some letters and personalize on the Teach page first.",
    )


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
        if st.session_state.get(VERSION_KEY) is not None:
            st.button("Use the general model", key="unavailable_general", on_click=use_champion)
    st.caption(
        f"The app reads models from `{redact(uri)}` "
        "(set `FINGERSPELL_MLFLOW_TRACKING_URI` to change it)."
    )
