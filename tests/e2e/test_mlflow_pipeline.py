"""The smoke pipeline against a real MLflow tracking server: run tree, registry, gate, serving.

The module name contains ``test_mlflow`` on purpose: under such names ultralytics' own MLflow
callback would log (it stays silent under other pytest names). Ours is switched off, so the
run tree must still hold exactly our four runs.
"""

from __future__ import annotations

import base64
import json
import math
import os
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from servers import BIN, free_port, start_server, stop, wait_http

from flows.data import DataParams
from flows.pipeline import PipelineParams, pipeline_flow
from flows.train_params import GateConfig, TrainOutcome
from tasks.augment import AugmentConfig
from tasks.records import LETTERS
from tasks.registry import CHALLENGER, CHAMPION, MODEL_NAME, decide_promotion, get_version

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


EXPERIMENT = "e2e"  # read by the e2e conftest's ``env`` fixture


def _params(source: Path, margin: float = 0.0) -> PipelineParams:
    return PipelineParams(
        profile="smoke",
        data=DataParams(source=str(source), augment=AugmentConfig(copies=1)),
        gate=GateConfig(margin=margin),
    )


@pytest.fixture(scope="module")
def first(env: dict, subset_dataset: Path) -> TrainOutcome:
    return pipeline_flow(_params(subset_dataset))


@pytest.fixture(scope="module")
def second(first: TrainOutcome, subset_dataset: Path) -> TrainOutcome:
    # A margin no model can beat makes this candidate "worse" without faking any metric.
    return pipeline_flow(_params(subset_dataset, margin=1.0))


def _image_b64(dataset: Path) -> str:
    image = sorted((dataset / "test" / "images").iterdir())[0]
    return base64.b64encode(image.read_bytes()).decode()


def test_mlflow_run_tree_has_one_parent_and_three_children(first: TrainOutcome, env: dict):
    client = MlflowClient(env["uri"])
    experiment = client.get_experiment_by_name("e2e")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {run.info.run_name: run for run in runs}
    assert sorted(by_name) == ["data", "evaluate", "pipeline-smoke", "train"], "stray runs"
    parent = by_name["pipeline-smoke"].info.run_id
    for child in ("data", "train", "evaluate"):
        assert by_name[child].data.tags["mlflow.parentRunId"] == parent
        assert by_name[child].info.status == "FINISHED"

    train = by_name["train"]
    assert train.info.run_id == first.train_run_id
    assert train.data.params["yolo.imgsz"] == "160"
    assert train.data.params["recipe.model"] == "yolov5n.yaml"
    assert train.data.tags["dataset_id"] == by_name["data"].data.tags["dataset_id"]
    epochs = int(train.data.metrics["epochs_completed"])
    history = client.get_metric_history(train.info.run_id, "train/box_loss")
    assert len(history) == epochs >= 1
    artifacts = {a.path for a in client.list_artifacts(train.info.run_id, "training")}
    assert "training/results.csv" in artifacts
    assert [a.path for a in client.list_artifacts(train.info.run_id, "weights")] == [
        "weights/best.pt"
    ]

    evaluate = by_name["evaluate"].data
    for key in ("test_map50", "test_map50_95", "test_precision", "test_recall", "valid_map50"):
        assert 0.0 <= evaluate.metrics[key] <= 1.0
    eval_files = {a.path for a in client.list_artifacts(first.evaluate_run_id)}
    assert {"per_letter_test.json", "per_letter_valid.json", "promotion.json"} <= eval_files
    test_plots = {a.path for a in client.list_artifacts(first.evaluate_run_id, "evaluation/test")}
    assert any(p.endswith(".png") for p in test_plots)
    assert "dataset/preview.jpg" in {
        a.path for a in client.list_artifacts(by_name["data"].info.run_id, "dataset")
    }


def test_mlflow_first_model_becomes_champion(first: TrainOutcome):
    assert first.decision.promoted and first.decision.alias == CHAMPION
    champion = get_version(CHAMPION)
    assert champion is not None and champion.version == first.model.version
    assert champion.run_id == first.train_run_id


def test_mlflow_pyfunc_loads_by_alias_and_predicts(first: TrainOutcome, subset_dataset: Path):
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{CHAMPION}")
    frame = pd.DataFrame({"image": [_image_b64(subset_dataset)]})
    out = model.predict(frame, params={"conf": 1e-6, "max_det": 5})
    assert list(out.columns[:4]) == ["image_index", "letter", "class_id", "confidence"]
    assert len(out) >= 1, "a tiny threshold must yield detections even from a smoke model"
    assert set(out["letter"]) <= set(LETTERS)
    assert ((out["x2"] > out["x1"]) & (out["y2"] > out["y1"])).all()
    assert ((out[["x1", "x2", "y1", "y2"]] >= 0) & (out[["x1", "x2", "y1", "y2"]] <= 416)).all(
        axis=None
    )


def test_mlflow_worse_candidate_does_not_move_champion(first: TrainOutcome, second: TrainOutcome):
    assert second.model.version != first.model.version
    assert not second.decision.promoted and second.decision.alias == CHALLENGER
    assert get_version(CHAMPION).version == first.model.version
    assert get_version(CHALLENGER).version == second.model.version
    assert second.decision.champion_score is not None
    assert second.decision.candidate_score is not None
    tags = MlflowClient().get_model_version(MODEL_NAME, second.model.version).tags
    assert tags["promotion.alias"] == CHALLENGER
    assert math.isclose(float(tags["promotion.champion_score"]), second.decision.champion_score)


def test_mlflow_champion_rescored_on_other_test_data(first: TrainOutcome, second: TrainOutcome):
    candidate = get_version(CHALLENGER)
    scored = []

    def rescore(version):
        scored.append(version.version)
        return 0.25

    decision = decide_promotion(candidate, 0.2, "other-dataset", "test_map50", 0.0, rescore)
    assert scored == [first.model.version], "champion must be re-scored on the new test data"
    assert decision.champion_score == 0.25 and not decision.promoted
    assert get_version(CHAMPION).version == first.model.version


@pytest.mark.parametrize("score", [None, float("nan")])
def test_mlflow_failed_evaluation_never_moves_an_alias(second: TrainOutcome, score):
    before = {alias: get_version(alias).version for alias in (CHAMPION, CHALLENGER)}
    candidate = get_version(CHALLENGER)
    decision = decide_promotion(candidate, score, "x", "test_map50", 0.0, lambda v: 1.0)
    assert decision.alias is None and not decision.promoted
    assert {alias: get_version(alias).version for alias in (CHAMPION, CHALLENGER)} == before


def test_mlflow_models_serve_answers_over_http(first: TrainOutcome, env: dict, tmp_path: Path,
                                               subset_dataset: Path):  # fmt: skip
    port = free_port()
    log = tmp_path / "serve.log"
    process = start_server(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{MODEL_NAME}@{CHAMPION}",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        log,
        # mlflow execs uvicorn by name: the venv's bin must be on PATH, as when activated.
        env={"MLFLOW_TRACKING_URI": env["uri"], "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", process, timeout=180, log=log)
        body = json.dumps(
            {
                "dataframe_records": [{"image": _image_b64(subset_dataset)}],
                "params": {"conf": 1e-6, "max_det": 3},
            }
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = json.loads(response.read())["predictions"]
    finally:
        stop(process)
    assert 1 <= len(predictions) <= 3
    assert all(p["letter"] in LETTERS and p["x2"] > p["x1"] for p in predictions)
