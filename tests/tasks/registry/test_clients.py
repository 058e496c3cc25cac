"""MLflow credentials come from Prefect Secret blocks, never from a job's plain environment."""

from __future__ import annotations

import os
import uuid

import pytest
from prefect.blocks.system import Secret

from tasks.registry import clients


def test_tracking_credentials_from_secret_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    names = {
        variable: f"{block}-{uuid.uuid4().hex[:8]}"
        for variable, block in clients.TRACKING_SECRET_BLOCKS.items()
    }
    monkeypatch.setattr(clients, "TRACKING_SECRET_BLOCKS", names)
    for variable in names:
        # setenv first, so that undoing restores "unset" after the flow code set it.
        monkeypatch.setenv(variable, "")
        monkeypatch.delenv(variable)
    Secret(value="s3cret-token").save(names["MLFLOW_TRACKING_TOKEN"])
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "set-by-user")

    assert clients.load_tracking_credentials("sqlite:///x.db") == [], "no server, no secrets"
    assert clients.load_tracking_credentials("https://mlflow.example.com") == [
        "MLFLOW_TRACKING_TOKEN"
    ]
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "s3cret-token"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "set-by-user", "the environment wins"
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ, "a missing block sets nothing"
