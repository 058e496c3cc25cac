"""Progress records, time left, the one table of every stage, and the summary a flow publishes."""

from __future__ import annotations

import io
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from tasks.training.progress import (
    StageProgress,
    StageSummary,
    duration,
    elapsed_now,
    fraction_done,
    one_line,
    read_records,
    record_path,
    seconds_left,
    stage_names,
    stage_rows,
    stage_summary,
    summary_markdown,
    time_left,
    write_record,
)
from tasks.training.progress_display import ProgressDisplay, table
from tasks.training.ultralytics_hooks import ProgressHook

DETECTOR_KEY, CLASSIFIER_KEY = "metrics/mAP50-95(B)", "metrics/accuracy_top1"


def _training(**fields: object) -> StageProgress:
    values = {"stage": "detector", "state": "training", "epoch": 2, "epochs": 10, "wall": 1000.0}
    return StageProgress(**(values | fields))  # type: ignore[arg-type]


# --- time left -------------------------------------------------------------------------------


def test_the_epoch_bound_ends_first():
    # 2 epochs in 100 s: 8 more take 400 s, well inside a one-hour budget.
    assert seconds_left(100.0, 2, 8, 3600.0) == pytest.approx(400.0)


def test_the_time_budget_ends_first():
    # 8 more epochs would take 400 s, but only 150 s of the budget are left.
    assert seconds_left(100.0, 2, 8, 250.0) == pytest.approx(150.0)


def test_no_rate_yet_falls_back_on_the_budget_and_else_is_unknown():
    assert seconds_left(30.0, 0, 10, 600.0) == pytest.approx(570.0)
    assert seconds_left(30.0, 0, 10, None) is None


def test_time_left_is_never_negative():
    assert seconds_left(700.0, 2, 8, 600.0) == 0.0
    assert seconds_left(100.0, 12, -2, None) == 0.0


def test_a_running_record_counts_the_time_since_it_was_written():
    record = _training(elapsed_s=100.0, wall=1000.0)
    assert elapsed_now(record, 1030.0) == pytest.approx(130.0)
    assert elapsed_now(record.model_copy(update={"state": "done"}), 1030.0) == 100.0


def test_time_left_uses_the_running_epochs_fraction_and_this_sessions_epochs():
    # Resumed at epoch 4: 1.5 epochs this session in 150 s; 4.5 epochs left: 450 s.
    record = _training(epoch=5, start_epoch=4, batch_fraction=0.5, epochs=10, elapsed_s=150.0)
    assert time_left(record, now=record.wall) == pytest.approx(450.0)


def test_time_left_of_stages_not_training():
    assert time_left(_training(state="preparing"), 2000.0) is None
    assert time_left(_training(state="done"), 2000.0) == 0.0


def test_fraction_done_is_time_so_far_over_the_whole():
    record = _training(elapsed_s=100.0, epoch=2, epochs=10)  # 400 s left
    assert fraction_done(record, record.wall) == pytest.approx(0.2)
    assert fraction_done(_training(state="preparing", epoch=0), 0.0) == 0.0
    assert fraction_done(_training(state="reused"), 0.0) == 1.0


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (None, 35.4, 250, 3900)] == ["?", "35s", "4m 10s", "1h 05m"]


# --- rows, lines, records on disk ------------------------------------------------------------


def test_rows_list_expected_stages_in_order_waiting_until_they_write():
    records = {"classifier": _training(stage="classifier", epoch=3, metric="top1", best=0.8125)}
    rows = stage_rows(records, ["detector", "classifier"], now=1000.0)
    assert [(r.stage, r.state, r.epoch, r.best) for r in rows] == [
        ("detector", "waiting", "-", "-"),
        ("classifier", "training", "3/10", "top1 0.812"),
    ]
    assert rows[0].left == "-"


def test_a_row_shows_the_running_epochs_share_and_time_left():
    record = _training(epoch=2, epochs=10, batch_fraction=0.5, elapsed_s=100.0)
    row = stage_rows({"detector": record}, ["detector"], now=record.wall)[0]
    assert row.epoch == "2/10 (50% of 3)" and row.left == "5m 00s"  # 7.5 epochs at 40 s


def test_one_line_holds_every_stage():
    records = {
        "detector": _training(elapsed_s=100.0, metric="mAP50-95", best=0.61),
        "landmarks": StageProgress(stage="landmarks", state="done", wall=1000.0),
    }
    line = one_line(stage_rows(records, ["detector", "classifier", "landmarks"], now=1000.0))
    assert line == (
        "training: detector training (epoch 2/10, 6m 40s left, mAP50-95 0.610) | "
        "classifier waiting | landmarks done"
    )


def test_records_round_trip_and_a_stray_file_is_skipped(tmp_path: Path):
    record = _training(metric="top1", best=0.5)
    write_record(record_path(tmp_path, "detector"), record)
    (tmp_path / "notes.json").write_text("{not a record")
    assert read_records(tmp_path) == {"detector": record}
    assert read_records(tmp_path / "missing") == {}


def test_a_record_refuses_unknown_fields():
    with pytest.raises(ValueError):
        StageProgress(stage="detector", state="training", epochs_total=3)  # type: ignore[call-arg]


# --- two processes, one table ----------------------------------------------------------------


def train_in_child(folder: str, stage: str, key: str, name: str, values: list[float]) -> int:
    """Drive a stage's progress callbacks as ultralytics would (a spawned process runs this)."""
    hook = ProgressHook(Path(folder) / f"{stage}.json", key, name)
    trainer = SimpleNamespace(
        args=SimpleNamespace(time=None), epoch=0, epochs=len(values), start_epoch=0,
        train_time_start=time.time(), train_loader=[0] * 4, metrics={},
    )  # fmt: skip
    hook.preparing(trainer)
    hook.train_start(trainer)
    for epoch, value in enumerate(values):
        trainer.epoch = epoch
        hook.epoch_start(trainer)
        for _ in trainer.train_loader:
            hook.batch_end(trainer)
        trainer.metrics = {key: value}
        hook.epoch_end(trainer)
    hook.train_end(trainer)
    return multiprocessing.current_process().pid or 0


def test_two_stages_written_by_two_processes_render_as_one_table(tmp_path: Path):
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        hands = pool.submit(
            train_in_child, str(tmp_path), "detector", DETECTOR_KEY, "mAP50-95", [0.2, 0.5, 0.4]
        )
        letters = pool.submit(
            train_in_child,
            str(tmp_path),
            "classifier",
            CLASSIFIER_KEY,
            "top1",
            [0.3, 0.6, 0.9, 0.7],
        )
        pids = {hands.result(), letters.result()}
    assert len(pids) == 2  # really two processes wrote them

    lines: list[str] = []
    display = ProgressDisplay(
        tmp_path, ["detector", "classifier", "landmarks"], log_line=lines.append, poll_s=3600
    )
    with display:
        pass  # it reads once on entry and once more on exit
    assert lines[-1] == (
        "training: detector done (epoch 3/3, mAP50-95 0.500) | "
        "classifier done (epoch 4/4, top1 0.900) | landmarks waiting"
    )
    out = Console(file=io.StringIO(), width=100, record=True)
    out.print(table(stage_rows(display.records, display.stages, now=time.time())))
    text = out.export_text()
    assert text.count("stage") == 1  # one table, one header
    rows = [line.split() for line in text.splitlines() if line.strip("│ ").split(" ")[0] in
            ("detector", "classifier", "landmarks")]  # fmt: skip
    assert [[cell for cell in row if cell != "│"] for row in rows] == [
        ["detector", "done", "3/3", "-", "mAP50-95", "0.500"],
        ["classifier", "done", "4/4", "-", "top1", "0.900"],
        ["landmarks", "waiting", "-", "-", "-"],
    ]


# --- the summary a flow publishes -------------------------------------------------------------


def test_summary_of_a_training():
    stages = [
        StageSummary(stage="detector", epochs=12, minutes=7.83, metric="mAP50-95", best=0.712),
        StageSummary(stage="landmarks", epochs=0, minutes=0.2, metric="fused top1"),
    ]
    metrics = {
        "valid_top1": 0.92, "valid_top1_low": 0.87, "valid_top1_high": 0.96,
        "test_top1": 0.88, "test_top1_low": 0.79, "test_top1_high": 0.94, "valid_map50": 0.9,
    }  # fmt: skip
    text = summary_markdown(
        "Training summary", stages, metrics, "asl-detector v7", "first model", "champion"
    )
    assert text.splitlines()[:3] == [
        "## Training summary",
        "",
        "**asl-detector v7**: alias `champion` (first model)",
    ]
    assert "| detector | 12 | 7.8 | mAP50-95 0.712 |" in text
    assert "| landmarks | 0 | 0.2 | - |" in text
    assert "| valid | 0.920 (95% interval 0.870–0.960) |" in text
    assert "| test | 0.880 (95% interval 0.790–0.940) |" in text
    assert text.index("| valid |") < text.index("| test |")


def test_summary_of_a_personalization_and_of_an_unscored_model():
    metrics = {
        "base_top1_before": 0.896, "base_top1_after": 0.889,
        "learner_top1_before": 0.827, "learner_top1_after": 1.0, "valid_top1": 0.889,
    }  # fmt: skip
    text = summary_markdown("Personalize summary", [], metrics, "asl-detector v9", alias="p-ann")
    assert "**asl-detector v9**: alias `p-ann`" in text and "| stage |" not in text
    assert "| base: before → after | 0.896 → 0.889 |" in text
    assert "| learner: before → after | 0.827 → 1.000 |" in text
    assert "| valid | 0.889 |" in text
    bare = summary_markdown("Training summary", [], {}, "asl-detector v2", "no valid score")
    assert "no alias (no valid score)" in bare and "top-1: not scored" in bare


def test_stage_names_follow_the_recipe():
    from tasks.training.profiles import get_profile

    assert stage_names(get_profile("smoke")) == ["detector"]
    cpu = get_profile("cpu")
    expected = ["detector", "classifier"] + (["landmarks"] if cpu.landmarks else [])
    assert stage_names(cpu) == expected
    members = cpu.model_copy(update={"extra_classifiers": (cpu.classifier, cpu.classifier)})
    assert stage_names(members)[2:4] == ["classifier-1", "classifier-2"]


def test_stage_summary_from_a_training():
    result = SimpleNamespace(
        epochs_completed=9, train_seconds=450.0, metrics={"valid_crop_top1": 0.81}
    )
    summary = stage_summary("classifier", result, ("top1", "valid_crop_top1"))  # type: ignore[arg-type]
    assert summary == StageSummary(
        stage="classifier", epochs=9, minutes=7.5, metric="top1", best=0.81
    )
