"""Reliability: a learner's frames never reach MLflow, and "delete" removes every copy of them.

The personalize flow runs for real here (captures, merge, MLflow runs in a sqlite store, the
run-folder logging), with the expensive stages replaced: the training writes what ultralytics
writes into a run folder (``train_batch0.jpg``, ``results.png``, ``results.csv``), evaluation
writes its sample picture. Then ``delete_learner`` must leave no file of the learner.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

import flows.personalize as personalize
from flows.personalize import PersonalizeParams, personalize_flow
from flows.train_stages import Trained
from tasks.core.records import Box, DatasetRef, ModelVersion
from tasks.core.settings import get_settings
from tasks.data.captures import delete_learner, learner_dir, save_burst
from tasks.registry import mlflow_runs, publish
from tasks.training.resume import TrainResult

LEARNER = "ann"
BOX = Box(x1=4, y1=4, x2=40, y2=40)


class _Stop(BaseException):
    """Ends the flow once everything is logged (registering needs a real model); not an
    Exception, which the flow's MLflow retries would wait on."""


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _frames(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(2)]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FINGERSPELL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FINGERSPELL_MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def _fake_stages(seen: dict[str, Any]) -> Any:
    """``train_stages`` as far as files and MLflow go: a run folder logged like a real one."""

    def train_stages(client, experiment_id, dataset, config, runs_dir, parent, tags, params):
        seen["runs_dir"], seen["config"] = runs_dir, config
        run_dir = runs_dir / "0123456789abcdef"
        (run_dir / "weights").mkdir(parents=True)
        (run_dir / "train_batch0.jpg").write_bytes(_jpeg(1))  # the learner's frames, tiled
        (run_dir / "results.png").write_bytes(_png_chart())
        (run_dir / "results.csv").write_text("epoch,time\n1,2.0\n")
        (run_dir / "args.yaml").write_text(f"data: {dataset.data_yaml}\n")
        best = run_dir / "weights" / "best.pt"
        best.write_bytes(b"weights")
        result = TrainResult(
            run_dir=run_dir, best=best, last=best, epochs_completed=1, resumed=False,
            train_seconds=2.0, images_per_second=1.0,
        )  # fmt: skip
        with mlflow_runs.run(client, experiment_id, "train", parent, tags) as run:
            mlflow_runs.log_training(client, run, result)
            seen["train_run"] = run
        return Trained(result=result, onnx=best, model=best, train_run=run)

    return train_stages


def _png_chart() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def _fake_evaluate(weights, dataset, split, out_dir, imgsz, device) -> Any:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "samples.jpg").write_bytes(_jpeg(2))  # predictions drawn on the learner's frames
    return SimpleNamespace(metrics_dict=lambda: {f"{split}_top1": 0.5})


@pytest.fixture
def personalized(
    home: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A personalize run of ``ann`` up to logging the model; what it saw."""
    captures = learner_dir(home, LEARNER)
    for seed in range(2):  # one train burst, one held out
        save_burst(captures, "A", _frames(seed), [BOX, BOX])
    champion = tmp_path / "champion"
    champion.mkdir()
    (champion / "best.pt").write_bytes(b"")
    seen: dict[str, Any] = {}

    def log_model(run_id, weights, onnx, meta, int8=None, extra=None):
        seen["meta"] = meta
        raise _Stop

    monkeypatch.setattr(personalize, "get_run_logger", lambda: logging.getLogger("test"))
    monkeypatch.setattr(
        personalize, "get_version", lambda alias: ModelVersion(name="m", version="1")
    )
    monkeypatch.setattr(
        personalize,
        "download_version",
        lambda version, uri: SimpleNamespace(
            meta={"profile": "smoke", "imgsz": 160}, artifacts=champion, model=champion / "best.pt"
        ),
    )
    base = DatasetRef(id="base", uri=str(dataset))
    monkeypatch.setattr(personalize, "data_flow", lambda params: base)
    monkeypatch.setattr(personalize, "find_registered", lambda dataset_id, recipe: None)
    monkeypatch.setattr(personalize, "evaluate_task", _fake_evaluate)
    monkeypatch.setattr(personalize, "train_stages", _fake_stages(seen))
    monkeypatch.setattr(publish, "log_model", log_model)
    with pytest.raises(_Stop):
        personalize_flow.fn(PersonalizeParams(learner=LEARNER, minutes=None))
    return seen


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def test_a_personal_run_logs_no_image_of_the_learner_to_mlflow(
    home: Path, personalized: dict[str, Any]
) -> None:
    uri = get_settings().tracking_uri
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    logged = {run.info.run_name: _artifacts(client, run.info.run_id) for run in runs}

    assert "training/results.csv" in logged["train"], "the run folder was logged"
    images = [f"{name}: {path}" for name, paths in logged.items() for path in paths
              if Path(path).suffix in {".jpg", ".png"}]  # fmt: skip
    assert images == []
    # ultralytics is asked for no plots; the model says whose it is (cached copies are found).
    assert personalized["config"].overrides["plots"] is False
    assert personalized["meta"]["learner"] == LEARNER


def test_delete_removes_every_copy_of_the_learners_frames_and_says_what(
    home: Path, personalized: dict[str, Any]
) -> None:
    runs_dir = personalized["runs_dir"]
    assert runs_dir.is_relative_to(home / "runs" / "personalize" / LEARNER)
    merged = home / "datasets" / "personal" / LEARNER
    assert any(merged.rglob("*.jpg")), "the merged dataset holds the frames"
    other = learner_dir(home, "bo")
    save_burst(other, "B", _frames(9), [BOX, BOX])

    removed = delete_learner(home, LEARNER)

    assert set(removed.paths) == {
        str(learner_dir(home, LEARNER)),
        str(merged),
        str(home / "runs" / "personalize" / LEARNER),
    }
    assert removed.paths[str(learner_dir(home, LEARNER))] == 10  # 4 frames and labels, index, yaml
    assert removed.files == sum(removed.paths.values()) and removed
    left = [p for p in home.rglob("*") if p.is_file() and not p.is_relative_to(other)]
    assert [p for p in left if p.suffix in {".jpg", ".png"} or LEARNER in p.parts] == []
    assert len(list(other.rglob("*.jpg"))) == 2, "another learner's captures stay"
    assert not delete_learner(home, LEARNER), "nothing left to delete"


def test_copies_of_an_older_version_and_cached_personal_models_are_removed(
    home: Path, tmp_path: Path
) -> None:
    """Before per-learner folders: datasets/personal/<id>, runs/<key>, runs/crops/<key>."""
    frame = "a-20261206090000-abc123-00"
    legacy = home / "datasets" / "personal" / "base-c0ffee"
    (legacy / "train" / "images").mkdir(parents=True)
    (legacy / "data.yaml").write_text("names: [A]\n")
    (legacy / "train" / "images" / f"{frame}.jpg").write_bytes(_jpeg(3))
    crops = home / "runs" / "crops" / "feedc0ffee000000"
    (crops / "train" / "A").mkdir(parents=True)
    (crops / "train" / "A" / f"{frame}_0_0.jpg").write_bytes(_jpeg(4))
    general_crops = home / "runs" / "crops" / "0000000000000000"
    (general_crops / "train" / "A").mkdir(parents=True)
    (general_crops / "train" / "A" / "A12_jpg.rf.1234_0_0.jpg").write_bytes(_jpeg(5))
    runs = {}
    for key, data in (
        ("detector", f"{legacy}/data.yaml"),
        ("classifier", str(crops)),
        ("general", str(home / "datasets" / "augmented" / "x" / "data.yaml")),
    ):
        runs[key] = home / "runs" / key
        runs[key].mkdir(parents=True)
        (runs[key] / "args.yaml").write_text(f"task: detect\ndata: {data}\n")
        (runs[key] / "train_batch0.jpg").write_bytes(_jpeg(6))
    cache = tmp_path / "models"
    for entry, meta in {
        "mine": {"profile": "personal", "learner": LEARNER},
        "unnamed": {"profile": "personal"},
        "theirs": {"profile": "personal", "learner": "bo"},
        "general": {"profile": "cpu"},
    }.items():
        (cache / entry / "model" / "artifacts").mkdir(parents=True)
        (cache / entry / "model" / "artifacts" / "metadata.json").write_text(json.dumps(meta))

    removed = delete_learner(home, LEARNER, model_caches=[cache])

    assert set(removed.paths) == {
        str(legacy), str(crops), str(runs["detector"]), str(runs["classifier"]),
        str(cache / "mine"), str(cache / "unnamed"),
    }  # fmt: skip
    assert removed.paths[str(legacy)] == 2
    assert sorted(p.name for p in cache.iterdir()) == ["general", "theirs"]
    assert general_crops.exists() and runs["general"].exists()
    # Cached models go only when asked.
    assert delete_learner(home, "bo").paths == {}


def test_the_personal_client_skips_images_by_suffix_or_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever calls it: one file, a whole folder, log_image; a picture under another name."""
    from tasks.registry.clients import NoImagesClient

    logged: list[tuple[str, str | None]] = []
    monkeypatch.setattr(
        MlflowClient, "log_artifact", lambda self, run, path, where=None: logged.append(
            (Path(path).name, where)
        ),
    )  # fmt: skip
    folder = tmp_path / "run"
    (folder / "sub").mkdir(parents=True)
    (folder / "results.csv").write_text("epoch\n1\n")
    (folder / "train_batch0.jpg").write_bytes(_jpeg(7))
    (folder / "sub" / "mosaic.bin").write_bytes(_jpeg(8))  # a JPEG by its bytes
    (folder / "sub" / "chart.PNG").write_bytes(_png_chart())
    (folder / "sub" / "args.yaml").write_text("plots: false\n")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # no store is written: a cheap one
    client = NoImagesClient(tracking_uri=(tmp_path / "mlruns").as_uri())

    client.log_artifacts("run-id", str(folder), "training")
    client.log_artifact("run-id", str(folder / "train_batch0.jpg"))
    client.log_image("run-id", np.zeros((4, 4, 3), np.uint8), "frame.png")

    assert logged == [("results.csv", "training"), ("args.yaml", "training/sub")]
