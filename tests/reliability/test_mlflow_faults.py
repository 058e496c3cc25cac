"""MLflow faults: down at start, killed mid-training, down while registering, no champion.

The servers are real ``mlflow server`` processes on 127.0.0.1, killed with SIGKILL and started
again on the same port and store, as a crashed and restarted tracking server would be.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from support.servers import BIN, free_port, start_server, stop, wait_http

from tasks.core.records import ModelVersion
from tasks.inference.recognizer import Recognizer
from tasks.registry import tracking
from tasks.registry.models import CHAMPION, MODEL_NAME, get_version
from tasks.registry.promotion import decide_promotion
from tasks.registry.tracking import (
    TrackingUnavailable,
    check_reachable,
    client_for,
    connect,
    with_retries,
)
from tasks.training import ultralytics_hooks
from tasks.training.detector import TrainConfig, train

# The registry checks only that a version's source is not a bare local path.
SOURCE = "s3://fingerspell-tests/model"


class Server:
    """One ``mlflow server`` that a test can kill and start again on the same port and store."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: Any = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.root / f"server-{self.starts}.log"
        self.process = start_server(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", str(self.root / "artifacts")],
            log,
        )  # fmt: skip
        wait_http(f"{self.uri}/health", self.process, timeout=120, log=log)

    def kill(self) -> None:
        stop(self.process, signal.SIGKILL)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    # MLflow's client would retry each request for minutes; the faults here are long ones.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    running = Server(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.kill()
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


def test_mlflow_down_at_start_fails_fast_naming_the_server(monkeypatch: pytest.MonkeyPatch):
    waited: list[float] = []
    monkeypatch.setattr(tracking.time, "sleep", waited.append)  # the waits, not slept here
    port = free_port()  # nothing listens there
    uri = f"http://trainer:FAKEPASS123@127.0.0.1:{port}"
    started = time.monotonic()

    with pytest.raises(TrackingUnavailable) as caught:
        connect(uri, "fingerspell", None)

    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "FINGERSPELL_MLFLOW_TRACKING_URI" in message
    assert "FAKEPASS123" not in message
    assert time.monotonic() - started < 60, "it must not retry for minutes"
    assert sum(waited) <= 10, "a server just starting gets a few seconds, not minutes"


def test_a_sqlite_store_needs_no_server(tmp_path: Path):
    check_reachable(f"sqlite:///{tmp_path / 'mlflow.db'}")  # a file: nothing to reach


def test_no_champion_is_a_clear_error_not_a_traceback(tmp_path: Path):
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        client = client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
        for registered in (False, True):  # no model at all; a model without the alias
            if registered:
                client.create_registered_model(MODEL_NAME)
            with pytest.raises(FileNotFoundError, match=r"holds alias 'champion'.*make demo"):
                Recognizer.load(f"models:/{MODEL_NAME}@champion", cache_dir=tmp_path / "cache")
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


@pytest.mark.slow
@pytest.mark.e2e
def test_mlflow_killed_mid_training_the_training_finishes_and_catches_up(
    server: Server, subset_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    client = client_for(server.uri)
    experiment = client.create_experiment("faults")
    run_id = client.create_run(experiment).info.run_id
    attach = ultralytics_hooks.MlflowLogger.attach

    def fault(trainer: Any) -> None:
        if trainer.epoch == 0:
            server.kill()  # after epoch 0 was logged
        elif trainer.epoch == 1:
            server.start()  # epoch 1's values are pending now

    def attach_with_fault(self: Any, model: Any) -> None:
        attach(self, model)
        model.add_callback("on_fit_epoch_end", fault)

    monkeypatch.setattr(ultralytics_hooks.MlflowLogger, "attach", attach_with_fault)
    config = TrainConfig(
        model="yolo11n.yaml", imgsz=64, epochs=3, batch=16, workers=0, patience=0,
        overrides={"plots": False},
    )  # fmt: skip
    data_yaml = subset_yaml

    result = train(data_yaml, "subset", config, tmp_path / "runs", mlflow_run_id=run_id)

    assert server.starts == 2, "the server was killed and started again mid-training"
    assert result.epochs_completed == 3 and result.best.exists()
    history = MlflowClient(server.uri).get_metric_history(run_id, "train/box_loss")
    assert sorted(m.step for m in history) == [0, 1, 2], "epoch 1 was sent once it was back"


@pytest.mark.slow
@pytest.mark.e2e
def test_registration_waits_for_mlflow_and_a_down_registry_never_moves_an_alias(
    server: Server, tmp_path: Path
):
    client = client_for(server.uri)
    client.create_registered_model(MODEL_NAME)
    champion = client.create_model_version(MODEL_NAME, SOURCE)
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, champion.version)
    server.kill()

    # A gate that cannot read the champion must fail, not take "no answer" for "no champion".
    candidate = ModelVersion(name=MODEL_NAME, version="2")
    with pytest.raises(Exception, match=r"127\.0\.0\.1"):
        decide_promotion(candidate, {"a.jpg": True}, 0.05, lambda v: {"a.jpg": False})

    back = threading.Timer(3.0, server.start)
    back.start()
    try:
        version = with_retries(
            lambda: client.create_model_version(MODEL_NAME, SOURCE),
            "registering the model",
            waits=(2.0, 5.0, 10.0, 20.0, 40.0),
        )
    finally:
        back.join()

    assert version.version == "2"
    assert get_version(CHAMPION).version == champion.version, "the alias stayed"
    assert len(client.search_model_versions(f"name='{MODEL_NAME}'")) == 2
