"""Recipe trials as flow runs: one training per trial on a work pool, summarized from MLflow.

The ``trials`` flow builds the dataset once (or takes a built one), opens a ``trials-<group>``
MLflow run with a ``trial-<name>`` run under it per trial, and starts one run of the
``train-trial/<pool>`` deployment per trial (``pool``: ``local`` or ``vertex-gpu``). The
pool's concurrency limit bounds how many train at once; a trial's training nests its runs
under its trial run. When all have ended, the summary (valid only, with intervals) is read
back from MLflow and published as Prefect table and markdown artifacts and as ``trials.json``
on the parent run. A trial that failed or crashed is a row with its state, not lost.

``train-trial`` is the train flow under a deployment of its own: ``train/*`` deployments run
one at a time, trials run as many at once as their pool allows.

    prefect deployment run 'trials/local' --watch --params '{"params": {"profile": "demo",
      "trials": [{"name": "base"}, {"name": "imgsz-320", "changes": {"imgsz": 320}}]}}'
"""

from __future__ import annotations

import time
from typing import Any, Literal, Self

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.context import get_run_context
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.data import DataParams, data_flow
from flows.pipeline import PipelineParams, data_params
from flows.train import train_flow
from flows.train_params import TrainOutcome, TrainParams
from tasks.core.records import DatasetRef
from tasks.data.sources import is_url
from tasks.registry import mlflow_runs
from tasks.registry.tracking import open_job
from tasks.training import recipe_trials as logic
from tasks.training.profiles import PROFILES, get_profile

TRIAL_FLOW = "train-trial"


class TrialsParams(BaseModel):
    """A base recipe, the trials that change it, where they train and on which data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: str = Field(
        default="trials", pattern=logic.NAME_PATTERN, description="Name of this set of trials."
    )
    profile: str = Field(default="cpu", description=f"Base recipe, one of {', '.join(PROFILES)}.")
    train_changes: dict[str, Any] = Field(
        default_factory=dict,
        description="Recipe changes every trial makes; on the command line --train.FIELD VALUE.",
    )
    trials: list[logic.Trial] = Field(
        default_factory=lambda: [logic.Trial(name="base")],
        min_length=1,
        description='The trials, e.g. [{"name": "base"}, {"name": "imgsz-320", "changes": '
        '{"imgsz": 320}}].',
    )
    pool: Literal["local", "vertex-gpu"] = Field(
        default="local", description=f"Train on the pool of deployment {TRIAL_FLOW}/<pool>."
    )
    dataset: DatasetRef | None = Field(
        default=None,
        description="A dataset the data flow built (vertex-gpu: its gs:// copy); default: "
        "build it from `data` once, for every trial.",
    )
    data: DataParams = Field(default_factory=DataParams)
    int8: bool = Field(default=False, description="Also build and score int8 in each trial.")
    poll_seconds: float = Field(default=10, gt=0, description="How often trials are checked.")

    @model_validator(mode="after")
    def _trials_fit(self) -> Self:
        self.changes()  # a field the recipe lacks, or a repeated name, fails here
        if self.pool != "local" and (self.dataset is None or not is_url(self.dataset.uri)):
            raise ValueError(f"trials on {self.pool} need a dataset at a gs:// URI")
        return self

    def changes(self) -> dict[str, dict[str, Any]]:
        """Each trial's changes to the base profile, by trial name."""
        return logic.trial_changes(get_profile(self.profile), self.train_changes, self.trials)


@flow(name=TRIAL_FLOW, log_prints=True)
def trial_flow(params: TrainParams, parent_run_id: str | None = None) -> TrainOutcome:
    """One trial: the train flow, its MLflow runs under the trial's run.

    Args:
        params: Dataset and recipe, as the train flow takes them.
        parent_run_id: The trial's MLflow run.
    """
    return train_flow(params, parent_run_id=parent_run_id)


def _check_pool(deployment: str, trials: int) -> None:
    """Fail now if the trials could never get a slot on their pool."""
    own = get_run_context().flow_run.work_pool_name  # type: ignore[union-attr]
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_deployment_by_name(deployment).work_pool_name
        except ObjectNotFound:
            raise RuntimeError(
                f"no deployment {deployment}: deploy it first (prefect deploy -n {deployment})"
            ) from None
        limit = client.read_work_pool(pool).concurrency_limit if pool else None
    if problem := logic.pool_problem(own, pool or "", limit, trials):
        raise RuntimeError(problem)


def _wait(flow_runs: dict[str, Any], poll_seconds: float) -> dict[str, str]:
    """Wait until every flow run is final; their final state types by trial name."""
    states: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        while len(states) < len(flow_runs):
            for name, flow_run_id in flow_runs.items():
                state = None if name in states else client.read_flow_run(flow_run_id).state
                if state is not None and state.is_final():
                    states[name] = state.type.value
            if len(states) < len(flow_runs):
                time.sleep(poll_seconds)
    return states


def _start(
    deployment: str, params: TrialsParams, dataset: DatasetRef, runs: dict[str, str], this: str
) -> dict[str, Any]:
    """Start one run of ``deployment`` per trial; their flow run ids by trial name.

    The idempotency key makes a retried trials run find its trials instead of doubling them.
    """
    changes = params.changes()
    flow_runs = {}
    for name, run_id in runs.items():
        train = TrainParams(
            dataset=dataset,
            profile=params.profile,
            train_changes=changes[name],
            int8=params.int8,
            promote=False,  # a trial informs a choice; it never moves champion
            reuse=False,  # a folder of its own: trials of one recipe (seeds) never share one
        )
        started = run_deployment(
            deployment,
            parameters={"params": train.model_dump(mode="json"), "parent_run_id": run_id},
            timeout=0,
            as_subflow=True,
            flow_run_name=f"{params.group}-{name}",
            idempotency_key=f"{this}-{name}",
        )
        flow_runs[name] = started.id
    return flow_runs


@flow(name="trials", log_prints=True)
def trials_flow(params: TrialsParams | None = None) -> list[logic.TrialRow]:
    """Train every trial as a run of ``train-trial/<pool>`` and summarize them from MLflow.

    Args:
        params: Base recipe, trials, pool and dataset.

    Returns:
        The summary rows, best valid top-1 first.

    Raises:
        RuntimeError: A trial did not complete (after the summary is published), or the pool
            could never run them.
    """
    params = params or TrialsParams()
    logger = get_run_logger()
    job = open_job()
    client, experiment_id = job.client, job.experiment_id
    deployment = f"{TRIAL_FLOW}/{params.pool}"
    _check_pool(deployment, len(params.trials))
    base = PipelineParams(
        profile=params.profile, train_changes=params.train_changes, data=params.data
    )
    dataset = params.dataset or data_flow(data_params(base))
    this = str(get_run_context().flow_run.id)  # type: ignore[union-attr]
    tags = {
        logic.GROUP_TAG: params.group,
        "profile": params.profile,
        "pool": params.pool,
        "dataset_id": dataset.id,
        logic.FLOW_RUN_TAG: this,
    }
    with mlflow_runs.run(client, experiment_id, f"trials-{params.group}", None, tags) as parent:
        runs = logic.open_trial_runs(client, experiment_id, parent, params.trials)
        flow_runs = _start(deployment, params, dataset, runs, this)
        for name, flow_run_id in flow_runs.items():
            client.set_tag(runs[name], logic.FLOW_RUN_TAG, str(flow_run_id))
        logger.info("%d trials started on %s", len(flow_runs), deployment)
        states = _wait(flow_runs, params.poll_seconds)
        logic.settle_trial_runs(client, runs, states)
        rows = logic.summarize(client, parent)
        markdown = logic.to_markdown(params.group, rows, dataset.counts.get("valid"))
        mlflow_runs.log_json(client, parent, "trials.json", [r.model_dump() for r in rows])
        key = f"trials-{params.group}"
        create_table_artifact([r.model_dump() for r in rows], key=key, description=key)
        create_markdown_artifact(markdown, key=f"{key}-summary", description=key)
    logger.info("\n%s", markdown)
    if failed := {name: state for name, state in states.items() if state != "COMPLETED"}:
        raise RuntimeError(f"trials that did not complete: {failed} (the summary lists them)")
    return rows


if __name__ == "__main__":
    from flows.cli import run_cli

    run_cli(trials_flow, TrialsParams, "python -m flows.trials")
