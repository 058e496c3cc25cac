"""The scheduled path for real: prefect server, MLflow server, `prefect deploy`, a process
worker, and `prefect deployment run ... --watch` of the smoke pipeline.

Everything runs on 127.0.0.1 with its state under the test's temp folder (PREFECT_HOME, the
sqlite databases, FINGERSPELL_HOME). Only the PIDs started here are signalled: servers get
SIGTERM, the worker SIGINT (its graceful stop). Timings are printed and kept as properties.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient
from support.servers import BIN, REPO, free_port, run_command, start_server, stop, wait_http

from tasks.registry.models import MODEL_NAME

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOCAL_DEPLOYMENTS = {
    "data/local",
    "train/local",
    "pipeline/local",
    "predict/local",
    "personalize/local",
    "trials/local",
    "train-trial/local",
}
EXPERIMENT = "e2e-prefect"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A prefect server and an MLflow server of this module's own, and the env to reach them."""
    root = tmp_path_factory.mktemp("prefect-stack")
    timings: dict[str, float] = {}
    prefect_port, mlflow_port = free_port(), free_port()
    api = f"http://127.0.0.1:{prefect_port}/api"
    mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
    env = {
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "FINGERSPELL_HOME": str(root / "home"),
        "FINGERSPELL_MLFLOW_TRACKING_URI": mlflow_uri,
        "FINGERSPELL_EXPERIMENT": EXPERIMENT,
        "PWD": str(REPO),  # the local pull step is `{{ $PWD }}`: this checkout
    }
    # MLFLOW_TRACKING_* of another test must not redirect the flows: ours say where to log.
    full_env = {
        k: v for k, v in {**os.environ, **env}.items() if not k.startswith("MLFLOW_TRACKING_")
    }
    started = time.monotonic()
    prefect = start_server(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
         "--port", str(prefect_port)],
        root / "prefect-server.log",
        env=full_env,
    )  # fmt: skip
    mlflow = start_server(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "mlartifacts")],
        root / "mlflow-server.log",
        env=full_env,
    )  # fmt: skip
    try:
        wait_http(f"{api}/health", prefect, timeout=180, log=root / "prefect-server.log")
        timings["prefect_server_start_s"] = time.monotonic() - started
        wait_http(f"{mlflow_uri}/health", mlflow, timeout=180, log=root / "mlflow-server.log")
        timings["servers_up_s"] = time.monotonic() - started
        yield {"root": root, "env": full_env, "api": api, "mlflow": mlflow_uri, "timings": timings}
    finally:
        stop(prefect)
        stop(mlflow)


def _deployment_names(api: str) -> set[str]:
    with httpx.Client(base_url=api, timeout=30) as client:
        flows = {f["id"]: f["name"] for f in client.post("/flows/filter", json={}).json()}
        deployments = client.post("/deployments/filter", json={}).json()
    return {f"{flows[d['flow_id']]}/{d['name']}" for d in deployments}


def _flow_runs(api: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=api, timeout=30) as client:
        return client.post("/flow_runs/filter", json={}).json()


def _run_pipeline(params: dict[str, Any], env: dict[str, str], log: Path) -> str:
    return run_command(
        [str(BIN / "prefect"), "deployment", "run", "pipeline/local",
         "--params", json.dumps(params), "--watch", "--watch-timeout", "600"],
        env, 660, log,
    )  # fmt: skip


def test_deploy_and_run_smoke_pipeline_through_a_worker(
    stack: dict[str, Any], subset_dataset: Path, record_property: Any
) -> None:
    env, root, timings = stack["env"], stack["root"], stack["timings"]
    server_log = root / "prefect-server.log"
    run_command(
        [sys.executable, "deployments/create_pools.py", "--local-only"], env, 120, server_log
    )

    # The worker boots while `prefect deploy` runs, as with `make serve`.
    worker_log = root / "worker.log"
    worker = start_server(
        [str(BIN / "prefect"), "worker", "start", "--pool", "local-process",
         "--type", "process", "--name", "e2e-worker"],
        worker_log,
        env=env,
    )  # fmt: skip
    params = {
        "params": {
            "profile": "smoke",
            "data": {"source": str(subset_dataset), "augment": {"copies": 1}},
        }
    }
    try:
        started = time.monotonic()
        run_command(
            [str(BIN / "prefect"), "--no-prompt", "deploy", "-n", "local"], env, 300, server_log
        )
        timings["deploy_s"] = time.monotonic() - started
        assert _deployment_names(stack["api"]) == LOCAL_DEPLOYMENTS, "only the local ones"
        started = time.monotonic()
        output = _run_pipeline(params, env, worker_log)
        timings["run_s"] = time.monotonic() - started
        runs = _flow_runs(stack["api"])
        # The weekly retraining on unchanged data: it runs, trains nothing, registers nothing.
        started = time.monotonic()
        unchanged = _run_pipeline(params, env, worker_log)
        timings["unchanged_run_s"] = time.monotonic() - started
    finally:
        # SIGINT is the worker's graceful stop; then make sure it is gone.
        stop(worker, signal.SIGINT, timeout=60)
    assert "finished successfully" in output and "Completed" in output, output[-2000:]

    parent = next(r for r in runs if r["deployment_id"] is not None)
    assert parent["state_type"] == "COMPLETED"
    assert parent["work_pool_name"] == "local-process"
    assert parent["parameters"]["params"]["profile"] == "smoke"
    assert sorted(r["state_type"] for r in runs) == ["COMPLETED"] * 3, "pipeline, data, train"
    scheduled = datetime.fromisoformat(parent["expected_start_time"])
    begun = datetime.fromisoformat(parent["start_time"])
    timings["worker_pickup_s"] = (begun - scheduled).total_seconds()
    timings["flow_run_s"] = parent["total_run_time"]
    assert str(parent["id"]) in worker_log.read_text(), "this worker ran it"

    # Both URIs: an earlier test may have set a process-wide registry URI elsewhere.
    client = MlflowClient(tracking_uri=stack["mlflow"], registry_uri=stack["mlflow"])
    versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    assert len(versions) == 1, "exactly one new version registered by the run"
    version = versions[0]
    assert version.tags["profile"] == "smoke"
    experiment = client.get_experiment_by_name(EXPERIMENT)
    train = client.get_run(version.tags["train_run_id"])
    assert train.info.experiment_id == experiment.experiment_id
    assert train.info.status == "FINISHED"
    assert client.get_model_version_by_alias(MODEL_NAME, "champion").version == version.version

    assert "Completed" in unchanged, unchanged[-2000:]
    assert len(client.search_model_versions(f"name='{MODEL_NAME}'")) == 1, "nothing registered"

    for key, value in timings.items():
        record_property(key, round(value, 1))
    print("\nprefect e2e timings:", json.dumps({k: round(v, 1) for k, v in timings.items()}))
    (root / "timings.json").write_text(json.dumps(timings))
