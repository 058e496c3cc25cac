"""Where a training of a run folder stands, and how it goes on: the one resume skeleton.

Both trainings (detector and letter classifier) key a run folder by dataset and recipe, so a
retried or rerun training finds it again. This module reads what is there: a checkpoint to
resume, a training that already finished, or nothing; and keeps a resumed training honest:
its time budget counts the minutes it already trained, and its throughput counts every
session's seconds.
"""

from __future__ import annotations

import csv
import enum
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.files import run_folder_lock, write_atomic
from tasks.training.weights import StartingWeights, Transferred, load_checkpoint

log = logging.getLogger(__name__)


class Checkpoint(enum.Enum):
    """What ``last.pt`` of a run folder says about its training."""

    NONE = "none"  # nothing usable: train from the start
    PARTIAL = "partial"  # interrupted: resume from it
    FINISHED = "finished"  # ultralytics finished and stripped it: nothing to train


def checkpoint_state(path: Path) -> Checkpoint:
    """Read ``last.pt``: none, an interrupted training to resume, or a finished one.

    Ultralytics strips the optimizer from ``last.pt`` (and sets its epoch to -1) when a
    training ends, *before* its last callbacks run. A failure after that (a callback, the
    marker write, a kill) leaves a finished training without our marker. Resuming it would
    make ultralytics warn and start a new training with default arguments, so it is reported
    as finished instead. A damaged file (a kill while writing) is set aside; any other failure
    (a checkpoint the restricted loader refuses, a permission or memory error) is raised, not
    taken as a reason to throw the training away.
    """
    if not path.exists():
        return Checkpoint.NONE
    try:
        checkpoint = load_checkpoint(path)
    except OSError as error:  # a kill while writing leaves a truncated file
        if not path.is_file() or isinstance(error, PermissionError):
            raise
        aside = path.with_suffix(".corrupt")
        log.warning("checkpoint %s unreadable (%s); moved to %s, starting over", path, error, aside)
        os.replace(path, aside)
        return Checkpoint.NONE
    if checkpoint.get("epoch", -1) < 0 or checkpoint.get("optimizer") is None:
        return Checkpoint.FINISHED
    return Checkpoint.PARTIAL


def results_rows(run_dir: Path) -> list[dict[str, float]]:
    """The rows of a run's ``results.csv`` (one per validated epoch), numbers only."""
    csv_path = run_dir / "results.csv"
    if not csv_path.exists():
        return []
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k.strip(): float(v) for k, v in row.items() if v and v.strip()} for row in rows]


def trained_seconds(rows: list[dict[str, float]]) -> float:
    """Seconds trained over every session of a run.

    Ultralytics' ``time`` column restarts at zero in a resumed session (unless
    :class:`KeepTimeBudget` carried the clock over), so the total is the sum of each
    session's last value.
    """
    total, previous = 0.0, 0.0
    for row in rows:
        now = row.get("time", 0.0)
        if now < previous:  # a new session began
            total += previous
        previous = now
    return total + previous


def throughput(run_dir: Path, n_train_images: int) -> tuple[int, float, float]:
    """Epochs, wall seconds and train images per second of a run, from its ``results.csv``.

    An epoch logged twice (a kill between its row and its checkpoint) counts once. The same
    formula serves the flow and the plain ``yolo train`` CLI in the benchmark.
    """
    rows = results_rows(run_dir)
    if not rows:
        return 0, 0.0, 0.0
    epochs = len({int(row.get("epoch", i + 1)) for i, row in enumerate(rows)})
    seconds = trained_seconds(rows)
    return epochs, seconds, (epochs * n_train_images / seconds) if seconds else 0.0


def best_row(rows: list[dict[str, float]], metric: str) -> dict[str, float]:
    """The row where ``metric`` is highest (the epoch ``best.pt`` most likely holds)."""
    scored = [row for row in rows if metric in row]
    return max(scored, key=lambda row: row[metric]) if scored else {}


class KeepTimeBudget:
    """Ultralytics callbacks that make a resumed training keep its original time budget.

    With ``time`` set, ultralytics stops once ``time`` hours passed since *this session*
    started, and re-estimates the epoch count from this session's epochs alone, so every
    resume would restart the clock. These callbacks start the session's clock at the
    seconds already trained and count epochs from the first, so the budget, the epoch
    estimate and the ``time`` column of ``results.csv`` all span the whole training.
    """

    def __init__(self, seconds_before: float) -> None:
        self.seconds_before = seconds_before

    def attach(self, model: Any) -> None:
        """Register the callbacks on an ultralytics model before ``train``."""
        model.add_callback("on_train_start", self.carry_clock)
        model.add_callback("on_train_epoch_start", self.count_from_first_epoch)

    def carry_clock(self, trainer: Any) -> None:
        """Move the session's start back by the seconds trained before."""
        trainer.train_time_start -= self.seconds_before

    def count_from_first_epoch(self, trainer: Any) -> None:
        """Average epoch time over every epoch, not only this session's."""
        # The loop has read start_epoch already; ultralytics uses it after that only for
        # the epoch-time average (and its first-epoch guards, which a resume has passed).
        if trainer.args.time:
            trainer.start_epoch = 0


class TrainResult(BaseModel):
    """What a finished training left behind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_dir: Path
    best: Path
    last: Path
    epochs_completed: int
    resumed: bool
    train_seconds: float
    images_per_second: float
    metrics: dict[str, float] = Field(default_factory=dict)
    started_from: StartingWeights = Field(
        default_factory=lambda: StartingWeights(requested=None),
        description="The pretrained weights the training started from.",
    )
    transferred: tuple[int, int] | None = Field(
        default=None, description="(tensors loaded from those weights, tensors in the model)."
    )


def finish_run(
    run_dir: Path,
    n_train: int,
    fraction: float,
    resumed: bool,
    metrics: dict[str, float],
    start: StartingWeights,
    transferred: Transferred | None,
    marker: str,
    fallback_seconds: float | None = None,
) -> TrainResult:
    """Collect what a training left in ``run_dir`` and mark it finished (for reuse)."""
    weights = run_dir / "weights"
    epochs, seconds, rate = throughput(run_dir, n_train)
    result = TrainResult(
        run_dir=run_dir,
        best=weights / "best.pt" if (weights / "best.pt").exists() else weights / "last.pt",
        last=weights / "last.pt",
        epochs_completed=epochs,
        resumed=resumed,
        train_seconds=seconds if fallback_seconds is None else seconds or fallback_seconds,
        images_per_second=rate * fraction,
        metrics=metrics,
        started_from=start,
        transferred=transferred.count if transferred else None,
    )
    write_atomic(run_dir / marker, result.model_dump_json(indent=2))
    return result


class PickUp(BaseModel):
    """How a training of a run folder goes on: done already, resumed, or from the start."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    finished: TrainResult | None = None
    resume: bool = False
    seconds_before: float = 0.0


class Recording(NamedTuple):
    """How a stage turns what a training left in its run folder into a :class:`TrainResult`."""

    n_train: Callable[[], int]  # counts the training images (called only when needed)
    fraction: float  # the share of them the recipe trains on
    row_metrics: Callable[[dict[str, float]], dict[str, float]]  # a results.csv row → metrics
    best_metric: str  # the results.csv column best.pt is chosen by


def pick_up(run_dir: Path, marker: str, start: StartingWeights, recording: Recording) -> PickUp:
    """Decide how the training of ``run_dir`` goes on; the skeleton both trainings share.

    A training that finished (``marker`` written) is reused. One that finished but was not
    recorded (see :func:`checkpoint_state`) is recorded from its ``results.csv`` without
    training again; its metrics are those of the epoch where ``recording.best_metric``
    peaked. An interrupted one resumes, with the seconds it already trained.

    Args:
        run_dir: The run folder (dataset and recipe key).
        marker: The file that marks a finished training.
        start: The weights the training started from (kept in the result).
        recording: How the stage reads its run folder.
    """
    done = run_dir / marker
    weights = run_dir / "weights"
    if done.exists() and (weights / "best.pt").exists():
        log.info("training %s already finished; reusing its best.pt", run_dir.name)
        return PickUp(finished=TrainResult.model_validate_json(done.read_text()))
    state = checkpoint_state(weights / "last.pt")
    rows = results_rows(run_dir)
    if state is Checkpoint.FINISHED and (weights / "best.pt").exists():
        log.warning(
            "training %s finished but was not recorded; recording it without training again",
            run_dir.name,
        )
        metrics = recording.row_metrics(best_row(rows, recording.best_metric))
        n_train, fraction = recording.n_train(), recording.fraction
        return PickUp(
            finished=finish_run(run_dir, n_train, fraction, True, metrics, start, None, marker)
        )
    if state is Checkpoint.PARTIAL:
        seconds = trained_seconds(rows)
        log.info("resuming %s after %d epochs (%.0f s trained)", run_dir.name, len(rows), seconds)
        return PickUp(resume=True, seconds_before=seconds)
    return PickUp()


@contextmanager
def claim(
    run_dir: Path, marker: str, start: StartingWeights, recording: Recording
) -> Iterator[PickUp]:
    """Hold ``run_dir``'s lock while its training runs, and say how it goes on.

    A second training of the same run folder waits here, then finds the first one's result
    (see :func:`tasks.core.files.run_folder_lock`; the arguments are :func:`pick_up`'s).
    """
    with run_folder_lock(run_dir):
        yield pick_up(run_dir, marker, start, recording)


def resumed_model(run_dir: Path, state: PickUp) -> Any:
    """The ultralytics model of an interrupted training, keeping its time budget."""
    from ultralytics import YOLO

    model = YOLO(str(run_dir / "weights" / "last.pt"))
    KeepTimeBudget(state.seconds_before).attach(model)
    return model
