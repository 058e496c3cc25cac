"""Registry naming, reading tags, and finding versions and aliases in a sqlite store.

No model is trained or logged as pyfunc here (that is the flows' tests): versions point at a
plain artifact folder, which is all the registry looks at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.mlflow_state import mlflow_uris_restored

from tasks.registry.models import (
    CHAMPION,
    RECIPE_TAG,
    find_registered,
    get_version,
    personal_alias,
    recipe_id,
    tag_metrics,
    tags_under,
    version_by_alias,
)
from tasks.registry.publish import register

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


def test_one_tag_decoder_for_metrics_and_groups():
    tags = {"metric.valid_top1": "0.75", "metric.test_top1": "0.5", "started_from.detector": "x"}
    tags |= {"dataset_id": "d", "metricless": "1"}
    assert tag_metrics(tags) == {"valid_top1": 0.75, "test_top1": 0.5}
    assert tags_under(tags, "started_from.") == {"detector": "x"}
    assert tags_under({}, "metric.") == {}


def test_version_by_alias_is_none_only_for_a_missing_alias(store: dict[str, Any]):
    client = store["client"]
    assert version_by_alias(client, "nobody", "no-such-model") is None
    register(f"runs:/{store['run_id']}/model", {"dataset_id": "d"}, "alias-test")
    assert version_by_alias(client, "nobody", "alias-test") is None
    client.set_registered_model_alias("alias-test", "somebody", "1")
    assert str(version_by_alias(client, "somebody", "alias-test").version) == "1"
