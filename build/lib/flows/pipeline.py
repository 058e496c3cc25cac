"""The whole chain in one run: data → train → evaluate → register.

``python -m flows.pipeline --profile smoke`` runs it in a few minutes on a laptop, with no
Prefect server and no cloud account (MLflow in sqlite under the data home).
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import Field

from flows.data import DataParams, data_flow
from flows.train import train_flow
from flows.train_params import RecipeParams, TrainOutcome, TrainParams
from tasks.core.redact import redact
from tasks.registry import mlflow_runs
from tasks.registry.tracking import open_job


class PipelineParams(RecipeParams):
    """Everything one end-to-end run needs; each part has working defaults."""

    data: DataParams = Field(default_factory=DataParams)


def data_params(params: PipelineParams) -> DataParams:
    """The data flow's parameters: the recipe's augmentation copies unless given explicitly.

    A recipe is measured on data augmented a certain way (the ``cpu`` profile on the export
    as it is, which Roboflow already augmented ×3), so the pipeline builds that data unless
    ``data.augment.copies`` says otherwise.
    """
    recipe = params.recipe()
    if recipe.augment_copies is None or "copies" in params.data.augment.model_fields_set:
        return params.data
    augment = params.data.augment.model_copy(update={"copies": recipe.augment_copies})
    return params.data.model_copy(update={"augment": augment})


@flow(name="pipeline", log_prints=True)
def pipeline_flow(params: PipelineParams | None = None) -> TrainOutcome:
    """Build the dataset, train, evaluate and register a model under one MLflow run.

    Args:
        params: Profile, data source and gate settings.

    Returns:
        The registered model version and the promotion decision.
    """
    params = params or PipelineParams()
    job = open_job()
    client, data = job.client, data_params(params)
    with mlflow_runs.run(client, job.experiment_id, f"pipeline-{params.profile}") as parent:
        with mlflow_runs.run(client, job.experiment_id, "data", parent) as data_run:
            dataset = data_flow(data)
            mlflow_runs.log_dataset(
                client, data_run, dataset, data.source or job.settings.dataset, data.augment
            )
            mlflow_runs.set_tag(client, parent, "dataset_id", dataset.id)
        outcome = train_flow(
            TrainParams(
                dataset=dataset,
                profile=params.profile,
                train=params.train,
                train_changes=params.train_changes,
                gate=params.gate,
                reuse=params.reuse,
                register_unchanged=params.register_unchanged,
            ),
            parent_run_id=parent,
        )
        mlflow_runs.set_tag(client, parent, "model_version", outcome.model.version)
        mlflow_runs.set_tag(client, parent, "promotion", outcome.decision.alias or "none")
    metrics = ", ".join(f"{k}={v:.3f}" for k, v in sorted(outcome.metrics.items()))
    m = outcome.metrics
    top1 = "; ".join(
        f"{split} {m[f'{split}_top1']:.3f} (95% interval over images "
        f"{m[f'{split}_top1_low']:.3f}-{m[f'{split}_top1_high']:.3f})"
        for split in ("valid", "test")
        if {f"{split}_top1", f"{split}_top1_low", f"{split}_top1_high"} <= m.keys()
    )
    get_run_logger().info(
        "\n".join(
            [
                f"{outcome.model.name} v{outcome.model.version}: {outcome.decision.reason}"
                if outcome.decision.reason.startswith("nothing changed")
                else f"registered {outcome.model.name} v{outcome.model.version} "
                f"-> alias {outcome.decision.alias} ({outcome.decision.reason})",
                f"top-1: {top1 or 'not scored'}",
                f"metrics: {metrics}",
                f"MLflow runs: pipeline {parent}, train {outcome.train_run_id}, "
                f"evaluate {outcome.evaluate_run_id}",
                # The log filter would redact it too; the summary must not depend on that.
                f"look at them: mlflow ui --backend-store-uri {redact(job.settings.tracking_uri)}",
            ]
        )
    )
    return outcome


if __name__ == "__main__":
    from flows.cli import run_cli

    run_cli(pipeline_flow, PipelineParams, "python -m flows.pipeline")
