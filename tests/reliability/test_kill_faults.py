"""kill -9 while the dataset is acquired or augmented: the rerun builds the same dataset, and
no temp folder stays behind.

The child process is held at a chosen point (its staged copy complete, not yet published) by
a hook that prints and sleeps, so the kill lands there every time, not by a race.
A pipeline killed while it registers (after ``register()``, before the gate moved an alias)
leaves the aliases as they were; its rerun finishes the gate of the version it had registered,
without training or registering again. (A training killed mid-epoch resumes:
``tests/tasks/training/test_detector.py``.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.children import kill_group, python_child

from tasks.data.acquire import acquire, content_id
from tasks.data.augment import augment_dataset
from tasks.data.augment_config import AugmentConfig
from tasks.data.yolo_format import read_names

pytestmark = pytest.mark.slow  # child processes and real copies of the subset

HOLD_ACQUIRE = """
import sys, time
from pathlib import Path
from tasks.data import acquire as module
real = module.content_id
def held(*args, **kwargs):
    value = real(*args, **kwargs)
    print("staged", flush=True)
    time.sleep(120)
    return value
module.content_id = held
module.acquire(sys.argv[1], Path(sys.argv[2]))
"""

HOLD_AUGMENT = """
import sys, time
from pathlib import Path
from tasks.data import augment as module
from tasks.data.augment_config import AugmentConfig
from tasks.data.yolo_format import read_names
real = module._fill
def held(*args, **kwargs):
    real(*args, **kwargs)
    print("staged", flush=True)
    time.sleep(120)
module._fill = held
source = Path(sys.argv[1])
config = AugmentConfig.model_validate_json(sys.argv[3])
module.augment_dataset(source, Path(sys.argv[2]), config, read_names(source / "data.yaml"))
"""


def _kill_when_staged(code: str, *args: str) -> None:
    child, line = python_child(code, *args, marker="staged")
    try:
        assert line == "staged", "the child failed before the hook"
    finally:
        kill_group(child)  # no finally block, no atexit: nothing cleans up


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.is_dir())


def test_kill_9_during_acquire_then_the_rerun_builds_the_same_dataset(
    subset_dataset: Path, tmp_path: Path
):
    datasets = tmp_path / "datasets"
    _kill_when_staged(HOLD_ACQUIRE, str(subset_dataset), str(datasets))
    assert _hidden(datasets), "the kill left its staging folder, as kill -9 does"
    assert not (datasets / "raw").exists() or not any((datasets / "raw").iterdir())

    again = acquire(str(subset_dataset), datasets)
    clean = acquire(str(subset_dataset), tmp_path / "clean")

    assert again.id == clean.id
    assert content_id(again.local_path) == again.id
    assert _hidden(datasets) == [], "the stale staging folder was swept"


def test_kill_9_during_augment_then_the_rerun_writes_the_same_files(
    subset_dataset: Path, tmp_path: Path
):
    config = AugmentConfig(copies=2, seed=3)
    target = tmp_path / "augmented" / "subset-aug"
    _kill_when_staged(HOLD_AUGMENT, str(subset_dataset), str(target), config.model_dump_json())
    assert not target.exists() and _hidden(target.parent)

    names = read_names(subset_dataset / "data.yaml")
    counts = augment_dataset(subset_dataset, target, config, names)
    clean = tmp_path / "clean" / "subset-aug"
    assert augment_dataset(subset_dataset, clean, config, names) == counts

    assert content_id(target) == content_id(clean), "the rerun built the same bytes"
    assert _hidden(target.parent) == []


HOLD_REGISTER = """
import os, sys, time
import flows.train as module
def held(*args, **kwargs):  # register() has run: the version exists, its gate has not
    os.write(1, b"staged\\n")  # the flows' log_prints would turn a print into a log record
    time.sleep(600)
module.decide_promotion = held
from flows.data import DataParams
from flows.pipeline import PipelineParams, pipeline_flow
from tasks.data.augment_config import AugmentConfig
data = DataParams(source=sys.argv[1], augment=AugmentConfig(copies=1))
pipeline_flow(PipelineParams(profile="smoke", data=data))
"""


def test_kill_9_while_registering_leaves_the_aliases_and_the_rerun_gates_that_version(
    subset_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from mlflow import MlflowClient

    from flows.data import DataParams
    from flows.pipeline import PipelineParams, pipeline_flow
    from tasks.core.settings import get_settings
    from tasks.registry.models import CHAMPION, GATE_DECIDED, GATE_TAG, MODEL_NAME

    monkeypatch.setenv("FINGERSPELL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FINGERSPELL_MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    try:
        _kill_when_staged(HOLD_REGISTER, str(subset_dataset))
        uri = get_settings().tracking_uri
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        registered = client.search_model_versions(f"name='{MODEL_NAME}'")
        assert [str(v.version) for v in registered] == ["1"], "killed after register()"
        assert not client.get_registered_model(MODEL_NAME).aliases, "the gate moved nothing"
        results = sorted((tmp_path / "home" / "runs").rglob("results.csv"))
        assert len(results) == 1, "the training had finished"
        trained = results[0].read_text()

        data = DataParams(source=str(subset_dataset), augment=AugmentConfig(copies=1))
        outcome = pipeline_flow(PipelineParams(profile="smoke", data=data))

        assert results[0].read_text() == trained, "the finished training was reused"
        versions = client.search_model_versions(f"name='{MODEL_NAME}'")
        assert [str(v.version) for v in versions] == [outcome.model.version] == ["1"]
        assert str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version) == "1"
        assert client.get_model_version(MODEL_NAME, "1").tags[GATE_TAG] == GATE_DECIDED
        assert not outcome.decision.reason.startswith("nothing changed")
    finally:
        get_settings.cache_clear()
