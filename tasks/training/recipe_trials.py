"""Recipe trials: named changes to one recipe, one MLflow run each, and their summary.

The trials flow (``flows/trials.py``) opens a ``trials-<group>`` MLflow run, one ``trial-<name>``
run nested under it per trial (:func:`open_trial_runs`), and hands each trial's run id to the
training it starts, whose ``train`` and ``evaluate`` runs nest under that. When the trainings
end it records each one's final Prefect state (:func:`settle_trial_runs`) and builds the
summary from MLflow (:func:`summarize`), not from logs.

The summary reads **valid only** ("choose on valid, report on test"): top-1 with the 95%
bootstrap interval over images that each evaluate run logged
(:func:`tasks.evaluation.significance.bootstrap_interval`), and mAP50. Test figures are
never read here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from pydantic import BaseModel, ConfigDict, Field

from tasks.training.detector import TrainConfig
from tasks.training.profiles import with_changes

GROUP_TAG = "trials_group"
TRIAL_TAG = "trial"
STATE_TAG = "prefect_state"
FLOW_RUN_TAG = "prefect_flow_run_id"
EVALUATE_RUN = "evaluate"  # the train flow's evaluation run (it logs valid_* metrics)
VALID_METRICS = ("valid_top1", "valid_top1_low", "valid_top1_high", "valid_map50")
# A Prefect final state → the MLflow status of the trial's run.
_STATUS = {"COMPLETED": "FINISHED", "CANCELLED": "KILLED"}
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"


class Trial(BaseModel):
    """One trial: a name and the recipe fields it changes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        pattern=NAME_PATTERN, description="Lower-case letters, digits and dashes, e.g. imgsz-320."
    )
    changes: dict[str, Any] = Field(
        default_factory=dict,
        description='Recipe fields this trial changes, e.g. {"imgsz": 320}; none: the base.',
    )


class TrialRow(BaseModel):
    """One line of the summary: a trial's valid figures and how its training ended."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trial: str
    changes: str = Field(description="The trial's own recipe changes, as JSON.")
    state: str = Field(description="The training's final Prefect state (or the run's status).")
    valid_top1: float | None = None
    valid_top1_low: float | None = None
    valid_top1_high: float | None = None
    valid_map50: float | None = None
    minutes: float | None = Field(
        default=None, description="From its first MLflow run's start to its last one's end."
    )
    trial_run_id: str
    evaluate_run_id: str | None = None


def trial_changes(
    recipe: TrainConfig, shared: Mapping[str, Any], trials: Sequence[Trial]
) -> dict[str, dict[str, Any]]:
    """Each trial's changes to the base profile: the shared changes, then its own.

    Args:
        recipe: The base profile's recipe (the changes are checked against it).
        shared: Changes every trial makes (a trial's own win on the same field).
        trials: The trials, each with a unique name.

    Returns:
        Changes by trial name, in the trials' order.

    Raises:
        ValueError: Two trials share a name, or a change is no field of the recipe (or a value
            it refuses).
    """
    names = [trial.name for trial in trials]
    if len(set(names)) != len(names):
        raise ValueError(f"trial names must be unique: {names}")
    out: dict[str, dict[str, Any]] = {}
    for trial in trials:
        changes = {**shared, **trial.changes}
        try:
            with_changes(recipe, changes)
        except ValueError as error:
            raise ValueError(f"trial {trial.name!r}: {error}") from error
        out[trial.name] = changes
    return out


def open_trial_runs(
    client: MlflowClient, experiment_id: str, parent_run_id: str, trials: Sequence[Trial]
) -> dict[str, str]:
    """Create a ``trial-<name>`` run under the parent for each trial; their ids by name."""
    runs = {}
    for trial in trials:
        tags = {MLFLOW_PARENT_RUN_ID: parent_run_id, TRIAL_TAG: trial.name}
        run = client.create_run(experiment_id, run_name=f"trial-{trial.name}", tags=tags)
        client.log_param(run.info.run_id, "changes", json.dumps(trial.changes, sort_keys=True))
        runs[trial.name] = run.info.run_id
    return runs


def settle_trial_runs(client: MlflowClient, runs: Mapping[str, str], states: Mapping[str, str]):
    """Record each trial's final Prefect state on its run and end the run accordingly.

    Args:
        client: The MLflow client.
        runs: Trial run ids by trial name.
        states: Final Prefect state type by trial name (``COMPLETED``, ``FAILED``, ...); a
            trial missing here never got a flow run and counts as ``NOT_STARTED``.
    """
    for name, run_id in runs.items():
        state = states.get(name, "NOT_STARTED")
        client.set_tag(run_id, STATE_TAG, state)
        client.set_terminated(run_id, _STATUS.get(state, "FAILED"))


def _children(client: MlflowClient, run_id: str) -> list[Any]:
    experiment_id = client.get_run(run_id).info.experiment_id
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}'",
        order_by=["attributes.start_time ASC"],
    )


def _row(client: MlflowClient, trial_run: Any) -> TrialRow:
    runs = _children(client, trial_run.info.run_id)
    evaluations = [r for r in runs if r.data.tags.get(MLFLOW_RUN_NAME) == EVALUATE_RUN]
    evaluation = evaluations[-1] if evaluations else None
    metrics = evaluation.data.metrics if evaluation else {}
    ends = [r.info.end_time for r in runs if r.info.end_time]
    minutes = (max(ends) - runs[0].info.start_time) / 60_000 if runs and ends else None
    return TrialRow(
        trial=trial_run.data.tags.get(TRIAL_TAG, trial_run.info.run_name),
        changes=trial_run.data.params.get("changes", "{}"),
        state=trial_run.data.tags.get(STATE_TAG, trial_run.info.status),
        minutes=round(minutes, 1) if minutes is not None else None,
        trial_run_id=trial_run.info.run_id,
        evaluate_run_id=evaluation.info.run_id if evaluation else None,
        **{key: metrics[key] for key in VALID_METRICS if key in metrics},
    )


def summarize(client: MlflowClient, parent_run_id: str) -> list[TrialRow]:
    """The trials under ``parent_run_id``, read from MLflow: best valid top-1 first.

    Trials without a valid score (failed, crashed, never started) come last, in the order
    they were opened. Only ``valid_*`` metrics are read.
    """
    trials = [r for r in _children(client, parent_run_id) if TRIAL_TAG in r.data.tags]
    rows = [_row(client, run) for run in trials]
    return sorted(rows, key=lambda r: -r.valid_top1 if r.valid_top1 is not None else 2.0)


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def to_markdown(group: str, rows: Sequence[TrialRow], valid_images: int | None) -> str:
    """The summary as a markdown table, with what one valid image is worth.

    Args:
        group: The trials' group name.
        rows: From :func:`summarize`.
        valid_images: Images in the valid split (None: unknown).
    """
    if valid_images:
        size = (
            f"valid has {valid_images} images, so one image is "
            f"{100 / valid_images:.1f} points of top-1"
        )
    else:
        size = "one image is 100/n points of top-1 (the full valid split: 144, ~0.7 points)"
    lines = [
        f"# Trials `{group}` (valid only)",
        "",
        f"Top-1 on valid with its 95% bootstrap interval over images; {size}. Trials whose "
        "intervals overlap are not told apart by these figures. Test is not read here: "
        "choose on valid, report the chosen recipe's test once.",
        "",
        "| trial | changes | state | valid top-1 | 95% interval | valid mAP50 | minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        interval = (
            "–"
            if row.valid_top1_low is None or row.valid_top1_high is None
            else f"{row.valid_top1_low:.3f}–{row.valid_top1_high:.3f}"
        )
        minutes = "–" if row.minutes is None else f"{row.minutes:.1f}"
        lines.append(
            f"| {row.trial} | `{row.changes}` | {row.state} | {_share(row.valid_top1)} | "
            f"{interval} | {_share(row.valid_map50)} | {minutes} |"
        )
    return "\n".join(lines) + "\n"


def pool_problem(own_pool: str | None, trial_pool: str, limit: int | None, trials: int) -> str:
    """Why the trials could never run on their pool, or ``""`` when they can.

    The trials flow waits for its trials while holding a slot of its own pool; when the trials
    run on that same pool and its concurrency limit leaves them no slot, they would wait
    forever.
    """
    if own_pool != trial_pool or limit is None or limit >= 2 or trials == 0:
        return ""
    return (
        f"work pool {trial_pool!r} runs {limit} flow run(s) at a time and this trials run holds "
        f"one: its trials would never start. Raise the limit (prefect work-pool "
        f"set-concurrency-limit {trial_pool} N, N >= 2) or run the trials flow elsewhere."
    )
