"""What both trainings (detector and letter classifier) share around ultralytics.

MLflow: ultralytics' own MLflow callback is switched off on purpose. It reads global env
vars, calls ``mlflow.autolog()``, may open and close runs itself and logs nothing under
pytest, so the run tree would depend on where it runs. Instead this module adds its own
callbacks that log to an explicit run id (params at start, metrics each epoch), and the
caller logs the artifacts. One run tree, the same everywhere.

Progress: where a display shows the trainings (:mod:`tasks.training.progress`), a training
writes its progress to a record file instead of ultralytics' own per-batch bars and epoch
lines, which :func:`quiet_console` silences (its warnings and errors still show).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tasks.core.redact import redact
from tasks.training.progress import StageProgress, State, write_record

log = logging.getLogger(__name__)


def quiet_ultralytics() -> None:
    """Disable ultralytics' own MLflow logging and analytics (see module docstring)."""
    from ultralytics.utils import SETTINGS

    wanted = {"mlflow": False, "sync": False}
    if any(SETTINGS.get(k) != v for k, v in wanted.items()):
        SETTINGS.update(wanted)


def clean_metrics(values: dict[str, Any]) -> dict[str, float]:
    """MLflow metric names may not hold parentheses; values must be finite floats."""
    clean: dict[str, float] = {}
    for name, value in values.items():
        number = float(value)
        if number == number and abs(number) != float("inf"):
            clean[name.replace("(", "").replace(")", "")] = number
    return clean


class MlflowLogger:
    """Ultralytics callbacks that log to one explicit MLflow run, best-effort.

    A tracking server that goes away mid-training must not kill the training: a failed
    write is kept and sent again with the next epoch's (MLflow's client has already retried
    it by then), and whatever is still unsent when training ends is reported in one warning.
    The run's ``results.csv``, logged with the artifacts afterwards, holds every epoch anyway.
    """

    def __init__(self, run_id: str, tracking_uri: str | None = None) -> None:
        import mlflow

        from tasks.registry.tracking import client_for

        # The one way into MLflow: a redacting client (ultralytics' args hold the data URL).
        self.client = client_for(tracking_uri or mlflow.get_tracking_uri())
        self.run_id = run_id
        self.pending_params: list[Any] = []
        self.pending_metrics: list[Any] = []
        self.params_done = False

    def attach(self, model: Any) -> None:
        """Register the callbacks on an ultralytics model before ``train``."""
        model.add_callback("on_pretrain_routine_end", self.params)
        model.add_callback("on_train_epoch_end", self.train_epoch)
        model.add_callback("on_fit_epoch_end", self.fit_epoch)
        model.add_callback("on_train_end", self.train_end)

    def params(self, trainer: Any) -> None:
        """The trainer's arguments, once (a resumed run has them already)."""
        self._args = dict(vars(trainer.args))
        self._flush()

    def _param_batch(self) -> list[Any]:
        from mlflow.entities import Param

        # A resumed run must not re-log (params are immutable).
        logged = set(self.client.get_run(self.run_id).data.params)
        return [
            Param(f"yolo.{k}", redact(str(v))[:6000])  # a weights URL may be signed
            for k, v in sorted(self._args.items())
            if f"yolo.{k}" not in logged
        ]

    def _flush(self) -> bool:
        try:
            if not self.params_done and hasattr(self, "_args"):
                params = self._param_batch()
                for start in range(0, len(params), 100):  # at most 100 params per batch
                    self.client.log_batch(self.run_id, params=params[start : start + 100])
                self.params_done = True
            while self.pending_metrics:
                batch = self.pending_metrics[:1000]  # MLflow takes 1000 metrics per batch
                self.client.log_batch(self.run_id, metrics=batch)
                del self.pending_metrics[: len(batch)]
        except Exception as error:  # the tracking server is down: keep training
            log.warning(
                "MLflow logging failed (%s); %d metric values kept to send with the next epoch",
                type(error).__name__, len(self.pending_metrics),
            )  # fmt: skip
            return False
        return True

    def _log(self, trainer: Any, values: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending_metrics += [
            Metric(k, v, now, trainer.epoch) for k, v in clean_metrics(values).items()
        ]
        self._flush()

    def train_epoch(self, trainer: Any) -> None:
        """Losses and learning rates: once per trained epoch."""
        losses = trainer.label_loss_items(trainer.tloss, prefix="train")
        self._log(trainer, {**losses, **trainer.lr})

    def fit_epoch(self, trainer: Any) -> None:
        """Validation metrics; ultralytics calls this once more (step epochs+1) for best.pt."""
        self._log(trainer, dict(trainer.metrics or {}))

    def train_end(self, trainer: Any) -> None:
        """A last try for what is unsent; never fails the training."""
        if (self.pending_metrics or not self.params_done) and not self._flush():
            log.warning(
                "MLflow run %s misses %d per-epoch values; results.csv has them all",
                self.run_id, len(self.pending_metrics),
            )  # fmt: skip


ULTRALYTICS_LOGGER = "ultralytics"


@contextmanager
def quiet_console() -> Iterator[None]:
    """Silence ultralytics' progress bars and info lines while the block runs.

    Its bars (training and validation) are off whenever its logger is above INFO, and its
    epoch lines are INFO: at WARNING both go, while its warnings and errors still show. The
    level is put back afterwards.
    """
    logger = logging.getLogger(ULTRALYTICS_LOGGER)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class ProgressHook:
    """Ultralytics callbacks that keep a stage's progress record (see tasks.training.progress).

    The record is rewritten when the state changes, at the end of every epoch, and, within an
    epoch, at most every ``every_s`` seconds.
    """

    def __init__(
        self,
        path: Path,
        metric_key: str,
        metric: str,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path, self.stage = path, path.stem
        self.metric_key, self.metric = metric_key, metric
        self.every_s, self.clock = every_s, clock
        self.best: float | None = None
        self.batches = 0
        self.written = 0.0
        self.last: StageProgress | None = None
        self.failed_writes = 0

    def attach(self, model: Any) -> None:
        """Register the callbacks on an ultralytics model before ``train``."""
        model.add_callback("on_pretrain_routine_start", self.preparing)
        model.add_callback("on_train_start", self.train_start)
        model.add_callback("on_train_epoch_start", self.epoch_start)
        model.add_callback("on_train_batch_end", self.batch_end)
        model.add_callback("on_fit_epoch_end", self.epoch_end)
        model.add_callback("on_train_end", self.train_end)

    def write(self, state: State, trainer: Any = None, epoch: int | None = None) -> None:
        """Write the record of ``state`` as ``trainer`` (if any) stands now."""
        now = self.clock()
        fields: dict[str, Any] = {"stage": self.stage, "state": state, "wall": now}
        if trainer is not None:
            start = getattr(trainer, "train_time_start", None)
            hours = getattr(trainer.args, "time", None)
            loader = getattr(trainer, "train_loader", None)
            batches = max(len(loader) if loader is not None else 0, 1)
            fields |= {
                "epoch": trainer.epoch + 1 if epoch is None else epoch,
                "epochs": int(trainer.epochs),
                "start_epoch": int(getattr(trainer, "start_epoch", 0)),
                "batch_fraction": min(self.batches / batches, 1.0),
                "elapsed_s": max(now - start, 0.0) if start else 0.0,
                "budget_s": hours * 3600 if hours else None,
            }
        elif self.last is not None:  # a failure keeps the figures of the last record
            fields = self.last.model_dump() | fields
        fields |= {"metric": self.metric, "best": self.best}
        self.last = StageProgress(**fields)
        self.written = now
        try:
            write_record(self.path, self.last)
        except OSError as error:  # progress is for people: it never stops a training
            if not self.failed_writes:
                log.warning("progress record %s not written: %s", self.path, error)
            self.failed_writes += 1

    def preparing(self, trainer: Any) -> None:
        """Loading data and building the model."""
        self.write("preparing")

    def train_start(self, trainer: Any) -> None:
        """Training starts: no epoch of this session done yet."""
        self.batches = 0
        self.write("training", trainer, epoch=trainer.start_epoch)

    def epoch_start(self, trainer: Any) -> None:
        """A new epoch: no batch of it done yet."""
        self.batches = 0

    def batch_end(self, trainer: Any) -> None:
        """One more batch; the record follows at most every ``every_s`` seconds."""
        self.batches += 1
        if self.clock() - self.written >= self.every_s:
            self.write("training", trainer, epoch=trainer.epoch)

    def epoch_end(self, trainer: Any) -> None:
        """An epoch was trained and validated (and, at the end, best.pt validated)."""
        value = (getattr(trainer, "metrics", None) or {}).get(self.metric_key)
        if getattr(trainer, "fitness", 0.0) is None:  # not validated yet (val=False): zeros
            value = None
        if value is not None and value == value:
            self.best = float(value) if self.best is None else max(self.best, float(value))
        self.batches = 0
        self.write("training", trainer)

    def train_end(self, trainer: Any) -> None:
        """The training is over."""
        self.write("done", trainer)


@contextmanager
def reporting(
    model: Any, progress: Path | None, metric_key: str, metric: str
) -> Iterator[ProgressHook | None]:
    """With ``progress`` set: a record there instead of ultralytics' console output.

    Without, nothing changes (ultralytics prints as it always does). A training that raises
    leaves a ``failed`` record.
    """
    if progress is None:
        yield None
        return
    hook = ProgressHook(progress, metric_key, metric)
    hook.attach(model)
    with quiet_console():
        try:
            yield hook
        except BaseException:
            hook.write("failed")
            raise


def note(progress: Path | None, state: State, **fields: Any) -> None:
    """Write a stage's record outside ultralytics' callbacks (preparing, reused); None: no-op."""
    if progress is None:
        return
    record = StageProgress(stage=progress.stem, state=state, wall=time.time(), **fields)
    try:
        write_record(progress, record)
    except OSError as error:  # as in ProgressHook: never the training's end
        log.warning("progress record %s not written: %s", progress, error)


def reused(progress: Path | None, result: Any, metric: str, best_key: str) -> Any:
    """Record a training found finished (``result``: its ``TrainResult``); return it."""
    note(
        progress, "reused", epoch=result.epochs_completed, epochs=result.epochs_completed,
        elapsed_s=result.train_seconds, metric=metric, best=result.metrics.get(best_key),
    )  # fmt: skip
    return result
