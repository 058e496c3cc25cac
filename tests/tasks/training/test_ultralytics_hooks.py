"""The trainings' own MLflow callbacks: params once, metrics per epoch, a dead server kept apart."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tasks.training.progress import read_records
from tasks.training.ultralytics_hooks import (
    ULTRALYTICS_LOGGER,
    MlflowLogger,
    ProgressHook,
    clean_metrics,
    note,
    quiet_ultralytics,
    reporting,
    reused,
)


class FakeClient:
    """Records log_batch calls; fails the next ``failures`` of them."""

    def __init__(self, logged_params: dict[str, str] | None = None) -> None:
        self.params: list[Any] = []
        self.metrics: list[Any] = []
        self.batches = 0
        self.failures = 0
        self.logged_params = logged_params or {}

    def get_run(self, run_id: str) -> Any:
        return SimpleNamespace(data=SimpleNamespace(params=self.logged_params))

    def log_batch(self, run_id: str, metrics: Any = (), params: Any = ()) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("tracking server down")
        self.batches += 1
        self.params += list(params)
        self.metrics += list(metrics)


def _trainer(epoch: int = 0, **args: Any) -> Any:
    return SimpleNamespace(
        args=SimpleNamespace(**(args or {"epochs": 3, "imgsz": 160})),
        epoch=epoch,
        tloss=[0.5, 0.25],
        label_loss_items=lambda loss, prefix: {f"{prefix}/box_loss": loss[0]},
        lr={"lr/pg0": 0.01},
        metrics={"metrics/mAP50(B)": 0.4, "metrics/recall(B)": float("nan")},
    )


@pytest.fixture
def logger() -> MlflowLogger:
    # An http store opens no connection until used; the fake replaces it before any call.
    hooks = MlflowLogger("run-1", "http://127.0.0.1:9")
    hooks.client = FakeClient()  # type: ignore[assignment]
    return hooks


def test_clean_metrics_drops_parentheses_and_non_finite_values():
    values = {"metrics/mAP50(B)": "0.5", "loss": float("inf"), "nan": float("nan"), "n": 3}
    assert clean_metrics(values) == {"metrics/mAP50B": 0.5, "n": 3.0}


def test_attach_registers_the_four_callbacks(logger: MlflowLogger):
    registered: list[str] = []
    logger.attach(SimpleNamespace(add_callback=lambda event, fn: registered.append(event)))
    assert registered == [
        "on_pretrain_routine_end",
        "on_train_epoch_end",
        "on_fit_epoch_end",
        "on_train_end",
    ]


def test_params_once_prefixed_and_in_batches_of_100(logger: MlflowLogger):
    args = {f"a{index:03d}": index for index in range(150)}
    logger.params(_trainer(**args))
    client: FakeClient = logger.client  # type: ignore[assignment]
    assert client.batches == 2 and len(client.params) == 150
    assert client.params[0].key == "yolo.a000" and client.params[0].value == "0"
    logger.params(_trainer(**args))  # a second call logs nothing more
    assert len(client.params) == 150


def test_a_signed_or_credentialed_url_in_the_args_is_redacted(logger: MlflowLogger):
    """ultralytics' args hold the weights it started from: a signed URL must not reach MLflow."""
    weights = "https://bucket.example/w.pt?X-Goog-Signature=SECRETSIG&X-Goog-Credential=KEY"
    logger.params(_trainer(model=weights, data="http://user:s3cret@host/data.yaml"))
    values = " ".join(p.value for p in logger.client.params)  # type: ignore[attr-defined]
    assert "SECRETSIG" not in values and "s3cret" not in values
    assert "X-Goog-Signature=***" in values


def test_a_resumed_run_does_not_log_its_params_again(logger: MlflowLogger):
    logger.client = FakeClient(logged_params={"yolo.epochs": "3"})  # type: ignore[assignment]
    logger.params(_trainer())
    assert [param.key for param in logger.client.params] == ["yolo.imgsz"]  # type: ignore[attr-defined]


def test_epoch_metrics_are_cleaned_and_stepped(logger: MlflowLogger):
    logger.train_epoch(_trainer(epoch=2))
    logger.fit_epoch(_trainer(epoch=2))
    client: FakeClient = logger.client  # type: ignore[assignment]
    assert {(m.key, m.value, m.step) for m in client.metrics} == {
        ("train/box_loss", 0.5, 2),
        ("lr/pg0", 0.01, 2),
        ("metrics/mAP50B", 0.4, 2),
    }


def test_a_dead_server_keeps_metrics_for_the_next_epoch(
    logger: MlflowLogger, caplog: pytest.LogCaptureFixture
):
    client: FakeClient = logger.client  # type: ignore[assignment]
    client.failures = 1
    with caplog.at_level(logging.WARNING, logger="tasks.training.ultralytics_hooks"):
        logger.fit_epoch(_trainer(epoch=0))
    assert client.metrics == [] and len(logger.pending_metrics) == 1
    assert "ConnectionError" in caplog.text and "1 metric values kept" in caplog.text
    logger.fit_epoch(_trainer(epoch=1))
    assert [m.step for m in client.metrics] == [0, 1] and logger.pending_metrics == []


def test_train_end_never_fails_and_says_what_is_missing(
    logger: MlflowLogger, caplog: pytest.LogCaptureFixture
):
    client: FakeClient = logger.client  # type: ignore[assignment]
    client.failures = 100
    logger.params(_trainer())
    logger.fit_epoch(_trainer())
    with caplog.at_level(logging.WARNING, logger="tasks.training.ultralytics_hooks"):
        logger.train_end(_trainer())
    assert "MLflow run run-1 misses 1 per-epoch values; results.csv has them all" in caplog.text
    client.failures = 0
    logger.train_end(_trainer())  # the last try sends params and metrics
    assert logger.params_done and len(client.metrics) == 1


def test_quiet_ultralytics_switches_off_its_mlflow_and_sync():
    from ultralytics.utils import SETTINGS

    quiet_ultralytics()
    assert SETTINGS["mlflow"] is False and SETTINGS["sync"] is False


# --- progress records instead of ultralytics' console output ---------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def _fitting(epoch: int = 0, hours: float | None = None, **metrics: float) -> Any:
    return SimpleNamespace(
        args=SimpleNamespace(time=hours), epoch=epoch, epochs=10, start_epoch=0,
        train_time_start=400.0, train_loader=[0] * 4, metrics=metrics,
    )  # fmt: skip


def test_the_hook_follows_a_training(tmp_path: Path):
    clock = Clock()
    hook = ProgressHook(tmp_path / "detector.json", "metrics/mAP50-95(B)", "mAP50-95", 5.0, clock)
    registered: list[str] = []
    hook.attach(SimpleNamespace(add_callback=lambda event, fn: registered.append(event)))
    assert {"on_train_start", "on_train_batch_end", "on_fit_epoch_end", "on_train_end"} <= set(
        registered
    )
    trainer = _fitting(hours=0.5)
    hook.train_start(trainer)
    record = read_records(tmp_path)["detector"]
    assert (record.state, record.epoch, record.elapsed_s, record.budget_s) == (
        "training", 0, 100.0, 1800.0,
    )  # fmt: skip
    hook.batch_end(trainer)  # within 5 s of the last write: not written
    assert read_records(tmp_path)["detector"].batch_fraction == 0.0
    clock.now += 5
    hook.batch_end(trainer)
    assert read_records(tmp_path)["detector"].batch_fraction == 0.5
    trainer.fitness, trainer.metrics = None, {"metrics/mAP50-95(B)": 0.0}  # val=False: zeros
    hook.epoch_end(trainer)
    assert read_records(tmp_path)["detector"].best is None
    trainer.fitness = 0.3
    for epoch, value in enumerate([0.3, float("nan"), 0.2], start=1):
        trainer.epoch, trainer.metrics = epoch, {"metrics/mAP50-95(B)": value}
        hook.epoch_end(trainer)
    record = read_records(tmp_path)["detector"]
    assert (record.epoch, record.best, record.batch_fraction) == (4, 0.3, 0.0)
    hook.train_end(trainer)
    assert read_records(tmp_path)["detector"].state == "done"


def test_reporting_quiets_ultralytics_bars_and_info_but_not_its_warnings(tmp_path: Path):
    from ultralytics.utils import LOGGER
    from ultralytics.utils.tqdm import TQDM

    registered: list[str] = []
    model = SimpleNamespace(add_callback=lambda event, fn: registered.append(event))
    logger = logging.getLogger(ULTRALYTICS_LOGGER)
    before = logger.level
    logger.setLevel(logging.INFO)  # ultralytics as it prints by default
    try:
        assert not TQDM(range(3)).disable
        with reporting(model, tmp_path / "classifier.json", "metrics/accuracy_top1", "top1"):
            assert TQDM(range(3)).disable  # the per-batch bar is off
            assert not LOGGER.isEnabledFor(logging.INFO)  # epoch lines too
            assert LOGGER.isEnabledFor(logging.WARNING)  # warnings and errors still show
        assert logger.level == logging.INFO and not TQDM(range(3)).disable
    finally:
        logger.setLevel(before)
    assert "on_train_batch_end" in registered


def test_without_a_record_ultralytics_prints_as_it_always_did():
    registered: list[str] = []
    model = SimpleNamespace(add_callback=lambda event, fn: registered.append(event))
    level = logging.getLogger(ULTRALYTICS_LOGGER).level
    with reporting(model, None, "metrics/accuracy_top1", "top1") as hook:
        assert hook is None and logging.getLogger(ULTRALYTICS_LOGGER).level == level
    assert registered == []


def test_a_training_that_raises_leaves_a_failed_record(tmp_path: Path):
    model = SimpleNamespace(add_callback=lambda event, fn: None)
    with (
        pytest.raises(RuntimeError, match="out of memory"),
        reporting(model, tmp_path / "detector.json", "k", "mAP50-95") as hook,
    ):
        assert hook is not None
        hook.epoch_end(_fitting(epoch=1, k=0.4))
        raise RuntimeError("out of memory")
    record = read_records(tmp_path)["detector"]
    assert (record.state, record.epoch, record.best) == ("failed", 2, 0.4)


def test_a_reused_training_reads_as_finished(tmp_path: Path):
    result = SimpleNamespace(
        epochs_completed=7, train_seconds=420.0, metrics={"valid_crop_top1": 0.8}
    )
    reused(tmp_path / "classifier.json", result, "top1", "valid_crop_top1")
    note(None, "preparing")  # no record file: nothing written, nothing fails
    record = read_records(tmp_path)["classifier"]
    assert (record.state, record.epoch, record.elapsed_s, record.best) == (
        "reused", 7, 420.0, 0.8,
    )  # fmt: skip


def test_a_record_that_cannot_be_written_never_stops_the_training(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the records' folder should be")
    hook = ProgressHook(blocker / "detector.json", "k", "mAP50-95")
    with caplog.at_level(logging.WARNING, logger="tasks.training.ultralytics_hooks"):
        hook.train_start(_fitting())
        hook.epoch_end(_fitting(epoch=0, k=0.1))
    assert hook.failed_writes == 2 and hook.last is not None and hook.last.epoch == 1
    assert caplog.text.count("not written") == 1
