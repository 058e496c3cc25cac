"""Registry naming, tags and metadata, and registering and finding versions in a sqlite store.

No model is trained or logged as pyfunc here (that is the flows' tests): versions point at a
plain artifact folder, which is all the registry looks at.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.mlflow_state import mlflow_uris_restored

from tasks.registry import models
from tasks.registry.models import (
    CHAMPION,
    RECIPE_TAG,
    find_registered,
    get_version,
    model_metadata,
    personal_alias,
    recipe_id,
    register,
    version_tags,
)

NAME = "asl-test"


def test_recipe_id_names_the_data_and_the_recipe():
    recipe = {"model": "yolov5n.yaml", "imgsz": 256, "classifier": {"imgsz": 128}}
    same = {"classifier": {"imgsz": 128}, "imgsz": 256, "model": "yolov5n.yaml"}
    first = recipe_id("data1", recipe)
    assert len(first) == 16 and int(first, 16) >= 0
    assert recipe_id("data1", same) == first  # key order does not matter
    assert recipe_id("data2", recipe) != first
    assert recipe_id("data1", {**recipe, "imgsz": 320}) != first
    assert recipe_id("d", {"path": Path("/x")}) == recipe_id("d", {"path": "/x"})


def test_personal_alias():
    assert personal_alias("ann") == "personal-ann"


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

    requirements = models._requirements()
    assert f"numpy=={version('numpy')}" in requirements
    assert len(requirements) == len(models._SERVING_PACKAGES)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A sqlite store with one run whose ``model`` folder looks logged; URIs restored after."""
    import mlflow

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with mlflow_uris_restored():
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        client = mlflow.MlflowClient()
        experiment = client.create_experiment("models", (root / "artifacts").as_uri())
        run = client.create_run(experiment)
        folder = root / "model"
        folder.mkdir()
        (folder / "metadata.json").write_text("{}")
        (folder / "MLmodel").write_text("flavors: {}\n")  # what makes a run folder registrable
        client.log_artifacts(run.info.run_id, str(folder), "model")
        client.set_terminated(run.info.run_id)
        yield {"uri": uri, "run_id": run.info.run_id, "client": client}


def test_register_find_and_alias(store: dict[str, Any]):
    run_id, client = store["run_id"], store["client"]
    model_uri = f"runs:/{run_id}/model"
    assert find_registered("data1", "recipe1", NAME) is None
    assert get_version(CHAMPION, NAME, store["uri"]) is None  # no such model yet

    tags = {"dataset_id": "data1", RECIPE_TAG: "recipe1", "metric.valid_top1": "0.75"}
    first = register(model_uri, tags, NAME)
    assert (first.name, first.version, first.run_id, first.dataset_id) == (
        NAME,
        "1",
        run_id,
        "data1",
    )
    second = register(model_uri, {**tags, "metric.valid_top1": "0.8"}, NAME)
    register(model_uri, {"dataset_id": "data1", RECIPE_TAG: "other"}, NAME)

    found = find_registered("data1", "recipe1", NAME)
    assert found is not None
    version, found_tags = found
    assert version.version == second.version  # the newest of the same data and recipe
    assert version.metrics == {"valid_top1": 0.8} and found_tags["metric.valid_top1"] == "0.8"
    assert find_registered("data2", "recipe1", NAME) is None

    assert get_version(CHAMPION, NAME, store["uri"]) is None  # the model exists, the alias not
    client.set_registered_model_alias(NAME, CHAMPION, first.version)
    champion = get_version(CHAMPION, NAME, store["uri"])
    assert champion is not None
    assert (champion.version, champion.aliases) == ("1", (CHAMPION,))
    assert champion.metrics == {"valid_top1": 0.75}


def test_get_version_raises_when_the_store_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Only "no such alias" means none: a server that is down must not read as no champion."""
    import mlflow
    from mlflow.exceptions import MlflowException

    def down(self: Any, name: str, alias: str) -> None:
        raise MlflowException("connection refused", error_code="INTERNAL_ERROR")

    monkeypatch.setattr(mlflow.MlflowClient, "get_model_version_by_alias", down)
    with pytest.raises(MlflowException, match="connection refused"):
        get_version(CHAMPION, NAME, f"sqlite:///{tmp_path / 'unused.db'}")
