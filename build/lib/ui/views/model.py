"""Model page: which model is loaded, its metrics and plots from MLflow, and another version."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from tasks.core.redact import redact
from tasks.core.settings import get_settings
from tasks.inference.crop_classifier import CropClassifier
from tasks.registry.tracking import client_for
from ui.model_info import (
    ModelUnavailable,
    VersionSummary,
    check_tracking,
    confusion_png,
    fusion_rows,
    landmark_misses,
    list_versions,
    per_letter,
)
from ui.shared_model import (
    VERSION_KEY,
    model_label,
    model_or_stop,
    model_switch,
    show_unavailable,
)


def _stages(classifier: CropClassifier) -> str:
    members = len(classifier.paths)
    reader = "a letter classifier" if members == 1 else f"{members} letter classifiers, averaged,"
    return f" · two stages: hand detector, then {reader} on {classifier.size} px hand crops"


COLUMNS = {
    "map50": "mAP50",
    "map50_95": "mAP50-95",
    "precision": "precision",
    "recall": "recall",
    "top1": "top-1 accuracy",
    "top1_low": "top-1 95% low",
    "top1_high": "top-1 95% high",
}


@st.cache_data(ttl=15, show_spinner=False)
def _versions(tracking_uri: str) -> list[VersionSummary]:
    check_tracking(tracking_uri)
    return list_versions(client_for(tracking_uri))


@st.cache_data(show_spinner="Fetching evaluation from MLflow…")
def _evaluation(
    tracking_uri: str, evaluate_run_id: str | None, split: str
) -> tuple[list[dict[str, Any]], bytes | None]:
    # An evaluate run's artifacts never change: cache them for the process.
    client = client_for(tracking_uri)
    return per_letter(client, evaluate_run_id, split), confusion_png(client, evaluate_run_id, split)


st.title("Model")
uri = get_settings().tracking_uri
try:
    versions = _versions(uri)
except ModelUnavailable as problem:
    show_unavailable(problem)
    st.stop()
except Exception as error:  # whatever MLflow raises, the page explains
    show_unavailable(
        ModelUnavailable("unreachable", f"MLflow at {redact(uri)} failed: {redact(str(error))}")
    )
    st.stop()
if not versions:
    show_unavailable(ModelUnavailable("no_models", "No model is registered yet."))
    st.stop()

state = st.session_state
labels = {v.version: v.label for v in versions}
picked = state.get(VERSION_KEY)
choice, actions = st.columns([3, 2], vertical_alignment="bottom")
selected = choice.selectbox(
    "Registered versions",
    list(labels),
    index=list(labels).index(picked) if picked in labels else 0,
    format_func=labels.__getitem__,
    key="model_select",
)
load, champion = actions.columns(2)
if load.button("Load this version", use_container_width=True):
    state[VERSION_KEY] = selected
    st.rerun()
if champion.button("Use the champion", use_container_width=True, disabled=picked is None):
    state.pop(VERSION_KEY, None)
    st.rerun()

recognizer, details = model_or_stop()

aliases = ", ".join(details.aliases) or "no alias"

st.subheader(f"Loaded: {details.name} v{details.version} ({aliases})")
st.caption(f"This session recognizes with **{model_label(details)}**.")
model_switch("model_page_switch")
trained = f"{details.trained_at:%Y-%m-%d %H:%M} UTC" if details.trained_at else "unknown"
st.markdown(
    f"- **dataset** `{details.dataset_id or 'unknown'}`\n"
    f"- **trained** {trained} · profile `{details.profile or 'unknown'}`\n"
    f"- **runs** train `{details.run_id}` · evaluate `{details.evaluate_run_id}`\n"
    + "".join(f"- **{stage} started from** {w}\n" for stage, w in details.started_from.items())
    + f"- **recognizer** {recognizer.source.format} at "
    f"{recognizer.input_size[1]}×{recognizer.input_size[0]} px"
    + (_stages(recognizer.classifier) if recognizer.classifier is not None else "")
)

rows = details.metric_rows()
if rows:
    st.markdown(
        "**Metrics** (top-1: the most confident letter names the image's letter; its 95% "
        "interval is a bootstrap over the split's images: one of 144 valid images is 0.007)"
    )
    table = pd.DataFrame(rows).set_index("split").rename(columns=COLUMNS)
    st.dataframe(table.style.format("{:.3f}", na_rep="–"))
else:
    st.info("This version has no recorded metrics.")

if recognizer.fused is not None:
    figures = fusion_rows(recognizer.source.path.parent)
    rule = recognizer.fused.rule
    st.markdown(
        f"**Pixels, landmarks, fused** (top-1 on valid's labelled hand boxes, and on the same "
        f"boxes shifted toward a webcam: smaller, softer, other light). The fused reading "
        f"weighs landmarks {rule.landmark_weight:.1f}, chosen as the best worst case of the two "
        f"(test is never used to choose); a box with no hand in it is not read."
    )
    if figures:
        st.dataframe(pd.DataFrame(figures).set_index("reading").style.format("{:.3f}"))
    if (missing := landmark_misses(recognizer.source.path.parent)) is not None:
        st.caption(
            f"The landmark network found no hand in {missing[0]} train and {missing[1]} valid "
            "labelled boxes: those are counted as wrong above, never dropped."
        )

split = st.radio("Split", ["test", "valid"], horizontal=True, key="model_split")
letters, confusion = _evaluation(uri, details.evaluate_run_id, split)
if letters:
    present = [row for row in letters if row.get("present")]
    absent = [row["letter"] for row in letters if not row.get("present")]
    chart = pd.DataFrame(
        {
            "AP50": [row["ap50"] for row in present],
            "top-1 accuracy": [row["top1_accuracy"] for row in present],
        },
        index=[row["letter"] for row in present],
    )
    st.markdown(f"**Per letter on {split}**")
    st.bar_chart(chart, stack=False, height=280)
    if absent:
        st.caption(f"Absent from the {split} split (no score, not zero): {', '.join(absent)}")
else:
    st.caption(f"No per-letter results were logged for {split}.")
if confusion is not None:
    st.image(confusion, caption=f"Top-1 confusion matrix on {split}", width=560)
