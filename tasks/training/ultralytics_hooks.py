"""What both trainings (detector and letter classifier) share around ultralytics.

MLflow: ultralytics' own MLflow callback is switched off on purpose. It reads global env
vars, calls ``mlflow.autolog()``, may open and close runs itself and logs nothing under
pytest, so the run tree would depend on where it runs. Instead this module adds its own
callbacks that log to an explicit run id (params at start, metrics each epoch), and the
caller logs the artifacts. One run tree, the same everywhere.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path
from typing import Any

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
    """Ultralytics callbacks that log to one explicit MLflow run."""

    def __init__(self, run_id: str, tracking_uri: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id

    def attach(self, model: Any) -> None:
        """Register the callbacks on an ultralytics model before ``train``."""
        model.add_callback("on_pretrain_routine_end", self.params)
        model.add_callback("on_train_epoch_end", self.train_epoch)
        model.add_callback("on_fit_epoch_end", self.fit_epoch)

    def params(self, trainer: Any) -> None:
        from mlflow.entities import Param

        logged = set(self.client.get_run(self.run_id).data.params)
        params = [
            Param(f"yolo.{k}", str(v)[:6000])
            for k, v in sorted(vars(trainer.args).items())
            if f"yolo.{k}" not in logged  # a resumed run must not re-log (params are immutable)
        ]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def _log(self, trainer: Any, values: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, trainer.epoch) for k, v in clean_metrics(values).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def train_epoch(self, trainer: Any) -> None:
        """Losses and learning rates: once per trained epoch."""
        losses = trainer.label_loss_items(trainer.tloss, prefix="train")
        self._log(trainer, {**losses, **trainer.lr})

    def fit_epoch(self, trainer: Any) -> None:
        """Validation metrics; ultralytics calls this once more (step epochs+1) for best.pt."""
        self._log(trainer, dict(trainer.metrics or {}))


def _read_results(csv_path: Path) -> list[dict[str, float]]:
    if not csv_path.exists():
        return []
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k.strip(): float(v) for k, v in row.items() if v.strip()} for row in rows]


def throughput(run_dir: Path, n_train_images: int) -> tuple[int, float, float]:
    """Epochs, wall seconds and train images per second of a run, from its ``results.csv``.

    The same formula serves the flow and the plain ``yolo train`` CLI in the benchmark.
    """
    rows = _read_results(run_dir / "results.csv")
    if not rows:
        return 0, 0.0, 0.0
    seconds = rows[-1].get("time", 0.0)
    epochs = len(rows)
    return epochs, seconds, (epochs * n_train_images / seconds) if seconds else 0.0


def usable_checkpoint(path: Path) -> bool:
    """True if ``path`` is a checkpoint to resume from; a corrupt one is set aside."""
    if not path.exists():
        return False
    try:
        import torch

        torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a kill while writing leaves a truncated file
        aside = path.with_suffix(".corrupt")
        log.warning("checkpoint %s unreadable (%s); moved to %s, starting over", path, error, aside)
        os.replace(path, aside)
        return False
    return True
