"""The resume skeleton: what a run folder's checkpoint says, an honest clock, no retrain."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from ultralytics.engine.model import Model

from tasks.training import detector
from tasks.training.detector import DONE_MARKER, TrainConfig, train
from tasks.training.resume import (
    Checkpoint,
    KeepTimeBudget,
    checkpoint_state,
    throughput,
    trained_seconds,
)


def _write_results(run_dir: Path, rows: list[tuple[int, float]]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "time", "metrics/mAP50-95(B)"])
        writer.writerows([epoch, seconds, 0.1 * epoch] for epoch, seconds in rows)


def test_checkpoint_state_tells_none_partial_finished_and_sets_corrupt_aside(tmp_path: Path):
    last = tmp_path / "last.pt"
    assert checkpoint_state(last) is Checkpoint.NONE

    torch.save({"epoch": 2, "optimizer": {"state": {}}}, last)
    assert checkpoint_state(last) is Checkpoint.PARTIAL

    # What ultralytics' strip_optimizer leaves when a training ends.
    torch.save({"epoch": -1, "optimizer": None}, last)
    assert checkpoint_state(last) is Checkpoint.FINISHED

    last.write_bytes(b"\x80\x02 truncated by a kill")
    assert checkpoint_state(last) is Checkpoint.NONE
    assert not last.exists() and last.with_suffix(".corrupt").exists()


def test_throughput_counts_every_session_and_each_epoch_once(tmp_path: Path):
    # Session one: epochs 1-3 in 30 s; killed between epoch 3's row and its checkpoint, so
    # the resumed session (its clock back at zero) logs epoch 3 again, then 4, in 25 s.
    rows = [(1, 10.0), (2, 20.0), (3, 30.0), (3, 12.0), (4, 25.0)]
    _write_results(tmp_path, rows)

    epochs, seconds, rate = throughput(tmp_path, n_train_images=100)

    assert (epochs, seconds) == (4, 55.0)
    assert rate == pytest.approx(4 * 100 / 55.0)
    assert trained_seconds([{"time": t} for _, t in rows]) == 55.0


def test_a_resumed_training_keeps_its_original_time_budget():
    trainer = SimpleNamespace(
        train_time_start=1000.0, start_epoch=7, args=SimpleNamespace(time=0.5)
    )
    budget = KeepTimeBudget(seconds_before=600.0)

    budget.carry_clock(trainer)
    budget.count_from_first_epoch(trainer)

    # Ultralytics stops at time.time() - train_time_start > time * 3600: the 600 s already
    # trained now count, and the epoch-time average spans all epochs, not this session's.
    assert trainer.train_time_start == 400.0
    assert trainer.start_epoch == 0


def test_without_a_time_budget_the_epoch_counter_is_left_alone():
    trainer = SimpleNamespace(
        train_time_start=1000.0, start_epoch=7, args=SimpleNamespace(time=None)
    )
    KeepTimeBudget(seconds_before=600.0).count_from_first_epoch(trainer)
    assert trainer.start_epoch == 7


@pytest.mark.slow
def test_a_retry_after_a_finished_but_unrecorded_training_does_not_train_again(
    subset_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = TrainConfig(
        model="yolo11n.yaml", imgsz=64, epochs=2, batch=16, workers=0, patience=0,
        overrides={"plots": False},
    )  # fmt: skip
    data_yaml = subset_yaml
    runs = tmp_path / "runs"
    real_finish = detector.finish_run

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed after ultralytics stripped last.pt")

    # The failure lands where ultralytics has finished (last.pt stripped), before our marker.
    monkeypatch.setattr(detector, "finish_run", crash)
    with pytest.raises(RuntimeError, match="stripped"):
        train(data_yaml, "subset", config, runs)
    run_dir = runs / config.key("subset")
    assert checkpoint_state(run_dir / "weights" / "last.pt") is Checkpoint.FINISHED
    rows_before = (run_dir / "results.csv").read_text()
    monkeypatch.setattr(detector, "finish_run", real_finish)
    trained_again: list[dict[str, object]] = []

    def no_training(self: object, **kwargs: object) -> None:
        # Resuming a stripped checkpoint makes ultralytics start a new training with
        # default arguments (100 epochs, in its own runs folder): that must not happen.
        trained_again.append(kwargs)

    monkeypatch.setattr(Model, "train", no_training)

    result = train(data_yaml, "subset", config, runs)

    assert trained_again == []
    assert (run_dir / "results.csv").read_text() == rows_before
    assert result.epochs_completed == 2 and result.best.exists()
    assert result.metrics.get("metrics/mAP50-95B") is not None
    assert (run_dir / DONE_MARKER).exists()
    assert train(data_yaml, "subset", config, runs) == result
