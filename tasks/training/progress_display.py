"""One display of every training stage's progress, however many processes train.

A thread in the flow's process reads the stages' records (:mod:`tasks.training.progress`) and
shows them as one table: live (``rich``) on a terminal, or, in logs that are not one (CI, the
Prefect UI), as one line whenever a stage's state or epoch changes (at most every
``line_s`` seconds, and at least every ``heartbeat_s``). It also reports each stage's fraction
done to ``on_fraction`` (the flow moves a Prefect progress artifact with it), at most every
``fraction_s`` seconds a stage. A display never fails a training: an error in it is logged
once and the display goes on.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tasks.training.progress import (
    FINISHED,
    StageProgress,
    StageRow,
    change_key,
    fraction_done,
    one_line,
    read_records,
    stage_rows,
)

log = logging.getLogger(__name__)


def terminal_console() -> Console | None:
    """The console a live table may take, or None when the output is not a terminal.

    Where Prefect's console handler writes to a terminal, its own console is used, so that
    the flow's log lines print above the table instead of through it.
    """
    for logger in (logging.getLogger("prefect"), logging.getLogger()):
        for handler in logger.handlers:
            console = getattr(handler, "console", None)
            if isinstance(console, Console) and console.is_terminal:
                return console
    return Console() if sys.stdout.isatty() else None


def table(rows: Sequence[StageRow]) -> Table:
    """The stages as one ``rich`` table."""
    grid = Table(
        title="training", title_justify="left", title_style="bold", header_style="bold",
        footer_style="", caption_style="", expand=False,
    )  # fmt: skip
    for name in ("stage", "state", "epoch", "time left", "best"):
        grid.add_column(name, justify="right" if name in ("epoch", "time left") else "left")
    for row in rows:
        grid.add_row(row.stage, row.state, row.epoch, row.left, row.best)
    return grid


def frame(rows: Sequence[StageRow], width: int) -> Text:
    """The table drawn as styled text, so that any console can show it.

    Prefect's console has a theme of its own (``inherit=False``) that lacks rich's table
    styles; text whose styles are already resolved needs no theme.
    """
    scratch = Console(file=io.StringIO(), width=width, force_terminal=True, color_system="standard")
    with scratch.capture() as captured:
        scratch.print(table(rows))
    return Text.from_ansi(captured.get().rstrip("\n"))


class ProgressDisplay:
    """Show the stages whose records are in ``folder`` while the ``with`` block runs."""

    def __init__(
        self,
        folder: Path,
        stages: Sequence[str],
        *,
        console: Console | None = None,
        log_line: Callable[[str], Any] = log.info,
        on_fraction: Callable[[str, float], Any] | None = None,
        poll_s: float = 1.0,
        line_s: float = 10.0,
        heartbeat_s: float = 120.0,
        fraction_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder, self.stages = folder, list(stages)
        self.console, self.log_line, self.on_fraction = console, log_line, on_fraction
        self.poll_s, self.line_s, self.heartbeat_s = poll_s, line_s, heartbeat_s
        self.fraction_s, self.clock = fraction_s, clock
        self.records: dict[str, StageProgress] = {}
        self.lines: list[str] = []  # what this display logged, in order
        self._key: Any = None
        self._logged_at = float("-inf")
        self._reported: dict[str, tuple[float, float]] = {}  # stage: (when, fraction)
        self._live: Live | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = False

    def poll(self, final: bool = False) -> None:
        """Read the records once and show them (the thread calls this every ``poll_s``)."""
        now = self.clock()
        self.records = read_records(self.folder)
        rows = stage_rows(self.records, self.stages, now)
        if self._live is not None:
            self._live.update(frame(rows, self._live.console.width), refresh=True)
        else:
            self._maybe_log(rows, now, final)
        if self.on_fraction is not None:
            self._report_fractions(now, final)

    def _maybe_log(self, rows: Sequence[StageRow], now: float, final: bool) -> None:
        key = change_key(self.records)
        since = now - self._logged_at
        changed = key != self._key
        if final or (changed and since >= self.line_s) or since >= self.heartbeat_s:
            line = one_line(rows)
            self.lines.append(line)
            self.log_line(line)
            self._key, self._logged_at = key, now

    def _report_fractions(self, now: float, final: bool) -> None:
        assert self.on_fraction is not None
        for stage, record in self.records.items():
            fraction = fraction_done(record, now)
            when, last = self._reported.get(stage, (float("-inf"), -1.0))
            finished = record.state in FINISHED and last < 1.0
            due = now - when >= self.fraction_s and abs(fraction - last) >= 0.01
            if finished or due or (final and fraction != last):
                self.on_fraction(stage, fraction)
                self._reported[stage] = (now, fraction)

    def _safe_poll(self, final: bool = False) -> None:
        try:
            self.poll(final)
        except Exception:  # a display must never fail a training
            if not self._failed:
                log.warning("the progress display failed; training goes on", exc_info=True)
            self._failed = True

    def _start_live(self, console: Console) -> None:
        """A live table on ``console``; if it cannot start, log lines instead."""
        live = Live(
            console=console, auto_refresh=False, transient=False, vertical_overflow="visible"
        )
        try:
            live.start()
        except Exception:
            log.warning("no live progress table; progress goes to log lines", exc_info=True)
            with contextlib.suppress(Exception):
                live.stop()  # puts sys.stdout and sys.stderr back
            return
        self._live = live

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._safe_poll()

    def __enter__(self) -> ProgressDisplay:
        """Start the display (a live table on a console, else log lines) and its thread."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.console is not None:
            self._start_live(self.console)
        self._safe_poll()
        # The thread sees this thread's context (Prefect's run context: its logger, client).
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="progress-display", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the thread, show the last state once more, and end the live table."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self._safe_poll(final=True)
        finally:
            if self._live is not None:
                self._live.stop()
