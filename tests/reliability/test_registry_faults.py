"""A version registered but never gated: a kill or an MLflow outage between ``register()`` and
the alias step. The rerun on the same data and recipe finishes that version's gate instead of
saying "nothing changed" forever.

The registry is a real sqlite MLflow store; the gate reads tags and aliases only, so no model
files stand behind the versions, and the scores are given directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from tasks.core.records import ModelVersion
from tasks.registry import promotion, tracking
from tasks.registry.models import (
    CHAMPION,
    GATE_DECIDED,
    GATE_TAG,
    MODEL_NAME,
    find_registered,
    get_version,
    recipe_id,
)
from tasks.registry.promotion import decide_promotion, settle_registered
from tasks.registry.publish import version_tags

RESULTS = {f"img{i:03d}.jpg": i < 30 for i in range(40)}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowClient]:
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield tracking.client_for(f"sqlite:///{tmp_path_factory.mktemp('gate') / 'mlflow.db'}")
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])


@pytest.fixture
def registry(store: MlflowClient) -> MlflowClient:
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):
        store.delete_registered_model(MODEL_NAME)
    store.create_registered_model(MODEL_NAME)
    return store


def _register(client: MlflowClient, tmp_path: Path, recipe: str, **extra: str) -> ModelVersion:
    """What flows/train.py registers, before its gate runs."""
    tags = version_tags("data1", "smoke", "train-run", "eval-run", {"valid_top1": 0.75})
    mv = client.create_model_version(MODEL_NAME, str(tmp_path), tags=tags | extra)
    return ModelVersion(name=MODEL_NAME, version=str(mv.version))


def _never(version: ModelVersion) -> None:
    raise AssertionError(f"v{version.version} must not be scored")


@pytest.mark.parametrize("gate_tag", [True, False], ids=["pending-tag", "before-the-tag"])
def test_a_version_registered_then_killed_is_gated_by_the_rerun(
    registry: MlflowClient, tmp_path: Path, gate_tag: bool
):
    recipe = recipe_id("data1", {"imgsz": 256})
    # Killed right after register(): the version exists, no alias, no decision. Without the
    # tag is what a version registered before this fix looks like.
    extra = {GATE_TAG: "pending"} if gate_tag else {}
    _register(registry, tmp_path, recipe, recipe_id=recipe, **extra)

    found = find_registered("data1", recipe)
    assert found is not None
    decision = settle_registered(*found, 0.05, lambda v: RESULTS, lambda v: None)

    assert decision.promoted and not decision.reason.startswith("nothing changed")
    assert get_version(CHAMPION).version == "1"
    assert registry.get_model_version(MODEL_NAME, "1").tags[GATE_TAG] == GATE_DECIDED

    again = find_registered("data1", recipe)
    assert again is not None
    later = settle_registered(*again, 0.05, _never, _never)
    assert later.reason.startswith("nothing changed: v1"), "decided once, then unchanged"


def test_mlflow_down_at_the_alias_step_leaves_it_pending_and_the_rerun_gates_it(
    registry: MlflowClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    recipe = recipe_id("data1", {"imgsz": 320})
    candidate = _register(registry, tmp_path, recipe, recipe_id=recipe, gate="pending")
    monkeypatch.setattr(tracking.time, "sleep", lambda seconds: None)
    real = MlflowClient.set_registered_model_alias

    def down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("tracking server down")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", down)
    with pytest.raises(ConnectionError):
        decide_promotion(candidate, RESULTS, 0.05, lambda v: None)
    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", real)
    assert get_version(CHAMPION) is None, "nothing moved"

    found = find_registered("data1", recipe)
    assert found is not None
    decision = settle_registered(*found, 0.05, lambda v: RESULTS, lambda v: None)

    assert decision.promoted and get_version(CHAMPION).version == candidate.version


def test_an_alias_moved_before_the_kill_stands_and_is_only_recorded(
    registry: MlflowClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    recipe = recipe_id("data1", {"imgsz": 416})
    candidate = _register(registry, tmp_path, recipe, recipe_id=recipe, gate="pending")
    # Killed after the alias moved, before the decision was recorded.
    registry.set_registered_model_alias(MODEL_NAME, CHAMPION, candidate.version)
    monkeypatch.setattr(promotion, "decide_promotion", _never)

    found = find_registered("data1", recipe)
    assert found is not None
    decision = settle_registered(*found, 0.05, _never, _never)

    assert decision.promoted and decision.alias == CHAMPION
    assert get_version(CHAMPION).version == candidate.version
    tags = registry.get_model_version(MODEL_NAME, candidate.version).tags
    assert tags[GATE_TAG] == GATE_DECIDED and tags["promotion.alias"] == CHAMPION


def test_a_pending_version_that_cannot_be_scored_now_stays_pending(
    registry: MlflowClient, tmp_path: Path
):
    recipe = recipe_id("data1", {"imgsz": 480})
    _register(registry, tmp_path, recipe, recipe_id=recipe, gate="pending")

    found = find_registered("data1", recipe)
    assert found is not None
    decision = settle_registered(*found, 0.05, lambda v: None, _never)

    assert decision.alias is None and "stays pending" in decision.reason
    assert get_version(CHAMPION) is None
    assert registry.get_model_version(MODEL_NAME, "1").tags[GATE_TAG] == "pending"
