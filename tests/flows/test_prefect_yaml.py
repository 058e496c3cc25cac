"""prefect.yaml: every deployment points at a real flow and its parameters validate."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["entrypoint"])
def test_deployment_entrypoint_and_parameters(deployment: dict):
    path, name = deployment["entrypoint"].split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name)
    model = flow.fn.__annotations__["params"]
    model = getattr(module, model.split(" ")[0]) if isinstance(model, str) else model
    model.model_validate(deployment["parameters"]["params"])  # raises on a bad default
    assert deployment["work_pool"]["name"] == "local-process"
    assert deployment["description"] and "fingerspell" in deployment["tags"]


def test_retrain_schedule_is_off_by_default():
    pipeline = next(d for d in DEPLOYMENTS if d["entrypoint"].startswith("flows/pipeline.py"))
    assert [s["active"] for s in pipeline["schedules"]] == [False]
