"""Recipe trials as flow runs, for real: a Prefect server, an MLflow server, `prefect deploy`
of `trials/local` and `train-trial/local`, one process worker on a pool that runs three flow
runs at once, and `prefect deployment run 'trials/local' --watch` with two smoke trials.

The trials run fans both trainings out as runs of `train-trial/local`; the worker picks both
up; their MLflow runs nest under the trials run; the summary comes from MLflow (valid only).
Only the PIDs started here are signalled. Timings are printed and kept as properties.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from support.servers import BIN, REPO, free_port, run_command, start_server, stop, wait_http

from tasks.registry.models import MODEL_NAME
from tasks.training.recipe_trials import FLOW_RUN_TAG, GROUP_TAG, TRIAL_TAG, summarize

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXPERIMENT = "e2e-trials"
GROUP = "e2e"
TRIALS = [{"name": "base"}, {"name": "imgsz-96", "changes": {"imgsz": 96}}]


def _api(api: str, path: str, body: dict[str, Any] | None = None) -> Any:
    with httpx.Client(base_url=api, timeout=30) as client:
        return client.post(path, json=body or {}).json()


@pytest.fixture(scope="module")
def trials(
    tmp_path_factory: pytest.TempPathFactory, subset_dataset: Path
) -> Iterator[dict[str, Any]]:
    """Servers, pool, deployments and a worker; one trials run through them; what it left."""
    root = tmp_path_factory.mktemp("trials-stack")
    timings: dict[str, float] = {}
    prefect_port, mlflow_port = free_port(), free_port()
    api, mlflow_uri = f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}"
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
    env = {k: v for k, v in {**os.environ, **env}.items() if not k.startswith("MLFLOW_TRACKING_")}
    started = time.monotonic()
    prefect = start_server(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
         "--port", str(prefect_port)],
        root / "prefect-server.log", env=env,
    )  # fmt: skip
    mlflow = start_server(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "mlartifacts")],
        root / "mlflow-server.log", env=env,
    )  # fmt: skip
    server_log, worker_log = root / "prefect-server.log", root / "worker.log"
    try:
        wait_http(f"{api}/health", prefect, timeout=180, log=server_log)
        wait_http(f"{mlflow_uri}/health", mlflow, timeout=180, log=root / "mlflow-server.log")
        timings["servers_up_s"] = time.monotonic() - started
        run_command(
            [sys.executable, "deployments/create_pools.py", "--local-only"], env, 120, server_log
        )
        # The trials run holds one slot of the pool, each trial one more.
        limit = ["work-pool", "set-concurrency-limit", "local-process", "3"]
        run_command([str(BIN / "prefect"), *limit], env, 60, server_log)
        worker = start_server(
            [str(BIN / "prefect"), "worker", "start", "--pool", "local-process",
             "--type", "process", "--name", "e2e-trials-worker"],
            worker_log, env=env,
        )  # fmt: skip
        try:
            started = time.monotonic()
            # `prefect deploy -n` matches the entrypoint's function name, not the flow's name.
            deploy = ["--no-prompt", "deploy", "-n", "trials_flow/local", "-n", "trial_flow/local"]
            run_command([str(BIN / "prefect"), *deploy], env, 300, server_log)
            timings["deploy_s"] = time.monotonic() - started
            started = time.monotonic()
            output = run_command(
                [str(BIN / "prefect"), "deployment", "run", "trials/local", "--params",
                 json.dumps(_params(subset_dataset)), "--watch", "--watch-timeout", "600"],
                env, 660, worker_log,
            )  # fmt: skip
            timings["trials_run_s"] = time.monotonic() - started
        finally:
            stop(worker, signal.SIGINT, timeout=60)  # SIGINT: the worker's graceful stop
        yield {"api": api, "mlflow": mlflow_uri, "output": output, "timings": timings,
               "worker_log": worker_log.read_text()}  # fmt: skip
    finally:
        stop(prefect)
        stop(mlflow)


def _params(dataset: Path) -> dict[str, Any]:
    """Two smoke trials on the subset as it is (no augmentation: ~20 s less), checked every 2 s."""
    return {
        "params": {
            "group": GROUP, "profile": "smoke", "trials": TRIALS, "poll_seconds": 2,
            "data": {"source": str(dataset), "augment": {"copies": 0}},
        }
    }  # fmt: skip


def _deployment_id(api: str, name: str) -> str:
    flow, deployment = name.split("/")
    [found] = _api(api, "/deployments/filter", {"deployments": {"name": {"any_": [deployment]}},
                                                "flows": {"name": {"any_": [flow]}}})  # fmt: skip
    return found["id"]


def test_trials_fan_out_to_the_pool_and_nest_in_mlflow(
    trials: dict[str, Any], record_property: Any
) -> None:
    api, output = trials["api"], trials["output"]
    assert "finished successfully" in output and "Completed" in output, output[-2000:]
    runs = _api(api, "/flow_runs/filter")
    [parent] = [r for r in runs if r["deployment_id"] == _deployment_id(api, "trials/local")]
    assert parent["state_type"] == "COMPLETED"
    children = [r for r in runs if r["deployment_id"] == _deployment_id(api, "train-trial/local")]
    assert sorted(r["name"] for r in children) == [f"{GROUP}-base", f"{GROUP}-imgsz-96"]
    for child in children:
        assert child["state_type"] == "COMPLETED", child["state_name"]
        assert child["work_pool_name"] == "local-process"
        assert child["parent_task_run_id"] is not None, "a subflow of the trials run"
        assert child["id"] in trials["worker_log"], "the pool's worker ran it"
        assert child["parameters"]["params"]["profile"] == "smoke"

    client = MlflowClient(tracking_uri=trials["mlflow"], registry_uri=trials["mlflow"])
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    [top] = client.search_runs([experiment], f"tags.{GROUP_TAG} = '{GROUP}'")
    assert top.info.run_name == f"trials-{GROUP}" and top.info.status == "FINISHED"
    assert top.data.tags[FLOW_RUN_TAG] == parent["id"]
    trial_runs = client.search_runs(
        [experiment], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{top.info.run_id}'"
    )
    by_flow_run = {r.data.tags[FLOW_RUN_TAG]: r for r in trial_runs}
    assert set(by_flow_run) == {c["id"] for c in children}, "one trial run per flow run"
    for child in children:
        trial_run = by_flow_run[child["id"]]
        assert child["parameters"]["parent_run_id"] == trial_run.info.run_id
        nested = client.search_runs(
            [experiment], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{trial_run.info.run_id}'"
        )
        names = {r.data.tags[MLFLOW_RUN_NAME] for r in nested}
        assert {"train", "evaluate"} <= names, names
        [evaluate] = [r for r in nested if r.data.tags[MLFLOW_RUN_NAME] == "evaluate"]
        assert 0 <= evaluate.data.metrics["valid_top1"] <= 1
        assert trial_run.data.tags[TRIAL_TAG] == child["name"].removeprefix(f"{GROUP}-")

    for key, value in trials["timings"].items():
        record_property(key, round(value, 1))
    print(
        "\ntrials e2e timings:", json.dumps({k: round(v, 1) for k, v in trials["timings"].items()})
    )


def test_the_summary_comes_from_mlflow_and_reads_valid_only(trials: dict[str, Any]) -> None:
    client = MlflowClient(tracking_uri=trials["mlflow"], registry_uri=trials["mlflow"])
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    [top] = client.search_runs([experiment], f"tags.{GROUP_TAG} = '{GROUP}'")
    rows = [row.model_dump() for row in summarize(client, top.info.run_id)]
    assert {r["trial"] for r in rows} == {t["name"] for t in TRIALS}
    for row in rows:
        evaluate = client.get_run(row["evaluate_run_id"]).data.metrics
        for key in ("valid_top1", "valid_top1_low", "valid_top1_high", "valid_map50"):
            assert row[key] == evaluate[key], key
        assert row["valid_top1_low"] <= row["valid_top1"] <= row["valid_top1_high"]
        assert row["state"] == "COMPLETED" and row["minutes"] > 0
    logged = json.loads(Path(client.download_artifacts(top.info.run_id, "trials.json")).read_text())
    assert logged == rows, "the parent run's trials.json is the summary"
    artifacts = _api(trials["api"], "/artifacts/filter")
    [table] = [a for a in artifacts if a["key"] == f"trials-{GROUP}"]
    assert json.loads(table["data"]) == rows
    [markdown] = [a for a in artifacts if a["key"] == f"trials-{GROUP}-summary"]
    # The subset has one valid image per letter: one image is 100/26 points.
    assert "valid has 26 images, so one image is 3.8 points" in markdown["data"]


def test_trials_leave_champion_alone(trials: dict[str, Any]) -> None:
    client = MlflowClient(tracking_uri=trials["mlflow"], registry_uri=trials["mlflow"])
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(MODEL_NAME, "champion")
