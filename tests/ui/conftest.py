"""Fixtures for the app's tests: an MLflow store with a smoke champion, or none at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.core.settings import get_settings
from tasks.evaluation.evaluate import evaluate
from tasks.evaluation.report import EvalReport
from ui.app_settings import get_ui_settings


@pytest.fixture(scope="session")
def smoke_report(smoke_weights: Path, subset_dataset: Path, tmp_path_factory) -> EvalReport:
    """A real evaluation of the smoke weights on the subset's test split (per letter, plot)."""
    import yaml

    # The subset's data.yaml says `path: .`, which ultralytics resolves against the cwd.
    root = tmp_path_factory.mktemp("smoke-eval")
    config = yaml.safe_load((subset_dataset / "data.yaml").read_text())
    config["path"] = str(subset_dataset)
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump(config))
    return evaluate(smoke_weights, data, "test", root, imgsz=320)


@pytest.fixture(scope="session")
def smoke_store(
    smoke_weights: Path, smoke_onnx: Path, smoke_report: EvalReport, tmp_path_factory
) -> str:
    """A sqlite MLflow store holding the smoke model as champion v1 (and v2 unaliased)."""
    from support.model_store import register_model

    root = tmp_path_factory.mktemp("ui-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = (root / "artifacts").as_uri()
    register_model(uri, smoke_weights, smoke_onnx, [smoke_report], artifact_root=artifacts)
    register_model(uri, smoke_weights, smoke_onnx, alias=None, artifact_root=artifacts)
    return uri


def _isolate(patch: pytest.MonkeyPatch, tmp_path: Path, tracking_uri: str) -> None:
    import streamlit as st

    patch.setenv("FINGERSPELL_MLFLOW_TRACKING_URI", tracking_uri)
    patch.setenv("FINGERSPELL_HOME", str(tmp_path / "home"))
    patch.setenv("HOME", str(tmp_path))  # the recognizer's download cache lives under ~
    patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    get_settings.cache_clear()
    get_ui_settings.cache_clear()
    # Streamlit's caches are process-wide without a server: each test starts empty.
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def app_env(smoke_store: str, tmp_path: Path) -> Iterator[str]:
    """Settings pointing at the smoke store; restored afterwards."""
    import mlflow

    before = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:
        _isolate(patch, tmp_path, smoke_store)
        yield smoke_store
    mlflow.set_tracking_uri(before)
    mlflow.set_registry_uri(before)
    get_settings.cache_clear()
    get_ui_settings.cache_clear()


@pytest.fixture
def empty_env(tmp_path: Path) -> Iterator[str]:
    """Settings pointing at a sqlite store that does not exist yet."""
    uri = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        _isolate(patch, tmp_path, uri)
        yield uri
    get_settings.cache_clear()


@pytest.fixture
def fake_webcam(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Stand in for the streamlit-webrtc widget, which needs a browser and a real server.

    The browser test covers the real widget; here the page gets a context whose ``playing``
    the test sets, and the test calls the frame processor the page registered.
    """
    import ui.webcam

    context = SimpleNamespace(state=SimpleNamespace(playing=False), processors={})

    def webrtc_streamer(*, key: str, video_frame_callback, **_kwargs) -> SimpleNamespace:
        context.processors[key] = video_frame_callback
        context.rtc_configuration = _kwargs.get("rtc_configuration")
        return context

    monkeypatch.setattr(ui.webcam, "webrtc_streamer", webrtc_streamer)
    return context
