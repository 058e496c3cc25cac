"""What both trainings (detector and letter classifier) share around ultralytics.

MLflow: ultralytics' own MLflow callback is switched off on purpose. It reads global env
vars, calls ``mlflow.autolog()``, may open and close runs itself and logs nothing under
pytest, so the run tree would depend on where it runs. Instead this module adds its own
callbacks that log to an explicit run id (params at start, metrics each epoch), and the
caller logs the artifacts. One run tree, the same everywhere.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tasks.core.redact import redact

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
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
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
