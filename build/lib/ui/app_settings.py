"""Settings of the web app (env prefix ``FINGERSPELL_UI_``) and its WebRTC ICE configuration.

The model and MLflow settings stay in :mod:`tasks.core.settings`; these are only what the pages
need.
ICE servers come from ``FINGERSPELL_UI_ICE_SERVERS`` (JSON) or Streamlit secrets
(``ice_servers``); with none, the app and the browser use host candidates only and never
contact a public STUN server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MB = 1024 * 1024


class UiSettings(BaseSettings):
    """What the pages start with; every value can be changed on the page where it matters."""

    model_config = SettingsConfigDict(env_prefix="FINGERSPELL_UI_", extra="ignore", frozen=True)

    ice_servers: str | None = Field(
        default=None,
        description='JSON list of RTCIceServer, e.g. [{"urls": "turn:host:3478", '
        '"username": "u", "credential": "p"}]. Empty: no STUN/TURN at all.',
    )
    hold_seconds: float = Field(
        default=0.8, ge=0.0, le=3.0, description="Default hold time (the sliders go to 3 s)."
    )
    min_confidence: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Default confidence threshold."
    )
    inference_threads: int = Field(
        default=1,
        ge=1,
        description="onnxruntime threads per recognition. One: each session's frames are "
        "recognized on that session's own thread, so sessions run side by side, and the VP8 "
        "codecs keep a core (two threads: ~10% more FPS for a single session on 2 cores).",
    )
    background_recognition: bool = Field(
        default=False,
        description="Return each webcam frame at once with the newest finished recognition "
        "drawn on it, and recognize a session's next frame whenever its last one is done: "
        "smooth video when several sessions share a small CPU, boxes about one recognition "
        "behind. Off: every returned frame is recognized first.",
    )
    background_threads: int | None = Field(
        default=None,
        ge=1,
        description="Threads all sessions' background recognitions share; default one fewer "
        "than the cores, so the video codecs keep one (on 2 cores and 4 sessions: 13-15 video "
        "FPS each with one thread, 10 with two).",
    )
    video_width: int = Field(
        default=640,
        ge=160,
        le=1920,
        description="Width asked of the browser's camera (ideal; 4:3 height follows). The "
        "detector letterboxes to its own size (256-320 px), so a smaller camera halves the "
        "video codec work per frame side; a two-stage model's classifier cuts the hand from "
        "the full frame, where a 128 px crop needs a hand at least that large.",
    )
    teach_frames: int = Field(
        default=8, ge=1, le=30, description="Frames kept per taught burst (a slider on Teach)."
    )
    teach_seconds: float = Field(
        default=2.0,
        gt=0.0,
        le=10.0,
        description="How long a burst lasts: its frames spread over this hold (slider on Teach).",
    )
    teach_hand_confidence: float = Field(
        default=0.25,
        ge=0.0,
        le=1.0,
        description="Default threshold for finding the hand on Teach (a slider there); lower "
        "than Live's, since the letter may be misread: only the hand must be found.",
    )
    personalize_minutes: float = Field(
        default=4.0,
        gt=0.0,
        le=60.0,
        description="Minutes per stage for Personalize's fine-tune (detector and classifier "
        "train side by side): 4 fits the 10-minute goal on 2 CPU cores.",
    )
    learner: str = Field(
        default="me",
        pattern=r"^[a-z0-9][a-z0-9-]{0,31}$",
        description="Default learner name on Teach: names the captures folder and the model "
        "alias personal-<learner>.",
    )
    max_upload_mb: int = Field(
        default=10, ge=1, description="Largest upload accepted (keep equal to maxUploadSize)."
    )
    max_image_side: int = Field(
        default=1920, ge=64, description="Uploaded images are downscaled to this longest side."
    )
    record_dir: Path | None = Field(
        default=None,
        description="Debugging: save every received webcam frame here, named by its top letter.",
    )
    max_image_pixels: int = Field(
        default=50_000_000, ge=1, description="Images with more pixels are refused undecoded."
    )

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes."""
        return self.max_upload_mb * MB


@lru_cache(maxsize=1)
def get_ui_settings() -> UiSettings:
    """Read the app's settings from the environment once per process."""
    return UiSettings()


def parse_ice_servers(raw: str | Sequence[Any] | None) -> list[dict[str, Any]]:
    """Validate ICE servers given as JSON text or an already parsed list.

    Args:
        raw: JSON text, a list of mappings (as Streamlit secrets give), or None.

    Returns:
        A list of ``{"urls": ..., "username"?: ..., "credential"?: ...}`` dicts; empty for None
        or blank text.

    Raises:
        ValueError: When the JSON is broken or an entry has no ``urls``.
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"ICE servers are not valid JSON: {error}") from error
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise ValueError("ICE servers must be a JSON list of objects with 'urls'")
    servers = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or not entry.get("urls"):
            raise ValueError(f"ICE server #{index + 1} needs 'urls' (a string or a list)")
        urls = entry["urls"]
        server: dict[str, Any] = {"urls": urls if isinstance(urls, str) else list(urls)}
        for key in ("username", "credential"):
            if key in entry:
                server[key] = str(entry[key])
        servers.append(server)
    return servers


def rtc_configuration(
    settings: UiSettings, secrets: Mapping[str, Any] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The RTCConfiguration for streamlit-webrtc (browser and server side).

    The environment wins over secrets. An explicit empty list matters: left out,
    streamlit-webrtc and aiortc would fall back to Google's public STUN server.
    """
    raw: Any = settings.ice_servers
    if raw is None and secrets is not None:
        raw = secrets.get("ice_servers")
    return {"iceServers": parse_ice_servers(raw)}
