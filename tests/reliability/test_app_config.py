"""Reliability: the app's Streamlit settings refuse foreign host names and hide tracebacks.

Checked against this Streamlit's own option list and Host check, so an option it does not know
(misspelled, or renamed in a new version) fails here rather than being ignored.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit import config
from streamlit.web.server.starlette.starlette_websocket import is_host_allowed

CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"


def _settings() -> dict[str, Any]:
    with CONFIG.open("rb") as handle:
        sections = tomllib.load(handle)
    return {f"{s}.{k}": v for s, values in sections.items() for k, v in values.items()}


@pytest.fixture
def app_config() -> Iterator[dict[str, Any]]:
    """The project's settings applied to Streamlit's config; restored afterwards."""
    settings = _settings()
    before = {key: config.get_option(key) for key in settings}
    for key, value in settings.items():
        config.set_option(key, value)
    yield settings
    for key, value in before.items():
        config.set_option(key, value)


def test_every_setting_is_an_option_this_streamlit_knows() -> None:
    known = config.get_config_options()
    assert [key for key in _settings() if key not in known] == []


def test_a_rebound_host_name_is_refused_and_loopback_names_are_served(
    app_config: dict[str, Any],
) -> None:
    for host in ("attacker.example:8501", "attacker.example", "192.168.1.20:8501"):
        assert not is_host_allowed(host), host
    for host in ("127.0.0.1:8501", "localhost:8501", "[::1]:8501"):
        assert is_host_allowed(host), host


def test_uncaught_errors_show_no_message_or_traceback(app_config: dict[str, Any]) -> None:
    assert config.get_option("client.showErrorDetails") in ("type", "none")
