"""The webcam widget both video pages use: streamlit-webrtc with our ICE settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st
from streamlit_webrtc import WebRtcMode, WebRtcStreamerContext, webrtc_streamer

from tasks.inference.recognizer import Recognizer
from ui.app_settings import get_ui_settings, rtc_configuration
from ui.video import FrameProcessor


def constraints(width: int) -> dict[str, Any]:
    """getUserMedia constraints: a 4:3 camera track of about ``width`` pixels at 30 fps."""
    height = width * 3 // 4
    video = {"width": {"ideal": width}, "height": {"ideal": height}, "frameRate": {"ideal": 30}}
    return {"video": video, "audio": False}


def _secrets() -> Mapping[str, Any] | None:
    """Streamlit secrets, or None when there is no secrets file (that is not an error)."""
    try:
        return {"ice_servers": st.secrets["ice_servers"]} if "ice_servers" in st.secrets else None
    except Exception:  # no or unreadable secrets.toml: use the environment
        return None


def webcam(key: str, processor: FrameProcessor) -> WebRtcStreamerContext:
    """Show the START/STOP webcam widget; every frame goes through ``processor``.

    With no ICE servers configured, both ends use host candidates only: the browser and the
    app must then reach each other directly (same machine or LAN), and nothing is sent to a
    public STUN server.
    """
    try:
        config = rtc_configuration(get_ui_settings(), _secrets())
    except ValueError as error:
        st.error(f"ICE server settings are invalid ({error}); using none.")
        config = {"iceServers": []}
    return webrtc_streamer(
        key=key,
        mode=WebRtcMode.SENDRECV,
        rtc_configuration=config,
        video_frame_callback=processor,
        media_stream_constraints=constraints(get_ui_settings().video_width),
        async_processing=True,
    )


def landmarks_toggle(recognizer: Recognizer, key: str) -> bool:
    """A page's switch for drawing the hand's landmarks (models that read them only)."""
    return st.toggle(
        "Draw the hand's landmarks",
        value=True,
        key=key,
        disabled=recognizer.fused is None,
        help="The 21 points the model read on your hand, so you see what it saw "
        "(models with hand landmarks only).",
    )
