"""Params and tags written through ``tasks.registry.mlflow_runs`` never hold URL credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.entities import Param, RunTag

from tasks.core.settings import Settings
from tasks.registry import mlflow_runs
from tasks.registry.clients import RedactingClient
from tasks.registry.tracking import connect

SIGNED = "https://storage.googleapis.com/b/asl.zip?X-Goog-Signature=FAKESIG123&alt=media"
REDACTED = "https://storage.googleapis.com/b/asl.zip?X-Goog-Signature=***&alt=media"
TRACKING = "https://ann:FAKEPASS456@mlflow.example.com"


@pytest.fixture
def store(tmp_path: Path):
    settings = Settings(home=tmp_path, experiment="redaction")
    client, experiment_id = connect(
        settings.tracking_uri, settings.experiment, settings.artifact_root
    )
    assert isinstance(client, RedactingClient)
    return client, experiment_id


def test_helpers_and_client_redact_params_and_tags(store):
    client, experiment_id = store
    with mlflow_runs.run(client, experiment_id, "data", tags={"source": SIGNED}) as run_id:
        mlflow_runs.log_params(client, run_id, {"source": SIGNED, "n": 3})
        mlflow_runs.set_tag(client, run_id, "tracking", TRACKING)
        # Direct client calls, as flows/train.py makes them, are redacted by the client.
        client.set_tag(run_id, "direct", SIGNED)
        client.log_param(run_id, "direct", TRACKING)
        client.log_batch(run_id, params=[Param("batch", SIGNED)], tags=[RunTag("batch", TRACKING)])
        mlflow_runs.log_json(client, run_id, "doc.json", {"uri": SIGNED})
    run = client.get_run(run_id)
    assert run.data.params == {
        "source": REDACTED,
        "n": "3",
        "direct": "https://ann:***@mlflow.example.com",
        "batch": REDACTED,
    }
    tags = run.data.tags
    assert tags["source"] == tags["direct"] == REDACTED
    assert tags["tracking"] == tags["batch"] == "https://ann:***@mlflow.example.com"
    text = Path(client.download_artifacts(run_id, "doc.json")).read_text()
    assert REDACTED in text and "FAKESIG123" not in text
