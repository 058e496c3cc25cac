"""Training progress across processes: one record per stage, time left, rows, a summary.

Each training stage (the detector in the flow's process, each letter classifier in a process
of its own) writes a small record to ``<folder>/<stage>.json`` (atomically, through
:func:`tasks.core.files.write_atomic`); one display in the flow's process reads them all and
shows one table (:mod:`tasks.training.progress_display`). This module is the pure part: the
record, the time-left estimate, the rows and the one-line summary a display shows, and the
Markdown summary a flow publishes when it ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.core.files import write_atomic

if TYPE_CHECKING:  # the detector's module reports to this one
    from tasks.training.detector import TrainConfig
    from tasks.training.resume import TrainResult

State = Literal["waiting", "preparing", "training", "done", "reused", "failed"]
RUNNING: frozenset[str] = frozenset({"preparing", "training"})
FINISHED: frozenset[str] = frozenset({"done", "reused", "failed"})


class StageProgress(BaseModel):
    """Where one training stage stands, as its process last wrote it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str = Field(description="detector, classifier, classifier-1, landmarks, …")
    state: State
    epoch: int = Field(default=0, ge=0, description="Epochs completed.")
    epochs: int = Field(default=0, ge=0, description="The epoch bound (a time budget moves it).")
    start_epoch: int = Field(default=0, ge=0, description="First epoch of this session.")
    batch_fraction: float = Field(default=0.0, ge=0, le=1, description="Of the running epoch.")
    elapsed_s: float = Field(default=0.0, ge=0, description="Training seconds this session.")
    budget_s: float | None = Field(default=None, description="The time budget, if any.")
    metric: str = Field(default="", description="Name of the best metric (mAP50-95, top1).")
    best: float | None = Field(default=None, description="Its best value so far.")
    wall: float = Field(default=0.0, description="time.time() when the record was written.")


class StageRow(BaseModel):
    """One stage as a display shows it: every cell a string."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str
    state: str
    epoch: str
    left: str
    best: str


class StageSummary(BaseModel):
    """A finished stage, for the summary a flow publishes when it ends."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str
    epochs: int
    minutes: float
    metric: str
    best: float | None = None


def record_path(folder: Path, stage: str) -> Path:
    """The file a stage writes its progress to."""
    return folder / f"{stage}.json"


def write_record(path: Path, record: StageProgress) -> None:
    """Publish ``record`` at ``path`` whole (readers never see half a record)."""
    write_atomic(path, record.model_dump_json())


def read_records(folder: Path) -> dict[str, StageProgress]:
    """Every stage's last record in ``folder``, by stage; unreadable files are skipped."""
    records: dict[str, StageProgress] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            record = StageProgress.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            continue  # removed meanwhile, or not a record
        records[record.stage] = record
    return records


def seconds_left(
    elapsed: float, epochs_done: float, epochs_left: float, budget: float | None
) -> float | None:
    """Seconds until a training ends: its epoch bound or its time budget, whichever is first.

    Args:
        elapsed: Seconds trained so far (this session).
        epochs_done: Epochs trained in those seconds, with the running epoch's fraction.
        epochs_left: Epochs still to train before the epoch bound.
        budget: The time budget in seconds, or None.

    Returns:
        The estimate (never negative), or None while neither rate nor budget is known.
    """
    estimates = []
    if epochs_done > 0:
        estimates.append(elapsed / epochs_done * max(epochs_left, 0.0))
    if budget is not None:
        estimates.append(budget - elapsed)
    return max(min(estimates), 0.0) if estimates else None


def elapsed_now(record: StageProgress, now: float) -> float:
    """The record's elapsed seconds, moved on to ``now`` while the stage is running."""
    if record.state in RUNNING and record.wall:
        return record.elapsed_s + max(now - record.wall, 0.0)
    return record.elapsed_s


def time_left(record: StageProgress, now: float) -> float | None:
    """Seconds left for the stage of ``record`` at ``now``; 0 once it has finished."""
    if record.state in FINISHED:
        return 0.0
    if record.state != "training":
        return None
    done = record.epoch - record.start_epoch + record.batch_fraction
    left = record.epochs - record.epoch - record.batch_fraction
    return seconds_left(elapsed_now(record, now), done, left, record.budget_s)


def fraction_done(record: StageProgress, now: float) -> float:
    """How far the stage is, 0 to 1: time so far over time so far plus time left."""
    if record.state in FINISHED:
        return 1.0
    left = time_left(record, now)
    if left is not None:
        elapsed = elapsed_now(record, now)
        return elapsed / (elapsed + left) if elapsed + left > 0 else 0.0
    if record.epochs:
        return min((record.epoch + record.batch_fraction) / record.epochs, 1.0)
    return 0.0


def duration(seconds: float | None) -> str:
    """``1h 05m``, ``4m 10s``, ``35s``; ``?`` for an unknown time."""
    if seconds is None:
        return "?"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def stage_row(record: StageProgress, now: float) -> StageRow:
    """The cells a display shows for one stage."""
    epoch = f"{record.epoch}/{record.epochs}" if record.epochs else "-"
    if record.state == "training" and record.batch_fraction and record.epoch < record.epochs:
        epoch += f" ({record.batch_fraction:.0%} of {record.epoch + 1})"
    best = f"{record.metric} {record.best:.3f}" if record.best is not None else "-"
    left = (
        "-"
        if record.state in FINISHED or record.state == "waiting"
        else duration(time_left(record, now))
    )
    return StageRow(stage=record.stage, state=record.state, epoch=epoch, left=left, best=best)


def stage_rows(
    records: Mapping[str, StageProgress], stages: Iterable[str], now: float
) -> list[StageRow]:
    """One row per stage: the expected ones in order (waiting until they write), then others."""
    order = list(dict.fromkeys([*stages, *sorted(records)]))
    return [
        stage_row(records.get(stage) or StageProgress(stage=stage, state="waiting"), now)
        for stage in order
    ]


def one_line(rows: Sequence[StageRow]) -> str:
    """All stages on one line, for logs that are not a terminal."""
    parts = []
    for row in rows:
        if row.state == "waiting":
            parts.append(f"{row.stage} waiting")
            continue
        details = [f"epoch {row.epoch}"] if row.epoch != "-" else []
        details += [f"{row.left} left"] if row.left not in ("-", "?") else []
        details += [row.best] if row.best != "-" else []
        parts.append(f"{row.stage} {row.state}" + (f" ({', '.join(details)})" if details else ""))
    return "training: " + " | ".join(parts)


def change_key(records: Mapping[str, StageProgress]) -> tuple[tuple[str, str, int], ...]:
    """What a change worth a log line is: a stage's state or completed epochs."""
    return tuple((r.stage, r.state, r.epoch) for _, r in sorted(records.items()))


def stage_names(config: TrainConfig) -> list[str]:
    """The stages ``config`` trains, in the order a display lists them."""
    names = ["detector"]
    if config.classifier is not None:
        names.append("classifier")
    names += [f"classifier-{i}" for i in range(1, len(config.extra_classifiers) + 1)]
    return names + (["landmarks"] if config.landmarks is not None else [])


def stage_summary(stage: str, result: TrainResult, best: tuple[str, str]) -> StageSummary:
    """A finished training as a flow's summary shows it (``best``: display name, key)."""
    name, key = best
    return StageSummary(
        stage=stage,
        epochs=result.epochs_completed,
        minutes=result.train_seconds / 60,
        metric=name,
        best=result.metrics.get(key),
    )


def _top1(metrics: Mapping[str, float], split: str) -> str | None:
    value = metrics.get(f"{split}_top1")
    if value is None:
        return None
    low, high = metrics.get(f"{split}_top1_low"), metrics.get(f"{split}_top1_high")
    if low is None or high is None:
        return f"{value:.3f}"
    return f"{value:.3f} (95% interval {low:.3f}–{high:.3f})"


def summary_markdown(
    title: str,
    stages: Sequence[StageSummary],
    metrics: Mapping[str, float],
    model: str,
    decision: str = "",
    alias: str | None = None,
) -> str:
    """The Markdown a flow publishes when it ends: stages, top-1, the version, the decision.

    Args:
        title: The heading (``Training summary``).
        stages: Each stage's epochs, minutes and best metric.
        metrics: The evaluation's metrics (``valid_top1``, ``valid_top1_low``, …, and
            ``<name>_top1_before`` / ``_after`` pairs of a personalization).
        model: The registered version (``asl-detector v7``).
        decision: Why it got its alias, or none (the gate's reason).
        alias: The alias it got, if any.

    Returns:
        The Markdown text.
    """
    given = (f"alias `{alias}`" if alias else "no alias") + (f" ({decision})" if decision else "")
    lines = [f"## {title}", "", f"**{model}**: {given}", ""]
    if stages:
        lines += ["| stage | epochs | minutes | best |", "|---|---|---|---|"]
        for s in stages:
            best = f"{s.metric} {s.best:.3f}" if s.best is not None else "-"
            lines.append(f"| {s.stage} | {s.epochs} | {s.minutes:.1f} | {best} |")
        lines.append("")
    top1 = [(split, _top1(metrics, split)) for split in ("valid", "test")]
    rows = [f"| {split} | {text} |" for split, text in top1 if text is not None]
    pairs = sorted(k.removesuffix("_top1_before") for k in metrics if k.endswith("_top1_before"))
    rows += [
        f"| {name}: before → after | {metrics[f'{name}_top1_before']:.3f} → "
        f"{metrics[f'{name}_top1_after']:.3f} |"
        for name in pairs
        if f"{name}_top1_after" in metrics
    ]
    if rows:
        lines += ["| top-1 | value |", "|---|---|", *rows]
    else:
        lines.append("top-1: not scored")
    return "\n".join(lines) + "\n"
