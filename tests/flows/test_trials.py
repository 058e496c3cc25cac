"""The trials flow's parameters, its command line, and what it hands each trial's flow run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from flows.cli import parse_params
from flows.train_params import TrainParams
from flows.trials import TRIAL_FLOW, TrialsParams, trial_flow
from tasks.core.records import DatasetRef

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
GS = DatasetRef(id="abc", uri="gs://bucket/datasets/abc")


def test_defaults_are_one_base_trial_on_the_local_pool():
    params = TrialsParams()
    assert [t.name for t in params.trials] == ["base"]
    assert (params.pool, params.dataset, params.int8) == ("local", None, False)
    assert params.changes() == {"base": {}}


def test_command_line_takes_shared_changes_and_a_trial_grid():
    grid = [{"name": "base"}, {"name": "imgsz-128", "changes": {"imgsz": 128}}]
    params = parse_params(
        TrialsParams,
        ["--profile", "smoke", "--train.epochs", "2", "--trials", json.dumps(grid),
         "--group", "sizes"],
        prog="fingerspell trials",
    )  # fmt: skip
    assert params.group == "sizes"
    assert params.changes() == {"base": {"epochs": 2}, "imgsz-128": {"epochs": 2, "imgsz": 128}}


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"trials": [{"name": "x", "changes": {"imgsiz": 1}}]}, "no field 'imgsiz'"),
        ({"trials": [{"name": "x"}, {"name": "x"}]}, "unique"),
        ({"trials": []}, "at least 1"),
        ({"trials": [{"name": "Has Space"}]}, "pattern"),
        ({"group": "a/b"}, "pattern"),
        ({"pool": "vertex-gpu"}, "gs:// URI"),
        ({"pool": "vertex-gpu", "dataset": {"id": "a", "uri": "/data/a"}}, "gs:// URI"),
        ({"pool": "elsewhere"}, "'local' or 'vertex-gpu'"),
    ],
)
def test_bad_parameters_fail_before_anything_runs(given: dict, problem: str):
    with pytest.raises(ValidationError, match=problem):
        TrialsParams.model_validate({"profile": "smoke", **given})


def test_vertex_trials_take_a_dataset_google_cloud_reads():
    params = TrialsParams(profile="gpu", pool="vertex-gpu", dataset=GS)
    assert params.dataset == GS


def test_the_trial_flow_takes_what_the_trials_flow_sends():
    # The parameters _start sends, as JSON: the deployment's flow must accept them as they are.
    train = TrainParams(dataset=GS, profile="smoke", train_changes={"imgsz": 96}, reuse=False)
    sent = {"params": train.model_dump(mode="json"), "parent_run_id": "0123abcd"}
    validated = trial_flow.validate_parameters(sent)
    assert validated["params"] == train and validated["parent_run_id"] == "0123abcd"


def test_trial_deployments_are_bounded_by_their_pool_not_one_at_a_time():
    trials = [d for d in DEPLOYMENTS if d["entrypoint"] == "flows/trials.py:trial_flow"]
    assert {d["name"]: d["work_pool"]["name"] for d in trials} == {
        "local": "local-process",
        "vertex-gpu": "vertex-gpu",
    }
    assert all("concurrency_limit" not in d for d in trials)
    assert trial_flow.name == TRIAL_FLOW
    [orchestrator] = [d for d in DEPLOYMENTS if d["entrypoint"] == "flows/trials.py:trials_flow"]
    assert orchestrator["parameters"]["params"]["pool"] == "local"
    assert orchestrator["work_pool"]["name"] == "local-process"


def test_waiting_ends_with_each_trials_final_state():
    """Against Prefect's own API: a failed or crashed trial is a state, never lost."""
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Crashed, Failed

    from flows.trials import _wait

    finals = {"ok": Completed(), "broken": Failed(), "killed": Crashed()}
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(TRIAL_FLOW)
        ids = {}
        for name, state in finals.items():
            run = client.create_flow_run(flow=trial_flow, name=f"wait-{name}")
            client.set_flow_run_state(run.id, state, force=True)
            assert run.flow_id == flow_id
            ids[name] = run.id
    assert _wait(ids, poll_seconds=0.01) == {
        "ok": "COMPLETED",
        "broken": "FAILED",
        "killed": "CRASHED",
    }
