"""A two-stage recipe through the pipeline against a real MLflow server.

Hand detector and letter classifier train side by side (the classifier in its own process),
a second classifier (an ensemble member) trains once the detector is done, all are evaluated
as one model, registered, and come back through the registry as one
recognizer that reads letters.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.data import DataParams
from flows.pipeline import PipelineParams, pipeline_flow
from flows.train_params import TrainOutcome
from tasks.augment import AugmentConfig
from tasks.classifier_config import ClassifierConfig
from tasks.recognize import Recognizer
from tasks.records import LETTERS
from tasks.registry import CHAMPION, MODEL_NAME
from tasks.train import TrainConfig

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXPERIMENT = "two-stage"
CLASSIFIER_EPOCHS = 2


@pytest.fixture(scope="module")
def outcome(env: dict, subset_dataset: Path) -> TrainOutcome:
    recipe = TrainConfig(
        model="yolo11n.yaml", imgsz=160, epochs=1, batch=16, patience=0, workers=0,
        optimizer="AdamW", overrides={"val": False},
        classifier=ClassifierConfig(imgsz=64, epochs=CLASSIFIER_EPOCHS, batch=16, workers=0),
        extra_classifiers=(ClassifierConfig(imgsz=64, epochs=1, batch=16, workers=0, seed=1),),
    )  # fmt: skip
    return pipeline_flow(
        PipelineParams(
            profile="smoke",
            data=DataParams(source=str(subset_dataset), augment=AugmentConfig(copies=0)),
            train=recipe,
        )
    )


def test_mlflow_two_stage_runs_are_siblings_and_the_classifier_logs_from_its_process(
    outcome: TrainOutcome, env: dict
):
    client = MlflowClient(env["uri"])
    experiment = client.get_experiment_by_name(EXPERIMENT)
    by_name = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(by_name) == [
        "data", "evaluate", "pipeline-smoke", "train", "train-classifier", "train-classifier-1",
    ]  # fmt: skip
    parent = by_name["pipeline-smoke"].info.run_id
    letters = by_name["train-classifier"]
    assert letters.data.tags["mlflow.parentRunId"] == parent
    assert letters.info.status == "FINISHED"
    assert letters.data.params["classifier.imgsz"] == "64"
    assert by_name["train"].data.params["yolo.single_cls"] == "True"
    # Logged by ultralytics callbacks inside the spawned training process.
    assert len(client.get_metric_history(letters.info.run_id, "train/loss")) == CLASSIFIER_EPOCHS
    member = by_name["train-classifier-1"]
    assert member.data.tags["mlflow.parentRunId"] == parent and member.info.status == "FINISHED"
    assert member.data.params["classifier.seed"] == "1"
    assert len(client.get_metric_history(member.info.run_id, "train/loss")) == 1
    evaluate = by_name["evaluate"].data.metrics
    for key in ("test_top1", "test_map50", "valid_top1", "valid_map50", "int8_test_map50"):
        assert 0.0 <= evaluate[key] <= 1.0


def test_mlflow_two_stage_champion_loads_as_one_recognizer(outcome: TrainOutcome, env, tmp_path):
    assert outcome.decision.promoted and outcome.decision.alias == CHAMPION
    folder = Path(
        mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}@{CHAMPION}", dst_path=tmp_path)
    )
    files = {p.name for p in folder.rglob("*") if p.is_file()}
    assert {"model.onnx", "classifier.onnx", "classifier.pt", "best.pt", "metadata.json"} <= files
    assert "classifier-1.onnx" in files, "the ensemble's second member ships with the model"
    recognizer = Recognizer.load(f"models:/{MODEL_NAME}@{CHAMPION}", cache_dir=tmp_path / "c")
    assert recognizer.classifier is not None and recognizer.names == LETTERS
    assert [p.name for p in recognizer.classifier.paths] == ["classifier.onnx", "classifier-1.onnx"]


def test_mlflow_two_stage_pyfunc_predicts_letters(outcome: TrainOutcome, subset_dataset: Path):
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{CHAMPION}")
    image = sorted((subset_dataset / "test" / "images").iterdir())[0]
    out = model.predict(pd.DataFrame({"image": [str(image)]}), params={"conf": 1e-6})
    assert len(out) >= 1 and set(out["letter"]) <= set(LETTERS)
