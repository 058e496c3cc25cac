"""Upload page: recognize letters in one or more images."""

from __future__ import annotations

import cv2
import streamlit as st

from tasks.inference.draw import draw_detections
from ui.app_settings import get_ui_settings
from ui.shared_model import model_or_stop
from ui.uploads import UploadProblem, read_upload

st.title("Recognize images")
recognizer, details = model_or_stop()

settings = get_ui_settings()
st.caption(
    f"Model **{details.name} v{details.version}** · up to {settings.max_upload_mb} MB per file; "
    f"larger images are shrunk to {settings.max_image_side} px on their longest side."
)
min_confidence = st.slider(
    "Confidence threshold", 0.0, 1.0, min(settings.min_confidence, 0.25), 0.01, key="upload_conf"
)
# No `type=` filter on purpose: a wrong file gets our message naming it, not a silent refusal.
files = st.file_uploader("Images", accept_multiple_files=True, key="upload_files") or []

for file in files:
    upload = read_upload(
        file.name,
        file.getvalue(),
        settings.max_upload_bytes,
        settings.max_image_side,
        settings.max_image_pixels,
    )
    if isinstance(upload, UploadProblem):
        st.error(upload.message)
        continue
    result = recognizer.recognize(upload.image, conf=min_confidence)
    annotated = draw_detections(upload.image, result.detections)
    picture, table = st.columns([3, 2])
    caption = file.name
    if upload.downscaled:
        caption += f" (shrunk from {upload.original_size[0]}×{upload.original_size[1]})"
    picture.image(cv2.cvtColor(annotated, cv2.COLOR_BGR2RGB), caption=caption)
    with table:
        if not result.detections:
            st.info(f"No letter above {min_confidence:.2f} in {file.name}.")
        else:
            st.markdown(f"**{file.name}**: " + ", ".join(d.letter for d in result.detections))
            st.dataframe(
                [
                    {"letter": d.letter, "confidence": round(d.confidence, 4)}
                    for d in result.detections
                ],
                hide_index=True,
            )
        st.caption(f"{result.timing_ms['total']:.0f} ms")
