"""The landmark stage (:mod:`tasks.training.landmark_stage`): finding MediaPipe's landmark model,
and the stage run end to end on real photos.

Finding the model: the weights folder first, then a download kept in the cache (the network is
the one thing faked: ``urllib.request.urlopen``), a local file under another name, and the
clear "pixels alone" outcome when it cannot be had. The stage itself runs on a copy of the
subset with MediaPipe's real landmark network and a constant stand-in for the crop classifier
(an ONNX graph written here), so no YOLO model is trained: the landmark MLP trains for a few
epochs in seconds. Its rule, figures, landmark cache and that test is never read are checked;
the Markdown summary is tested in ``test_fusion_choice.py``.
"""

from __future__ import annotations

import io
import logging
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.core.files import sha256_of
from tasks.core.records import LETTERS
from tasks.inference.landmarks import READING, TASK_FILE
from tasks.training.landmark_config import LandmarkConfig
from tasks.training.landmark_stage import LandmarkStage, find_task, train_landmark_stage
from tasks.training.weights import PRETRAINED_CACHE

DATASET_ID = "0123456789abcdef0123"  # a content id; the cache key keeps its first 16 characters
QUICK = {"epochs": 15, "hidden": 16}


def _offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every download attempt fails (no network), and is recorded."""
    asked: list[str] = []

    def refuse(url: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(str(url))
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return asked


# --- finding hand_landmarker.task ---------------------------------------------------------


def test_the_weights_folder_is_searched_first(
    landmarker_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _offline(monkeypatch)
    found = find_task(LandmarkConfig(), landmarker_task.parent, tmp_path / "cache")
    assert (found.path, found.origin) == (landmarker_task, "weights_dir")
    assert found.sha256 == sha256_of(landmarker_task)
    assert asked == [] and not (tmp_path / "cache").exists()


def test_a_download_is_kept_and_found_again_without_the_network(
    landmarker_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = landmarker_task.read_bytes()
    fetched: list[str] = []

    def serve(url: Any, *args: Any, **kwargs: Any) -> io.BytesIO:
        fetched.append(str(url))
        return io.BytesIO(payload)

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    cache, config = tmp_path / "cache", LandmarkConfig()
    first = find_task(config, tmp_path / "empty-weights", cache)
    assert fetched == [config.task] and first.origin == "download"
    assert first.path is not None and first.path.is_relative_to(cache)
    assert first.path.name == TASK_FILE and first.sha256 == sha256_of(landmarker_task)

    asked = _offline(monkeypatch)
    again = find_task(config, None, cache)
    assert asked == [] and (again.path, again.origin) == (first.path, "download")


def test_a_local_file_of_another_name_stands_in_and_says_so(
    landmarker_task: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    own = Path(shutil.copyfile(landmarker_task, tmp_path / "my-hands.task"))
    with caplog.at_level(logging.INFO, logger="tasks.training.landmark_stage"):
        found = find_task(LandmarkConfig(task=str(own)), None, tmp_path / "cache")
    assert (found.path, found.origin) == (own.resolve(), "local")
    assert f"stands in for {TASK_FILE}" in caplog.text


def test_without_the_model_the_stage_reads_pixels_alone_and_writes_nothing(
    subset_dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    asked = _offline(monkeypatch)
    config = LandmarkConfig()
    found = find_task(config, tmp_path / "empty-weights", tmp_path / "runs" / PRETRAINED_CACHE)
    assert found.path is None and asked == [config.task]
    assert f"could not download {TASK_FILE}" in (found.reason or "")
    assert str(tmp_path / "empty-weights") in (found.reason or ""), "where it looked"

    with caplog.at_level(logging.WARNING, logger="tasks.training.landmark_stage"):
        stage = train_landmark_stage(
            subset_dataset / "data.yaml", DATASET_ID, LETTERS, tmp_path / "not-read.onnx", 0.2,
            False, config, tmp_path / "landmarks", tmp_path / "runs", tmp_path / "empty-weights",
        )  # fmt: skip
    assert stage is None
    assert "no hand landmark model, the model reads pixels alone" in caplog.text
    assert not (tmp_path / "landmarks").exists()
    assert not (tmp_path / "runs" / "landmarks").exists()


# --- the stage on real photos ----------------------------------------------------------------


def _constant_classifier(path: Path, letter: str) -> Path:
    """A crop "classifier" that reads every crop as mostly ``letter`` (input read, then zeroed)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    probs = np.full((1, len(LETTERS)), 0.2 / (len(LETTERS) - 1), np.float32)
    probs[0, LETTERS.index(letter)] = 0.8
    constants = [
        numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
        numpy_helper.from_array(np.array([1, 1], np.int64), "shape"),
        numpy_helper.from_array(probs, "probs"),
    ]
    nodes = [
        helper.make_node("ReduceSum", ["images"], ["total"], keepdims=1),
        helper.make_node("Reshape", ["total", "shape"], ["flat"]),
        helper.make_node("Mul", ["flat", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "probs"], ["output0"]),
    ]
    crop = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, len(LETTERS)])
    graph = helper.make_graph(nodes, "constant", [crop], [out], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": str(dict(enumerate(LETTERS)))})
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def dataset(subset_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The subset's train and valid, and a test split whose one image cannot be read."""
    root = tmp_path_factory.mktemp("landmark-data") / "data"
    for split in ("train", "valid"):
        shutil.copytree(subset_dataset / split, root / split)
    (root / "test" / "images").mkdir(parents=True)
    (root / "test" / "labels").mkdir()
    (root / "test" / "images" / "A_broken.jpg").write_text("not an image")
    (root / "test" / "labels" / "A_broken.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    shutil.copyfile(subset_dataset / "data.yaml", root / "data.yaml")
    return root / "data.yaml"


@pytest.fixture(scope="module")
def pixels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _constant_classifier(tmp_path_factory.mktemp("pixels") / "classifier.onnx", "A")


def _run(
    dataset: Path, pixels: Path, landmarker_task: Path, root: Path, **config: Any
) -> LandmarkStage:
    stage = train_landmark_stage(
        dataset, DATASET_ID, LETTERS, pixels, 0.2, False, LandmarkConfig(**{**QUICK, **config}),
        root / "landmark-classifier", root / "runs", landmarker_task.parent,
    )  # fmt: skip
    assert stage is not None
    return stage


def _boxes(dataset: Path, split: str) -> int:
    labels = dataset.parent / split / "labels"
    return sum(
        len([line for line in path.read_text().splitlines() if line.strip()])
        for path in labels.iterdir()
    )


@pytest.fixture(scope="module")
def stage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stage")


@pytest.fixture(scope="module")
def stage(dataset: Path, pixels: Path, landmarker_task: Path, stage_root: Path) -> LandmarkStage:
    return _run(dataset, pixels, landmarker_task, stage_root)


def test_the_stage_writes_its_classifier_and_records_the_landmark_model(
    stage: LandmarkStage, landmarker_task: Path, stage_root: Path
) -> None:
    assert stage.classifier == stage_root / "landmark-classifier" / "landmarks.onnx"
    assert stage.classifier.is_file()
    assert stage.task == landmarker_task and stage.started_from.origin == "weights_dir"
    assert stage.rule.task_sha256 == sha256_of(landmarker_task) == stage.started_from.sha256
    assert (stage.rule.crop_pad, stage.rule.presence) == (
        LandmarkConfig().crop_pad,
        LandmarkConfig().presence,
    )
    assert 0.0 <= (stage.rule.landmark_weight or 0.0) <= 1.0
    assert {row["landmark_weight"] for row in stage.rows} >= {stage.rule.landmark_weight}


def test_the_figures_count_every_labelled_box_with_or_without_a_hand(
    stage: LandmarkStage, dataset: Path
) -> None:
    m = stage.metrics
    for split in ("train", "valid"):
        boxes, missing = _boxes(dataset, split), m[f"landmark_{split}_missing"]
        assert boxes > 0 and missing == int(missing) and 0 <= missing < boxes
        assert m[f"landmark_{split}_found"] == pytest.approx(1 - missing / boxes)
    assert m["landmark_train_seconds"] > 0
    for part in ("pixel", "landmark", "fused"):
        assert 0.0 <= m[f"box_valid_top1_{part}"] <= 1.0
    # The stand-in reads every crop as "A": right on exactly valid's A boxes.
    valid_a = sum(
        line.startswith("0 ")
        for path in (dataset.parent / "valid" / "labels").iterdir()
        for line in path.read_text().splitlines()
    )
    assert m["box_valid_top1_pixel"] == pytest.approx(valid_a / _boxes(dataset, "valid"))


def test_landmarks_are_cached_for_train_and_valid_only(
    stage: LandmarkStage, stage_root: Path
) -> None:
    cached = sorted(path.name for path in (stage_root / "runs" / "landmarks").iterdir())
    sha = (stage.started_from.sha256 or "")[:12]
    prefix = f"{DATASET_ID[:16]}-{sha}-pad0.2-p{LandmarkConfig().presence:g}-{READING}"
    assert cached == [f"{prefix}-train.npz", f"{prefix}-valid.npz"], "test is never read"


def test_a_rerun_reuses_the_cache_and_another_presence_reads_again(
    stage: LandmarkStage,
    dataset: Path,
    pixels: Path,
    landmarker_task: Path,
    stage_root: Path,
) -> None:
    folder = stage_root / "runs" / "landmarks"
    before = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    again = _run(dataset, pixels, landmarker_task, stage_root)
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == before
    assert again.metrics["landmark_train_missing"] == stage.metrics["landmark_train_missing"]

    stricter = _run(dataset, pixels, landmarker_task, stage_root, presence=0.9)
    added = sorted(set(path.name for path in folder.iterdir()) - set(before))
    assert [f"-p0.9-{READING}-" in name for name in added] == [True, True]
    assert stricter.rule.presence == 0.9
    assert stricter.metrics["landmark_valid_missing"] >= stage.metrics["landmark_valid_missing"]
