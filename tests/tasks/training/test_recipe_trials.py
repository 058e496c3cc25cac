"""Trials: each trial's recipe changes, and the summary read back from a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from tasks.training.profiles import get_profile
from tasks.training.recipe_trials import (
    STATE_TAG,
    Trial,
    open_trial_runs,
    pool_problem,
    settle_trial_runs,
    summarize,
    to_markdown,
    trial_changes,
)

MINUTE_MS = 60_000
T0 = 1_700_000_000_000


def test_a_trial_changes_the_shared_changes_and_its_own_win():
    trials = [Trial(name="base"), Trial(name="big", changes={"imgsz": 320, "batch": 8})]
    changes = trial_changes(get_profile("smoke"), {"imgsz": 96, "epochs": 2}, trials)
    assert list(changes) == ["base", "big"]
    assert changes["base"] == {"imgsz": 96, "epochs": 2}
    assert changes["big"] == {"imgsz": 320, "epochs": 2, "batch": 8}


def test_a_change_the_recipe_lacks_names_the_trial():
    with pytest.raises(ValueError, match=r"trial 'typo'.*no field 'imgsiz'"):
        trial_changes(get_profile("smoke"), {}, [Trial(name="typo", changes={"imgsiz": 320})])


def test_trial_names_are_unique():
    with pytest.raises(ValueError, match="unique"):
        trial_changes(get_profile("smoke"), {}, [Trial(name="a"), Trial(name="a")])


@pytest.fixture
def client(tmp_path: Path) -> MlflowClient:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _run(
    client: MlflowClient,
    experiment: str,
    parent: str,
    name: str,
    minutes: tuple[int, int],
    metrics: dict[str, float],
) -> str:
    """A finished run under ``parent`` that started and ended at these minutes after T0."""
    tags = {MLFLOW_PARENT_RUN_ID: parent}
    run = client.create_run(experiment, T0 + minutes[0] * MINUTE_MS, tags, run_name=name)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, "FINISHED", T0 + minutes[1] * MINUTE_MS)
    return run.info.run_id


def _valid(top1: float, low: float, high: float, map50: float) -> dict[str, float]:
    return {"valid_top1": top1, "valid_top1_low": low, "valid_top1_high": high,
            "valid_map50": map50}  # fmt: skip


def test_summary_reads_each_trials_valid_figures_from_mlflow(client: MlflowClient):
    experiment = client.create_experiment("trials")
    parent = client.create_run(experiment, run_name="trials-g").info.run_id
    trials = [
        Trial(name="a"),
        Trial(name="b", changes={"imgsz": 320}),
        Trial(name="crashed", changes={"batch": 4}),
        Trial(name="cancelled"),
    ]
    runs = open_trial_runs(client, experiment, parent, trials)
    assert {client.get_run(r).data.tags[MLFLOW_PARENT_RUN_ID] for r in runs.values()} == {parent}
    # Trial a: trained from minute 1 to 4, evaluated until 6; b reads fewer valid images right
    # but more test images: the summary must not see test.
    _run(client, experiment, runs["a"], "train", (1, 4), {"epochs_completed": 1})
    evaluate_a = _run(
        client, experiment, runs["a"], "evaluate", (4, 6),
        _valid(0.9, 0.85, 0.95, 0.8) | {"test_top1": 0.5},
    )  # fmt: skip
    _run(client, experiment, runs["b"], "train", (2, 3), {})
    _run(
        client, experiment, runs["b"], "evaluate", (3, 5),
        _valid(0.7, 0.6, 0.8, 0.75) | {"test_top1": 0.99, "test_top1_low": 0.9},
    )  # fmt: skip
    _run(client, experiment, runs["crashed"], "train", (1, 2), {})
    # Not trials: a run under the parent without the trial tag, an evaluate run elsewhere.
    _run(client, experiment, parent, "evaluate", (0, 1), _valid(1.0, 1.0, 1.0, 1.0))
    other = client.create_run(experiment, run_name="other").info.run_id
    _run(client, experiment, other, "evaluate", (0, 1), _valid(0.1, 0.0, 0.2, 0.1))
    states = {"a": "COMPLETED", "b": "COMPLETED", "crashed": "CRASHED", "cancelled": "CANCELLED"}
    settle_trial_runs(client, runs, states)

    rows = summarize(client, parent)

    assert [r.trial for r in rows] == ["a", "b", "crashed", "cancelled"], "best valid first"
    a, b, crashed, cancelled = rows
    assert (a.valid_top1, a.valid_top1_low, a.valid_top1_high, a.valid_map50) == (
        0.9, 0.85, 0.95, 0.8,
    )  # fmt: skip
    assert (a.state, a.minutes, a.evaluate_run_id, a.trial_run_id) == (
        "COMPLETED", 5.0, evaluate_a, runs["a"],
    )  # fmt: skip
    assert (b.valid_top1, b.minutes, json.loads(b.changes)) == (0.7, 3.0, {"imgsz": 320})
    assert crashed.state == "CRASHED" and crashed.valid_top1 is None
    assert crashed.evaluate_run_id is None and crashed.minutes == 1.0
    assert cancelled.minutes is None and cancelled.valid_top1_low is None
    assert not any("test" in key for row in rows for key in row.model_dump()), "valid only"
    statuses = {name: client.get_run(run).info.status for name, run in runs.items()}
    assert statuses == {"a": "FINISHED", "b": "FINISHED", "crashed": "FAILED",
                        "cancelled": "KILLED"}  # fmt: skip
    assert client.get_run(runs["crashed"]).data.tags[STATE_TAG] == "CRASHED"


def test_a_trial_that_never_got_a_flow_run_is_not_started(client: MlflowClient):
    experiment = client.create_experiment("trials")
    parent = client.create_run(experiment, run_name="trials-g").info.run_id
    runs = open_trial_runs(client, experiment, parent, [Trial(name="late")])
    settle_trial_runs(client, runs, {})
    [row] = summarize(client, parent)
    assert (row.state, client.get_run(runs["late"]).info.status) == ("NOT_STARTED", "FAILED")


def test_markdown_says_what_one_valid_image_is_worth(client: MlflowClient):
    experiment = client.create_experiment("trials")
    parent = client.create_run(experiment, run_name="trials-g").info.run_id
    runs = open_trial_runs(client, experiment, parent, [Trial(name="a"), Trial(name="b")])
    _run(client, experiment, runs["a"], "evaluate", (0, 2), _valid(0.92, 0.875, 0.958, 0.81))
    settle_trial_runs(client, runs, {"a": "COMPLETED", "b": "FAILED"})
    text = to_markdown("g", summarize(client, parent), valid_images=144)
    assert "valid has 144 images, so one image is 0.7 points" in text
    assert "| a | `{}` | COMPLETED | 0.920 | 0.875–0.958 | 0.810 | 2.0 |" in text
    assert "| b | `{}` | FAILED | – | – | – | – |" in text
    assert "Test is not read here" in text
    assert "100/n points" in to_markdown("g", [], valid_images=None)


@pytest.mark.parametrize(
    ("own", "limit", "trials", "blocked"),
    [
        ("local-process", 1, 2, True),  # the trials run holds the only slot
        ("local-process", 2, 2, False),
        ("local-process", None, 2, False),
        ("vertex-gpu", 1, 2, False),  # the trials run waits on another pool
        (None, 1, 2, False),  # run outside any pool (the command line)
    ],
)
def test_pool_problem_when_the_trials_run_takes_the_last_slot(
    own: str | None, limit: int | None, trials: int, blocked: bool
):
    problem = pool_problem(own, "local-process", limit, trials)
    assert bool(problem) is blocked
    if blocked:
        assert "set-concurrency-limit local-process" in problem
