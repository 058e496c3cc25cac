"""The team stack for real: PostgreSQL, Prefect and MLflow servers on it, two process workers.

One stack for the module (``deployments/team/team_stack.py up``, as a user starts it), on free
ports, its state under the test's temp folder. The tests, in order: two smoke trainings and a
data flow started at once run on both workers and register two versions, the champion alias
moved only by the gate; a training killed with SIGKILL crashes and its rerun completes while
another training outlives a restart of the MLflow server; no credential anywhere. Timings are
printed, never asserted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient
from support.servers import BIN, free_port
from support.team import REPO, Prefect, flow_pid, team_postgres, team_stack

from tasks.registry.gate_lock import GATE_LIMIT
from tasks.registry.models import CHAMPION, MODEL_NAME, RECIPE_TAG

# For users with Docker; checked statically here (no Docker engine on this machine or CI).
COMPOSE = REPO / "deployments" / "team" / "compose.yaml"

EXPERIMENT = "e2e-team"
# Stand-ins for a team's MLflow credentials in the workers' environment: never to be stored.
MLFLOW_PASSWORD = "FAKETEAMPASS314"
RUN_TIMEOUT = 600


def _postgres_or_skip() -> None:
    try:
        team_postgres.find_bindir()
    except team_postgres.PostgresMissing as missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} (.ci/run installs it)")
        pytest.skip(str(missing))


@pytest.fixture(scope="module")
def team(
    tmp_path_factory: pytest.TempPathFactory, subset_dataset: Path, shared_weights: Path
) -> Iterator[dict[str, Any]]:
    """The stack, its clients, and the subset as a dataset the data flow built."""
    _postgres_or_skip()
    root = tmp_path_factory.mktemp("team")
    ports = {"postgres": free_port(), "prefect": free_port(), "mlflow": free_port()}
    timings: dict[str, float] = {}
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEAM_PREFECT_UI", "false")
        for key in [k for k in os.environ if k.startswith("MLFLOW_TRACKING_")]:
            patch.delenv(key)
        workers = {
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "MLFLOW_TRACKING_USERNAME": "team",
            "MLFLOW_TRACKING_PASSWORD": MLFLOW_PASSWORD,
        }
        info = team_stack.up(root / "state", ports, root / "home", None, EXPERIMENT, workers)
    state = Path(info["state"])
    prefect = Prefect(info["prefect_api"])
    try:
        timings["stack_up_s"] = time.monotonic() - started
        env = team_stack.client_env(info)
        started = time.monotonic()
        # The first dataset from the CLI, a flow run on the same server (no worker needed).
        done = subprocess.run(
            [str(BIN / "fingerspell"), "data", "--source", str(subset_dataset),
             "--augment.copies", "0"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        dataset = json.loads(done.stdout[done.stdout.index("{") :])
        timings["first_dataset_s"] = time.monotonic() - started
        yield {
            "info": info,
            "state": state,
            "prefect": prefect,
            "mlflow": MlflowClient(info["mlflow_url"], registry_uri=info["mlflow_url"]),
            "dataset": {"id": dataset["id"], "uri": dataset["uri"]},
            "source": str(subset_dataset),
            "timings": timings,
        }
    finally:
        prefect.close()
        started = time.monotonic()
        team_stack.down(state)
        cluster = team_postgres.cluster_dir(state)  # outside the temp folder under root
        if cluster != state / "postgres":
            for folder in (cluster, cluster.parent / f"{cluster.name}-run"):
                shutil.rmtree(folder, ignore_errors=True)
        print(f"\nteam stack down in {time.monotonic() - started:.1f} s")
        print("team stack timings:", json.dumps({k: round(v, 1) for k, v in timings.items()}))


def _train(team: dict[str, Any], seed: int) -> dict[str, Any]:
    """Smoke training params whose recipe differs by ``seed`` (a version of its own)."""
    return {
        "dataset": team["dataset"],
        "profile": "smoke",
        "train_changes": {"seed": seed},
        "int8": False,
    }


def _versions(team: dict[str, Any]) -> list[Any]:
    return team["mlflow"].search_model_versions(f"name='{MODEL_NAME}'")


def _worker_of(team: dict[str, Any], run_id: str) -> list[str]:
    logs = team["state"] / "logs"
    return [w for w in team_stack.WORKERS if run_id in (logs / f"{w}.log").read_text()]


@pytest.mark.e2e
@pytest.mark.slow
def test_two_trainings_and_a_data_flow_at_once(team: dict[str, Any]) -> None:
    prefect, client = team["prefect"], team["mlflow"]
    started = time.monotonic()
    trainings = [prefect.run_deployment("train/team", _train(team, seed)) for seed in (1, 2)]
    data = prefect.run_deployment("data/team", {"source": team["source"], "augment": {"copies": 1}})
    runs = [prefect.wait(r, {"COMPLETED"}, RUN_TIMEOUT) for r in [*trainings, data]]
    team["timings"]["two_trainings_and_data_s"] = time.monotonic() - started

    first, second = runs[0], runs[1]
    assert first["start_time"] < second["end_time"] and second["start_time"] < first["end_time"], (
        "the two trainings ran at the same time"
    )
    assert {w for r in trainings for w in _worker_of(team, r)} == set(team_stack.WORKERS), (
        "each worker ran one of the trainings"
    )

    versions = _versions(team)
    assert len(versions) == 2, "both trainings registered a version"
    assert len({v.tags[RECIPE_TAG] for v in versions}) == 2, "one per recipe"
    for version in versions:
        train_run = client.get_run(version.tags["train_run_id"])
        assert train_run.info.status == "FINISHED"
        assert client.get_run(version.tags["evaluate_run_id"]).info.status == "FINISHED"
        assert client.list_artifacts(train_run.info.run_id), "the run's artifacts are there"
        assert version.tags["gate"] == "decided"

    for version in versions:  # no alias that its own gate did not give it
        held = set(client.get_model_version(MODEL_NAME, version.version).aliases)
        assert held <= {version.tags["promotion.alias"]}, (version.version, held)


@pytest.mark.e2e
@pytest.mark.slow
def test_the_champion_moved_only_as_the_gates_decided(team: dict[str, Any]) -> None:
    client = team["mlflow"]
    # Each promotion names the champion it replaced: the promotions must form one chain from
    # "no champion" to the champion the registry holds now (alias changes = gate decisions).
    decisions = {v.version: v.tags for v in _versions(team)}
    assert len(decisions) == 2, "the two concurrent trainings' versions"
    promoted = [v for v, tags in decisions.items() if tags["promotion.promoted"] == "True"]
    chain: list[str | None] = [None]
    for _ in promoted:
        successor = [v for v in promoted if _replaced(decisions[v]) == chain[-1]]
        print(f"\npromotions: {[(v, decisions[v]['promotion.reason']) for v in promoted]}")
        assert len(successor) == 1, f"promotions do not form one chain: {promoted}"
        chain.append(successor[0])
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    assert promoted and champion.version == chain[-1], (chain, champion.version)
    print(f"\nalias moves: {len(promoted)}, chain {chain[1:]}")
    # The gates took turns through the team server's one-slot limit (tasks/registry/gate_lock).
    limits = team["prefect"].http.post("/v2/concurrency_limits/filter", json={})
    limits.raise_for_status()
    gate = [limit for limit in limits.json() if limit["name"] == GATE_LIMIT]
    assert gate and gate[0]["limit"] == 1 and gate[0]["active_slots"] == 0, gate


@pytest.mark.e2e
@pytest.mark.slow
def test_a_killed_training_reruns_and_one_outlives_an_mlflow_restart(
    team: dict[str, Any],
) -> None:
    prefect, client, state = team["prefect"], team["mlflow"], team["state"]
    before = {v.version for v in _versions(team)}
    started = time.monotonic()
    killed = prefect.run_deployment("train/team", _train(team, 3))
    restarted = prefect.run_deployment("train/team", _train(team, 4))
    for run_id in (killed, restarted):
        prefect.wait(run_id, {"RUNNING"}, RUN_TIMEOUT)
    _wait_training(client, 2)

    # SIGKILL the flow's process and every process under it, as a machine lost would.
    victim = flow_pid(prefect.flow_run(killed))
    for pid in [*_descendants(victim), victim]:
        os.kill(pid, signal.SIGKILL)
    # Stop the MLflow server while the other training runs, then start it on the same store.
    team_stack.stop_process(state, "mlflow")
    time.sleep(5)
    team_stack.start_mlflow(team_stack.read_state(state))

    crashed = prefect.wait(killed, {"CRASHED"}, RUN_TIMEOUT)
    survived = prefect.wait(restarted, {"COMPLETED"}, RUN_TIMEOUT)
    rerun = prefect.run_deployment("train/team", _train(team, 3))
    done = prefect.wait(rerun, {"COMPLETED"}, RUN_TIMEOUT)
    team["timings"]["kill_restart_rerun_s"] = time.monotonic() - started
    print(f"\ncrashed: {crashed['state']['message']}")

    new = [v for v in _versions(team) if v.version not in before]
    assert len(new) == 2, "the survivor and the rerun each registered one version"
    for version in new:
        assert client.get_run(version.tags["train_run_id"]).info.status == "FINISHED"
        assert version.tags["gate"] == "decided"
    assert survived["state_type"] == done["state_type"] == "COMPLETED"


def _replaced(tags: dict[str, str]) -> str | None:
    """The champion a promotion replaced (None: there was none)."""
    value = tags.get("promotion.champion_version", "None")
    return None if value in ("", "None") else value


def _wait_training(client: MlflowClient, count: int) -> None:
    """Wait until ``count`` MLflow ``train`` runs are running (the trainings have begun)."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        running = client.search_runs(
            [experiment.experiment_id],
            "attributes.status = 'RUNNING' and attributes.run_name = 'train'",
        )
        if len(running) >= count:
            time.sleep(3)  # into the training proper
            return
        time.sleep(1)
    raise TimeoutError(f"{count} train runs not running after {RUN_TIMEOUT} s")


def _descendants(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [int(c) for c in children.read_text().split()] if children.exists() else []
    return [d for c in found for d in (*_descendants(c), c)]


@pytest.mark.e2e
@pytest.mark.slow
def test_no_credential_in_logs_tags_or_prefect_records(team: dict[str, Any]) -> None:
    state, prefect, client = team["state"], team["prefect"], team["mlflow"]
    password = (state / "pgpass").read_text().strip().rsplit(":", 1)[-1]
    assert len(password) >= 24
    secrets = (password, MLFLOW_PASSWORD)

    def clean(where: str, text: str) -> None:
        found = [s for s in secrets if s in text]
        assert not found, f"a credential in {where}"

    logs = sorted((state / "logs").glob("*.log"))
    assert {p.stem for p in logs} >= {"postgres", "prefect", "mlflow", *team_stack.WORKERS}
    for log in logs:
        clean(str(log), log.read_text(errors="replace"))
    clean("stack.json", (state / "stack.json").read_text())
    kinds = ("logs", "flow_runs", "task_runs", "artifacts", "deployments", "variables")
    records = {what: prefect.read_all(what) for what in kinds}
    assert records["logs"] and records["flow_runs"], "nothing to scan proves nothing"
    for what, found in records.items():
        for record in found:
            clean(f"Prefect {what}", json.dumps(record))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert runs
    for run in runs:
        clean(f"MLflow run {run.info.run_id}", json.dumps([run.data.params, run.data.tags]))
    for version in _versions(team):
        clean(f"v{version.version}", json.dumps([version.tags, version.source]))
    # Not in any process's arguments or (outside the servers' PGPASSFILE) environment.
    for name, pid in team_stack.read_state(state)["pids"].items():
        clean(f"{name}'s arguments", Path(f"/proc/{pid}/cmdline").read_bytes().decode())
        if name in team_stack.WORKERS:
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode()
            assert "PGPASSFILE" not in environ and password not in environ


def test_the_compose_file_starts_the_same_stack_with_no_secret_inline() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "mlflow", "worker-1", "worker-2"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["prefect-server"]["image"] == "prefecthq/prefect:3.9.1-python3.11"
    assert (
        "FROM ghcr.io/mlflow/mlflow:v3.17.2" in (COMPOSE.parent / "mlflow.Dockerfile").read_text()
    )
    for name in ("worker-1", "worker-2"):
        command = services[name]["command"]
        assert command[:3] == ["prefect", "worker", "start"] and "team-process" in command
    # Every password comes from the environment (.env); no URL carries one.
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert str(value).startswith("${POSTGRES_PASSWORD:?"), (name, key)
            assert not re.search(r"://[^/@:]+:[^/@]+@", str(value)), (name, key)
    assert "POSTGRES_PASSWORD=\n" in (COMPOSE.parent / ".env.example").read_text()
