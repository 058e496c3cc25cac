"""The gate's alias moves, "nothing changed" and retries, on a real sqlite MLflow registry."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from tasks.core.records import ModelVersion
from tasks.registry.models import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAME,
    RECIPE_TAG,
    find_registered,
    get_version,
    recipe_id,
)
from tasks.registry.promotion import decide_promotion, unchanged
from tasks.registry.tracking import client_for, with_retries


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowClient]:
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    # One sqlite store for the module: creating its tables takes seconds.
    yield client_for(f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}")
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])


@pytest.fixture
def registry(store: MlflowClient) -> MlflowClient:
    """The model registered afresh: no versions, no aliases."""
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):  # the first test has none to delete
        store.delete_registered_model(MODEL_NAME)
    store.create_registered_model(MODEL_NAME)
    return store


def _version(client: MlflowClient, tmp_path: Path, **tags: str) -> ModelVersion:
    # The gate reads aliases and tags only; no model files are needed behind a version.
    mv = client.create_model_version(MODEL_NAME, str(tmp_path), tags=tags)
    return ModelVersion(name=MODEL_NAME, version=str(mv.version), dataset_id=tags.get("dataset_id"))


def _results(right: int, wrong: int) -> dict[str, bool]:
    return {f"img{i:03d}.jpg": i < right for i in range(right + wrong)}


def test_the_first_model_becomes_champion(registry: MlflowClient, tmp_path: Path):
    first = _version(registry, tmp_path)
    decision = decide_promotion(first, _results(10, 5), 0.05, lambda v: None)
    assert decision.promoted and get_version(CHAMPION).version == first.version


def test_a_champion_moved_while_the_candidate_was_judged_keeps_it_challenger(
    registry: MlflowClient, tmp_path: Path
):
    old, rival, candidate = (_version(registry, tmp_path) for _ in range(3))
    registry.set_registered_model_alias(MODEL_NAME, CHAMPION, old.version)

    def rescore_while_another_run_promotes(champion: ModelVersion) -> dict[str, bool]:
        assert champion.version == old.version
        registry.set_registered_model_alias(MODEL_NAME, CHAMPION, rival.version)
        return _results(100, 44)

    decision = decide_promotion(
        candidate, _results(130, 14), 0.05, rescore_while_another_run_promotes
    )

    assert not decision.promoted and decision.alias == CHALLENGER
    assert f"champion moved to v{rival.version}" in decision.reason
    assert get_version(CHAMPION).version == rival.version, "the other run's promotion stands"
    assert get_version(CHALLENGER).version == candidate.version


def test_a_better_candidate_moves_the_champion_it_was_compared_with(
    registry: MlflowClient, tmp_path: Path
):
    old, candidate = _version(registry, tmp_path), _version(registry, tmp_path)
    registry.set_registered_model_alias(MODEL_NAME, CHAMPION, old.version)
    decision = decide_promotion(candidate, _results(130, 14), 0.05, lambda v: _results(100, 44))
    assert decision.promoted and get_version(CHAMPION).version == candidate.version


def test_the_same_dataset_and_recipe_are_found_registered(registry: MlflowClient, tmp_path: Path):
    recipe = recipe_id("data1", {"imgsz": 256, "epochs": 10})
    assert recipe == recipe_id("data1", {"epochs": 10, "imgsz": 256}), "key order is not content"
    assert recipe != recipe_id("data2", {"imgsz": 256, "epochs": 10})
    assert recipe != recipe_id("data1", {"imgsz": 320, "epochs": 10})
    assert find_registered("data1", recipe) is None

    _version(registry, tmp_path, dataset_id="data1", **{RECIPE_TAG: recipe})
    newer = _version(
        registry, tmp_path, dataset_id="data1", **{RECIPE_TAG: recipe, "metric.valid_top1": "0.9"}
    )
    _version(registry, tmp_path, dataset_id="data1", **{RECIPE_TAG: "another"})

    found = find_registered("data1", recipe)

    assert found is not None
    version, tags = found
    assert version.version == newer.version and version.metrics == {"valid_top1": 0.9}
    assert tags[RECIPE_TAG] == recipe
    assert find_registered("data2", recipe) is None
    decision = unchanged(version, 0.05)
    assert decision.alias is None and not decision.promoted
    assert decision.reason.startswith(f"nothing changed: v{newer.version}")


def test_with_retries_waits_out_a_short_outage_and_raises_a_long_one():
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("tracking server down")
        return "registered"

    assert with_retries(flaky, "registering", waits=(0, 0, 0)) == "registered"
    assert len(calls) == 3

    def down() -> str:
        raise ConnectionError("still down")

    with pytest.raises(ConnectionError, match="still down"):
        with_retries(down, "registering", waits=(0, 0))


def test_a_version_that_cannot_be_scored_reads_as_no_score(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """The gate's fallback: an unreadable champion gives "no score", not a failed flow."""
    from tasks.registry.promotion import scorer

    score = scorer(
        tmp_path / "data.yaml", tmp_path / "out", "cpu", f"sqlite:///{tmp_path / 'none.db'}"
    )
    with caplog.at_level("WARNING"):
        assert score(ModelVersion(name="no-such-model", version="9")) is None
    assert "champion v9 could not be scored" in caplog.text


def test_a_trial_is_recorded_as_judged_by_no_gate(registry: MlflowClient, tmp_path: Path):
    """A trial never moves an alias, even as the first model; a rerun sees it decided."""
    from tasks.registry.models import gate_pending
    from tasks.registry.promotion import not_judged

    trial = _version(registry, tmp_path)
    decision = not_judged(trial, 0.9, 0.05)
    assert not decision.promoted and decision.alias is None and "a trial" in decision.reason
    assert get_version(CHAMPION) is None, "no champion, though it was the first model"
    tags = registry.get_model_version(MODEL_NAME, trial.version).tags
    assert not gate_pending(tags) and tags["promotion.candidate_score"] == "0.9"
