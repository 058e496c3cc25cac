"""App settings and the WebRTC ICE configuration (no STUN unless configured)."""

from __future__ import annotations

import json

import pytest

from ui.app_settings import UiSettings, parse_ice_servers, rtc_configuration

TURN = [{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}]


def test_without_ice_servers_no_stun_is_used():
    assert rtc_configuration(UiSettings()) == {"iceServers": []}
    assert rtc_configuration(UiSettings(), secrets={}) == {"iceServers": []}


def test_ice_servers_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FINGERSPELL_UI_ICE_SERVERS", json.dumps(TURN))
    assert rtc_configuration(UiSettings()) == {"iceServers": TURN}


def test_ice_servers_from_streamlit_secrets_when_the_environment_has_none():
    secrets = {"ice_servers": [{"urls": "stun:stun.example.org:3478"}]}
    assert rtc_configuration(UiSettings(), secrets) == {
        "iceServers": [{"urls": "stun:stun.example.org:3478"}]
    }
    explicit = UiSettings(ice_servers=json.dumps(TURN))
    assert rtc_configuration(explicit, secrets) == {"iceServers": TURN}, "environment wins"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[{", "not valid JSON"),
        ('{"urls": "turn:x"}', "must be a JSON list"),
        ('[{"username": "u"}]', "ICE server #1 needs 'urls'"),
    ],
)
def test_broken_ice_servers_are_reported(raw: str, message: str):
    with pytest.raises(ValueError, match=message):
        parse_ice_servers(raw)


def test_ui_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FINGERSPELL_UI_HOLD_SECONDS", "1.5")
    monkeypatch.setenv("FINGERSPELL_UI_MAX_UPLOAD_MB", "4")
    settings = UiSettings()
    assert settings.hold_seconds == 1.5 and settings.max_upload_bytes == 4 * 1024 * 1024
    monkeypatch.setenv("FINGERSPELL_UI_MIN_CONFIDENCE", "2")
    with pytest.raises(ValueError, match="min_confidence"):
        UiSettings()


def test_streamlit_config_matches_the_upload_limit():
    import tomllib
    from pathlib import Path

    config = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"
    server = tomllib.loads(config.read_text())["server"]
    assert server["address"] == "127.0.0.1"
    assert server["maxUploadSize"] == UiSettings().max_upload_mb


def test_camera_size_asked_of_the_browser_follows_the_setting(monkeypatch: pytest.MonkeyPatch):
    from ui.webcam import constraints

    assert UiSettings().video_width == 640
    monkeypatch.setenv("FINGERSPELL_UI_VIDEO_WIDTH", "320")
    width = UiSettings().video_width
    assert constraints(width) == {
        "video": {"width": {"ideal": 320}, "height": {"ideal": 240}, "frameRate": {"ideal": 30}},
        "audio": False,
    }
    monkeypatch.setenv("FINGERSPELL_UI_VIDEO_WIDTH", "100")
    with pytest.raises(ValueError, match="video_width"):
        UiSettings()
