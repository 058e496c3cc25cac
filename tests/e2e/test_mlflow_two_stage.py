"""A two-stage recipe through the pipeline against a real MLflow server.

Hand detector and letter classifier train side by side (the classifier in its own process),
a second classifier (an ensemble member) trains once the detector is done, all are evaluated
as one model, registered, and come back through the registry as one
recognizer that reads letters.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.data import DataParams
from flows.pipeline import PipelineParams, pipeline_flow
from flows.train_params import TrainOutcome
from tasks.core.records import LETTERS
from tasks.core.settings import get_settings
from tasks.data.augment import AugmentConfig
from tasks.inference.recognizer import Recognizer
from tasks.registry.models import CHAMPION, MODEL_NAME
from tasks.training.classifier_config import ClassifierConfig
from tasks.training.detector import TrainConfig
from tasks.training.landmark_config import LandmarkConfig
from tasks.training.profiles import PRETRAINED

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXPERIMENT = "two-stage"
CLASSIFIER_EPOCHS = 2


@pytest.fixture(scope="module")
def outcome(env: dict, subset_dataset: Path, shared_weights: Path) -> TrainOutcome:
    # The detector and the first classifier start from the shared weights, as `cpu` does; the
    # ensemble member from scratch (the fallback the app reports too).
    recipe = TrainConfig(
        model="yolov5n.yaml", weights=PRETRAINED, imgsz=160, epochs=1, batch=16, patience=0,
        workers=0, optimizer="AdamW", overrides={"val": False},
        classifier=ClassifierConfig(
            model="yolov5n-cls.yaml", weights=PRETRAINED, imgsz=64, epochs=CLASSIFIER_EPOCHS,
            batch=16, workers=0,
        ),
        extra_classifiers=(
            ClassifierConfig(
                model="yolo11n-cls.yaml", imgsz=64, epochs=1, batch=16, workers=0, seed=1
            ),
        ),
        # hand_landmarker.task comes from the shared weights folder, as on an offline machine.
        landmarks=LandmarkConfig(epochs=20),
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINGERSPELL_WEIGHTS_DIR", str(shared_weights))
        get_settings.cache_clear()
        return pipeline_flow(
            PipelineParams(
                profile="smoke",
                data=DataParams(source=str(subset_dataset), augment=AugmentConfig(copies=0)),
                train=recipe,
            )
        )


def test_mlflow_two_stage_records_the_weights_each_stage_started_from(
    outcome: TrainOutcome, env: dict, shared_weights: Path, tmp_path: Path
):
    sha = hashlib.sha256((shared_weights / "yolov5n-coco-backbone.pt").read_bytes()).hexdigest()
    client = MlflowClient(env["uri"])
    experiment = client.get_experiment_by_name(EXPERIMENT)
    by_name = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    detector, letters = by_name["train"].data, by_name["train-classifier"].data
    assert detector.tags["started_from.sha256"] == sha == letters.tags["started_from.sha256"]
    assert detector.tags["started_from.requested"] == PRETRAINED
    # The one-class head cannot take COCO's 80-class layers; the classifier takes its backbone.
    assert 400 < detector.metrics["pretrained_tensors_transferred"] < 427
    assert letters.metrics["pretrained_tensors_transferred"] == 198
    member = by_name["train-classifier-1"].data
    assert member.tags["started_from.name"] == "scratch"
    assert "pretrained_tensors_transferred" not in member.metrics
    version = client.get_model_version(MODEL_NAME, outcome.model.version)
    assert version.tags["started_from.detector"].startswith("yolov5n-coco-backbone.pt (sha256")
    assert version.tags["started_from.classifier"].startswith("yolov5n-coco-backbone.pt")
    folder = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{MODEL_NAME}/{outcome.model.version}", dst_path=tmp_path
        )
    )
    metadata = json.loads(next(folder.rglob("metadata.json")).read_text())
    assert metadata["started_from"]["detector"]["sha256"] == sha
    assert metadata["started_from"]["classifier"]["origin"] == "weights_dir"
    task_sha = hashlib.sha256((shared_weights / "hand_landmarker.task").read_bytes()).hexdigest()
    assert metadata["started_from"]["landmarks"]["sha256"] == task_sha
    assert metadata["started_from"]["landmarks"]["origin"] == "weights_dir"
    assert metadata["fusion"]["task_sha256"] == task_sha
    assert version.tags["started_from.landmarks"].startswith("hand_landmarker.task (sha256")


def test_mlflow_two_stage_runs_are_siblings_and_the_classifier_logs_from_its_process(
    outcome: TrainOutcome, env: dict
):
    client = MlflowClient(env["uri"])
    experiment = client.get_experiment_by_name(EXPERIMENT)
    by_name = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(by_name) == [
        "data", "evaluate", "pipeline-smoke", "train", "train-classifier", "train-classifier-1",
        "train-landmarks",
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
    landmarks = by_name["train-landmarks"]
    assert landmarks.data.tags["mlflow.parentRunId"] == parent
    assert landmarks.data.params["landmarks.epochs"] == "20"
    figures = landmarks.data.metrics
    # The boxes where no hand was found are counted, not dropped silently.
    assert figures["landmark_valid_missing"] >= 0 and 0 < figures["landmark_valid_found"] <= 1
    for reading in ("pixel", "landmark", "fused"):
        assert 0.0 <= figures[f"box_valid_top1_{reading}"] <= 1.0
        assert 0.0 <= figures[f"shifted_valid_top1_{reading}"] <= 1.0
    assert 0.0 <= figures["fusion_landmark_weight"] <= 1.0
    evaluate = by_name["evaluate"].data.metrics
    for key in (
        "test_top1",
        "test_map50",
        "valid_top1",
        "valid_map50",
        "int8_valid_top1",
        "int8_valid_map50",
    ):
        assert 0.0 <= evaluate[key] <= 1.0


def test_mlflow_two_stage_champion_loads_as_one_recognizer(outcome: TrainOutcome, env, tmp_path):
    assert outcome.decision.promoted and outcome.decision.alias == CHAMPION
    folder = Path(
        mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}@{CHAMPION}", dst_path=tmp_path)
    )
    files = {p.name for p in folder.rglob("*") if p.is_file()}
    assert {"model.onnx", "classifier.onnx", "classifier.pt", "best.pt", "metadata.json"} <= files
    assert "classifier-1.onnx" in files, "the ensemble's second member ships with the model"
    assert {"landmarks.onnx", "hand_landmarker.task"} <= files, "a model folder is self-contained"
    recognizer = Recognizer.load(f"models:/{MODEL_NAME}@{CHAMPION}", cache_dir=tmp_path / "c")
    assert recognizer.classifier is not None and recognizer.names == LETTERS
    assert [p.name for p in recognizer.classifier.paths] == ["classifier.onnx", "classifier-1.onnx"]
    assert recognizer.fused is not None, "the champion reads pixels and landmarks, fused"


def test_mlflow_two_stage_pyfunc_predicts_letters(
    outcome: TrainOutcome, subset_dataset: Path, tmp_path: Path
):
    """The served model reads what the one recognizer reads, model for model and photo by photo.

    The pyfunc loads the int8 variant when evaluation kept it, as the recognizer does with
    ``prefer="int8"``. A one-epoch model's readings are not the point (in CI it once read no
    letter on the first photos): the same rows are, and both kinds of reader read letters.
    """
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{CHAMPION}")
    images = sorted((subset_dataset / "test" / "images").iterdir())
    photos = [base64.b64encode(image.read_bytes()).decode() for image in images]  # not paths
    out = model.predict(pd.DataFrame({"image": photos}), params={"conf": 1e-6})
    assert (out["error"] == "").all() and set(out["letter"]) <= set(LETTERS)

    uri = f"models:/{MODEL_NAME}@{CHAMPION}"
    served = Recognizer.load(uri, cache_dir=tmp_path / "int8", prefer="int8")
    expected = sorted(
        (index, det.letter, float(det.confidence))
        for index, image in enumerate(images)
        for det in served.recognize_path(image, conf=1e-6).detections
    )
    rows = sorted(zip(out["image_index"], out["letter"], out["confidence"], strict=True))
    # The same letters per photo; confidences alike to float noise (threads may differ).
    assert [row[:2] for row in rows] == [row[:2] for row in expected], "the recognizer's letters"
    assert [row[2] for row in rows] == pytest.approx([row[2] for row in expected], abs=1e-4)
    fp32 = Recognizer.load(uri, cache_dir=tmp_path / "fp32")
    read = sum(len(fp32.recognize_path(image, conf=1e-6).detections) for image in images)
    assert read >= 1, "the champion reads letters in the test photos"
