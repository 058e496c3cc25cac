"""The webcam widget both video pages use: streamlit-webrtc with our ICE settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st
from streamlit_webrtc import WebRtcMode, WebRtcStreamerContext, webrtc_streamer

from ui.app_settings import get_ui_settings, rtc_configuration
from ui.video import FrameProcessor

# 640×480 is what the recognizer needs (it letterboxes to 320 px) and what 2 cores can encode.
CONSTRAINTS = {
    "video": {"width": {"ideal": 640}, "height": {"ideal": 480}, "frameRate": {"ideal": 30}},
    "audio": False,
}


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
        media_stream_constraints=CONSTRAINTS,
        async_processing=True,
    )
