"""Progress and summary artifacts: they move inside a flow run and are skipped outside one."""

from __future__ import annotations

import warnings
from pathlib import Path

from prefect import flow
from prefect.artifacts import Artifact

from flows.progress import Steps, progress_artifact, publish_summary, training_display
from tasks.core.records import ModelVersion
from tasks.training.progress import StageProgress, StageSummary, record_path, write_record

MODEL = ModelVersion(name="asl-detector", version="3")
STAGES = [StageSummary(stage="detector", epochs=3, minutes=1.5, metric="mAP50-95", best=0.4)]
METRICS = {"valid_top1": 0.5, "valid_top1_low": 0.4, "valid_top1_high": 0.6}


def test_outside_a_run_nothing_is_published_and_nothing_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Prefect warns about artifacts outside a run
        assert progress_artifact("progress-data", "acquire") is None
        Steps("progress-data", ["acquire", "validate"]).done()
        text = publish_summary("training-summary", STAGES, METRICS, MODEL, "first model", "a")
    assert "**asl-detector v3**: alias `a` (first model)" in text


def _latest(key: str) -> object:
    artifact = Artifact.get(key)
    assert artifact is not None, key
    return artifact.data


def test_in_a_flow_run_each_artifact_moves_to_done(tmp_path: Path):
    @flow
    def progress_flow() -> list[object]:
        steps = Steps("progress-test-data", ["acquire", "validate", "augment"])
        steps.begin("validate")
        seen = [_latest("progress-test-data")]
        with training_display(tmp_path, ["detector"]):
            record = StageProgress(stage="detector", state="done", epoch=3, epochs=3)
            write_record(record_path(tmp_path, "detector"), record)
        steps.done()
        publish_summary("test-summary", STAGES, METRICS, MODEL, "first model", "champion")
        return seen

    seen = progress_flow()
    assert seen == [33.3]  # acquire done: a third of the way
    assert _latest("progress-test-data") == 100.0
    assert _latest("progress-train-detector") == 100.0
    summary = _latest("test-summary")
    assert isinstance(summary, str) and "| valid | 0.500 (95% interval 0.400–0.600) |" in summary
