"""Publishing a model: its metadata and tags, and the one register step (log, register,
tags, alias) against a real sqlite store, through a failing registry call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.mlflow_state import mlflow_uris_restored

from tasks.registry import publish, tracking
from tasks.registry.models import GATE_PENDING, GATE_TAG, RECIPE_TAG, SHA256_KEY, get_version
from tasks.registry.publish import model_metadata, publish_version, version_tags

NAME = "asl-publish-test"


def test_version_tags_carry_what_the_gate_and_app_read():
    tags = version_tags(
        "data1",
        "cpu",
        "train-run",
        "eval-run",
        {"valid_top1": 0.9, "test_top1": 0.8},
        eval_dataset_id="eval1",
        started_from={"detector": "yolov5nu.pt sha256:ab"},
        recipe="r" * 16,
    )
    assert tags == {
        "dataset_id": "data1",
        RECIPE_TAG: "r" * 16,
        "eval_dataset_id": "eval1",
        "profile": "cpu",
        "train_run_id": "train-run",
        "evaluate_run_id": "eval-run",
        "started_from.detector": "yolov5nu.pt sha256:ab",
        "metric.valid_top1": "0.9",
        "metric.test_top1": "0.8",
    }
    minimal = version_tags("d", "smoke", "t", "e", {})
    assert minimal == {"dataset_id": "d", "profile": "smoke", "train_run_id": "t",
                       "evaluate_run_id": "e"}  # fmt: skip


def test_model_metadata(tmp_path: Path):
    meta = model_metadata(["A", "B"], 256, "data1", {"valid_top1": 0.5})
    assert meta["names"] == ["A", "B"] and meta["imgsz"] == 256 and meta["dataset_id"] == "data1"
    assert meta["metrics"] == {"valid_top1": 0.5}
    assert meta["trained_at"].endswith("Z") and "profile" not in meta
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "metadata.json").write_text(json.dumps({"stages": 2, "imgsz": 128}))
    full = model_metadata(
        ["A"],
        256,
        "d",
        {},
        eval_dataset_id="e",
        profile="cpu",
        started_from={"detector": {"name": "yolov5nu.pt"}},
        bundle=bundle,
    )
    assert full["eval_dataset_id"] == "e" and full["profile"] == "cpu"
    assert full["started_from"] == {"detector": {"name": "yolov5nu.pt"}}
    assert full["stages"] == 2 and full["imgsz"] == 128  # the bundle's own keys win


def test_serving_requirements_pin_what_is_installed():
    from importlib.metadata import version

    requirements = publish._requirements()
    assert f"numpy=={version('numpy')}" in requirements
    assert len(requirements) == len(publish._SERVING_PACKAGES)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A sqlite store, an experiment and a finished run; mlflow's URIs restored after."""
    with mlflow_uris_restored():
        client, experiment = tracking.connect(
            f"sqlite:///{tmp_path / 'mlflow.db'}", "publish", (tmp_path / "artifacts").as_uri()
        )
        run = client.create_run(experiment).info.run_id
        yield {"client": client, "run": run, "uri": client.tracking_uri}


def _files(tmp_path: Path) -> tuple[Path, Path]:
    weights, onnx = tmp_path / "best.pt", tmp_path / "model.onnx"
    weights.write_bytes(b"weights")
    onnx.write_bytes(b"onnx")
    return weights, onnx


def test_publish_logs_registers_tags_and_aliases(
    store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """One step: the version exists with its tags, files and hashes, and the alias points at
    it. A registry call that fails once is tried again, not lost."""
    client, run = store["client"], store["run"]
    weights, onnx = _files(tmp_path)
    failures = {"register": 1}
    real_register = publish.register

    def flaky_register(model_uri: str, tags: dict[str, str], name: str) -> Any:
        if failures["register"]:
            failures["register"] -= 1
            raise ConnectionError("the registry restarted")
        return real_register(model_uri, tags, name)

    monkeypatch.setattr(publish, "register", flaky_register)
    monkeypatch.setattr(tracking.time, "sleep", lambda seconds: None)
    meta = model_metadata(["A", "B"], 64, "data1", {"valid_top1": 0.5})
    tags = version_tags("data1", "personal", run, run, {"valid_top1": 0.5}, recipe="r1")

    version = publish_version(
        client, run, weights, onnx, meta, tags, alias="personal-ann", name=NAME
    )

    assert failures["register"] == 0, "the failing call happened and was retried"
    assert version.version == "1" and version.aliases == ("personal-ann",)
    held = get_version("personal-ann", NAME, store["uri"])
    assert held is not None and held.version == "1" and held.metrics == {"valid_top1": 0.5}
    registered = client.get_model_version(NAME, "1")
    assert registered.tags[RECIPE_TAG] == "r1" and registered.run_id == run
    logged = Path(client.download_artifacts(run, "model/artifacts/metadata.json", str(tmp_path)))
    hashes = json.loads(logged.read_text())[SHA256_KEY]
    assert set(hashes) == {"best.pt", "model.onnx"}


def test_publish_without_alias_leaves_aliases_to_the_gate(store: dict[str, Any], tmp_path: Path):
    client, run = store["client"], store["run"]
    weights, onnx = _files(tmp_path)
    tags = version_tags("data1", "smoke", run, run, {}, gated=True)
    version = publish_version(client, run, weights, onnx, {"names": ["A"]}, tags, name=NAME)
    assert version.aliases == ()
    registered = client.get_model_version(NAME, version.version)
    assert registered.aliases == [] and registered.tags[GATE_TAG] == GATE_PENDING
