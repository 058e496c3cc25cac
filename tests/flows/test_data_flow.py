"""The data flow end to end on a real subset, and its Prefect cache on a second run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.data import DataParams, data_flow
from tasks.core.settings import get_settings
from tasks.data.augment import AugmentConfig


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINGERSPELL_HOME", str(tmp_path / "home"))
        get_settings.cache_clear()
        yield tmp_path / "home"
    get_settings.cache_clear()


def _task_states(flow_run_id) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {run.name.rsplit("-", 1)[0]: run.state.name for run in runs}


def test_data_flow_builds_augmented_dataset_then_hits_cache(home: Path, subset_dataset: Path):
    params = DataParams(source=str(subset_dataset), augment=AugmentConfig(copies=2))
    state = data_flow(params, return_state=True)
    ref = state.result()

    root = ref.local_path
    assert root.is_relative_to(home / "datasets"), (root, home)
    spec = yaml.safe_load(ref.data_yaml.read_text())
    assert Path(spec["path"]).is_absolute() and spec["nc"] == 26
    assert ref.counts["train"] == 52 * 3  # originals + 2 copies
    assert ref.counts["valid"] == 26 and ref.counts["test"] == 24  # test has no E, L
    assert ref.parent_id and ref.parent_id != ref.id
    report = json.loads((home / "datasets" / "raw" / ref.parent_id / "validation.json").read_text())
    assert report  # the validation report is written beside the acquired dataset
    assert (root / "preview.jpg").stat().st_size > 0
    first_states = _task_states(state.state_details.flow_run_id)
    assert set(first_states.values()) == {"Completed"}, first_states

    mtime = (root / "data.yaml").stat().st_mtime_ns
    again = data_flow(params, return_state=True)
    assert again.result() == ref
    states = _task_states(again.state_details.flow_run_id)
    assert states == {name: "Cached" for name in first_states}, states
    assert (root / "data.yaml").stat().st_mtime_ns == mtime


def test_data_flow_without_source_says_how(home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("FINGERSPELL_DATASET", raising=False)
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="FINGERSPELL_DATASET"):
        data_flow(DataParams())
