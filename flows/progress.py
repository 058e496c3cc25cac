"""Progress where people look: Prefect progress artifacts, the training display, the summary.

The Prefect UI shows a progress artifact per data step, training stage and evaluated split
that moves while it runs, and a Markdown summary when a training ends; the terminal shows one
table of every training stage (:mod:`tasks.training.progress_display`). Outside a flow or task
run (a plain call in a test, a script) the artifacts are skipped, and a Prefect API that fails
to take one costs a warning, never the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.context import get_run_context
from prefect.exceptions import MissingContextError

from tasks.core.records import ModelVersion
from tasks.training.progress import StageSummary, summary_markdown
from tasks.training.progress_display import ProgressDisplay, terminal_console
from tasks.training.ultralytics_hooks import quiet_console

log = logging.getLogger(__name__)


def in_run() -> bool:
    """Whether a Prefect flow or task run is going on in this context."""
    try:
        get_run_context()
    except MissingContextError:
        return False
    return True


def run_logger() -> Any:
    """The run's logger (its lines reach the Prefect UI), else this module's."""
    try:
        return get_run_logger()
    except MissingContextError:
        return log


def progress_artifact(key: str, description: str) -> UUID | None:
    """A new progress artifact at 0 %, or None outside a run (or if the API refused it)."""
    if not in_run():
        return None
    try:
        return create_progress_artifact(progress=0.0, key=key, description=description)
    except Exception as error:  # progress is for people: it never fails a run
        log.warning("no progress artifact %s: %s", key, error)
        return None


def move(artifact: UUID | None, fraction: float, description: str | None = None) -> None:
    """Move a progress artifact to ``fraction`` (0 to 1); None: nothing to move."""
    if artifact is None:
        return
    try:
        update_progress_artifact(
            artifact, progress=round(100 * min(max(fraction, 0.0), 1.0), 1),
            description=description,
        )  # fmt: skip
    except Exception as error:
        log.warning("progress artifact %s not moved: %s", artifact, error)


class Steps:
    """One progress artifact through a flow's named steps (acquire, validate, augment)."""

    def __init__(self, key: str, steps: Sequence[str]) -> None:
        self.steps = list(steps)
        self.artifact = progress_artifact(key, f"{self.steps[0]} ({', '.join(self.steps)})")

    def begin(self, step: str) -> None:
        """``step`` starts: the steps before it are done."""
        move(self.artifact, self.steps.index(step) / len(self.steps), f"{step}…")

    def done(self) -> None:
        """Every step is done."""
        move(self.artifact, 1.0, "done")


@contextmanager
def step_progress(key: str, description: str) -> Iterator[None]:
    """A progress artifact at 0 % while the block runs and at 100 % once it returns."""
    artifact = progress_artifact(key, description)
    yield
    move(artifact, 1.0, f"{description}: done")


@contextmanager
def training_display(folder: Path, stages: Sequence[str]) -> Iterator[ProgressDisplay]:
    """Show the training stages recording into ``folder`` while the block runs.

    One table in the terminal (or one line per change in logs that are not a terminal) and a
    progress artifact per stage (``progress-train-<stage>``) that moves with it. ultralytics'
    info lines in this process are off meanwhile (its warnings and errors still show).
    """
    artifacts = {
        stage: progress_artifact(f"progress-train-{stage}", f"training: {stage}")
        for stage in stages
    }
    console = terminal_console()
    logger = run_logger()

    def on_fraction(stage: str, fraction: float) -> None:
        move(artifacts.get(stage), fraction)

    # ultralytics' bars and info lines (its exports' too) would break into the table.
    with (
        quiet_console(),
        ProgressDisplay(
            folder, stages, console=console, log_line=logger.info, on_fraction=on_fraction
        ) as display,
    ):
        yield display


def publish_summary(
    key: str,
    stages: Sequence[StageSummary],
    metrics: Mapping[str, float],
    model: ModelVersion,
    decision: str = "",
    alias: str | None = None,
) -> str:
    """Publish a training's Markdown summary as the artifact ``key``; return its text.

    Args:
        key: The artifact's key (``training-summary``); its title is made from it.
        stages: Each stage's epochs, minutes and best metric.
        metrics: The evaluation's metrics.
        model: The registered version.
        decision: Why it got its alias or none (the gate's reason).
        alias: The alias it got, if any.
    """
    title = key.replace("-", " ").capitalize()
    name = f"{model.name} v{model.version}"
    markdown = summary_markdown(title, stages, metrics, name, decision, alias)
    if in_run():
        try:
            create_markdown_artifact(key=key, markdown=markdown, description=title)
        except Exception as error:
            log.warning("no summary artifact %s: %s", key, error)
    return markdown
