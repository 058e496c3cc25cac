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
from support.servers import BIN, free_port, start_server, stop, wait_http

from flows.data import DataParams
from flows.pipeline import PipelineParams, pipeline_flow
from flows.train_params import GateConfig, TrainOutcome
from tasks.core.records import LETTERS
from tasks.data.augment import AugmentConfig
from tasks.registry.models import CHALLENGER, CHAMPION, MODEL_NAME, get_version
from tasks.registry.promotion import decide_promotion

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


EXPERIMENT = "e2e"  # read by the e2e conftest's ``env`` fixture


def _params(source: Path, register_unchanged: bool = False) -> PipelineParams:
    return PipelineParams(
        profile="smoke",
        data=DataParams(source=str(source), augment=AugmentConfig(copies=1)),
        gate=GateConfig(alpha=0.05),
        register_unchanged=register_unchanged,
    )


@pytest.fixture(scope="module")
def first(env: dict, subset_dataset: Path) -> TrainOutcome:
    return pipeline_flow(_params(subset_dataset))


@pytest.fixture(scope="module")
def second(first: TrainOutcome, subset_dataset: Path) -> TrainOutcome:
    # The same data and recipe reuse the same training: a model that reads exactly the images
    # the champion reads is not better beyond chance, without faking any metric.
    return pipeline_flow(_params(subset_dataset, register_unchanged=True))


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


def test_mlflow_same_model_again_does_not_move_champion(first: TrainOutcome, second: TrainOutcome):
    assert second.model.version != first.model.version
    assert second.decision.candidate_only == second.decision.champion_only == 0
    assert not second.decision.promoted and second.decision.alias == CHALLENGER
    assert get_version(CHAMPION).version == first.model.version
    assert get_version(CHALLENGER).version == second.model.version
    assert second.decision.champion_score is not None
    assert second.decision.candidate_score is not None
    tags = MlflowClient().get_model_version(MODEL_NAME, second.model.version).tags
    assert tags["promotion.alias"] == CHALLENGER
    assert math.isclose(float(tags["promotion.champion_score"]), second.decision.champion_score)


def _results(right: int, wrong: int) -> dict[str, bool]:
    return {f"img{i:03d}.jpg": i < right for i in range(right + wrong)}


def test_mlflow_one_image_more_is_not_a_promotion(first: TrainOutcome, second: TrainOutcome):
    candidate = get_version(CHALLENGER)
    scored = []

    def rescore(version):
        scored.append(version.version)
        return _results(100, 44)

    decision = decide_promotion(candidate, _results(101, 43), 0.05, rescore)
    assert scored == [first.model.version], "the champion is scored on the candidate's images"
    assert (decision.candidate_only, decision.champion_only) == (1, 0)
    assert decision.candidate_score > decision.champion_score and not decision.promoted
    assert decision.p_value == 1.0 and "not better beyond chance" in decision.reason
    assert get_version(CHAMPION).version == first.model.version


def test_mlflow_better_beyond_chance_moves_the_champion(first: TrainOutcome, second: TrainOutcome):
    candidate = get_version(CHALLENGER)
    decision = decide_promotion(candidate, _results(130, 14), 0.05, lambda v: _results(100, 44))
    try:
        assert decision.promoted and decision.p_value < 1e-6
        assert get_version(CHAMPION).version == candidate.version
        tags = MlflowClient().get_model_version(MODEL_NAME, candidate.version).tags
        assert tags["promotion.candidate_only"] == "30" and tags["promotion.champion_only"] == "0"
    finally:  # later tests expect the first model as champion
        MlflowClient().set_registered_model_alias(MODEL_NAME, CHAMPION, first.model.version)
        MlflowClient().set_registered_model_alias(MODEL_NAME, CHALLENGER, candidate.version)


@pytest.mark.parametrize("results", [None, {}])
def test_mlflow_failed_evaluation_never_moves_an_alias(second: TrainOutcome, results):
    before = {alias: get_version(alias).version for alias in (CHAMPION, CHALLENGER)}
    candidate = get_version(CHALLENGER)
    decision = decide_promotion(candidate, results, 0.05, lambda v: _results(1, 0))
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


def test_mlflow_unchanged_data_and_recipe_register_nothing(
    first: TrainOutcome, second: TrainOutcome, subset_dataset: Path
):
    client = MlflowClient()
    versions = {v.version for v in client.search_model_versions(f"name='{MODEL_NAME}'")}

    again = pipeline_flow(_params(subset_dataset))  # the weekly retraining, nothing new

    assert {v.version for v in client.search_model_versions(f"name='{MODEL_NAME}'")} == versions
    assert again.model.version == second.model.version, "the newest of them"
    assert again.decision.alias is None and not again.decision.promoted
    assert again.decision.reason.startswith("nothing changed")
    assert again.train_run_id == second.train_run_id
    assert get_version(CHAMPION).version == first.model.version
