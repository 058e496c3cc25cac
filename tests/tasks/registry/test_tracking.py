"""The one MLflow set-up: store and registry URIs, the experiment, reachability and retries."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from support.mlflow_state import mlflow_uris_restored

from tasks.registry.tracking import (
    TrackingUnavailable,
    check_reachable,
    client_for,
    configure_mlflow,
    connect,
    with_retries,
)


@pytest.fixture
def restore_mlflow_uris() -> Iterator[None]:
    """These functions set mlflow's process-wide URIs; put back what other tests had."""
    with mlflow_uris_restored():
        yield


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Forbidden(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(403)  # a server that wants credentials still answers
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Forbidden)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_configure_connect_and_client_for_point_mlflow_at_one_store(
    tmp_path: Path, restore_mlflow_uris: None
):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    root = (tmp_path / "artifacts").as_uri() + "/"
    first = configure_mlflow(uri, "exp", root)
    assert configure_mlflow(uri, "exp", None) == first  # found, not created again
    assert mlflow.get_tracking_uri() == uri and mlflow.get_registry_uri() == uri
    experiment = mlflow.MlflowClient().get_experiment(first)
    assert experiment.artifact_location == (tmp_path / "artifacts").as_uri() + "/exp"

    client, experiment_id = connect(uri, "other", None)  # a sqlite store is never probed
    assert client.get_experiment(experiment_id).name == "other"

    mlflow.set_tracking_uri("sqlite:///elsewhere.db")
    client = client_for(uri)
    assert client.tracking_uri == uri and client._registry_uri == uri
    assert mlflow.get_tracking_uri() == uri and mlflow.get_registry_uri() == uri


def test_a_store_that_is_a_file_is_not_probed():
    check_reachable("sqlite:////nowhere/mlflow.db", waits=())
    check_reachable("databricks", waits=())


def test_any_http_answer_counts_as_up(answering_server: str):
    check_reachable(answering_server, timeout=5, waits=())


def test_a_dead_server_fails_early_naming_it_without_credentials():
    uri = f"http://user:s3cret@127.0.0.1:{_free_port()}"
    with pytest.raises(TrackingUnavailable) as error:
        check_reachable(uri, timeout=1, waits=(0,))
    message = str(error.value)
    assert "does not answer (ConnectionError)" in message
    assert f"127.0.0.1:{uri.rsplit(':', 1)[1]}" in message
    assert "s3cret" not in message and "FINGERSPELL_MLFLOW_TRACKING_URI" in message


def test_with_retries_tries_again_then_succeeds(caplog: pytest.LogCaptureFixture):
    outcomes: list[Exception | str] = [RuntimeError("database is locked\nmore"), "done"]

    def action() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    with caplog.at_level(logging.WARNING, logger="tasks.registry.tracking"):
        assert with_retries(action, "register", waits=(0, 0)) == "done"
    assert "register failed (RuntimeError: database is locked); trying again" in caplog.text


def test_with_retries_raises_the_last_failure():
    calls: list[int] = []

    def action() -> None:
        calls.append(1)
        raise ValueError(f"failure {len(calls)}")

    with pytest.raises(ValueError, match="failure 3"):
        with_retries(action, "log", waits=(0, 0))
    assert len(calls) == 3  # one try per wait, and the last
