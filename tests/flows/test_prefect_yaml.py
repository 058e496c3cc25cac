"""prefect.yaml: every deployment points at a real flow and its parameters validate."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
# Parameters a deployment leaves to the run (the train flow's dataset comes from the data flow).
AT_RUN_TIME = {
    "TrainParams": {"dataset": {"id": "abc", "uri": "file:///tmp/abc"}},
    "PersonalizeParams": {"learner": "ann"},
}


def _name(deployment: dict) -> str:
    return f"{deployment['entrypoint']}@{deployment['name']}"


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=_name)
def test_deployment_entrypoint_and_parameters(deployment: dict):
    path, name = deployment["entrypoint"].split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name)
    model = flow.fn.__annotations__["params"]
    model = getattr(module, model.split(" ")[0]) if isinstance(model, str) else model
    # raises on a bad default
    model.model_validate(AT_RUN_TIME.get(model.__name__, {}) | deployment["parameters"]["params"])
    pool = {"local": "local-process", "vertex-gpu": "vertex-gpu"}[deployment["name"]]
    assert deployment["work_pool"]["name"] == pool
    assert deployment["description"] and "fingerspell" in deployment["tags"]


def test_every_flow_has_a_local_deployment_and_training_a_gpu_one():
    by_name: dict[str, set[str]] = {}
    for deployment in DEPLOYMENTS:
        by_name.setdefault(deployment["name"], set()).add(deployment["entrypoint"])
    assert by_name["local"] == {
        "flows/data.py:data_flow",
        "flows/train.py:train_flow",
        "flows/pipeline.py:pipeline_flow",
        "flows/predict.py:predict_flow",
        "flows/personalize.py:personalize_flow",
        "flows/trials.py:trials_flow",
        "flows/trials.py:trial_flow",
    }
    assert by_name["vertex-gpu"] == {
        "flows/train.py:train_flow",
        "flows/pipeline.py:pipeline_flow",
        "flows/trials.py:trial_flow",
    }


def test_retrain_schedules_are_off_by_default():
    pipelines = [d for d in DEPLOYMENTS if d["entrypoint"].startswith("flows/pipeline.py")]
    assert [s["active"] for d in pipelines for s in d["schedules"]] == [False, False]


def test_training_deployments_run_one_at_a_time():
    # Two overlapping runs of one deployment (a schedule and a user) queue, never race.
    for deployment in DEPLOYMENTS:
        limit = deployment.get("concurrency_limit")
        if deployment["entrypoint"].split(":")[0] in ("flows/train.py", "flows/pipeline.py"):
            assert limit == {"limit": 1, "collision_strategy": "ENQUEUE"}, _name(deployment)
