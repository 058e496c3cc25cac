"""The one display: a live table on a terminal, throttled lines elsewhere, fractions reported."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from rich.console import Console
from rich.theme import Theme

from tasks.training.progress import StageProgress, record_path, write_record
from tasks.training.progress_display import ProgressDisplay


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _write(folder: Path, stage: str, **fields: object) -> None:
    record = StageProgress(stage=stage, **fields)  # type: ignore[arg-type]
    write_record(record_path(folder, stage), record)


def _display(folder: Path, clock: Clock, **kwargs: object) -> ProgressDisplay:
    return ProgressDisplay(folder, ["detector", "classifier"], clock=clock, poll_s=3600, **kwargs)  # type: ignore[arg-type]


def test_lines_on_change_at_most_every_line_s_and_a_heartbeat(tmp_path: Path):
    clock, lines = Clock(), []
    display = _display(tmp_path, clock, log_line=lines.append, line_s=10, heartbeat_s=120)
    display.poll()
    assert lines == ["training: detector waiting | classifier waiting"]
    _write(tmp_path, "detector", state="training", epoch=0, epochs=5, wall=clock.now)
    clock.now += 5
    display.poll()  # changed, but only 5 s after the last line
    assert len(lines) == 1
    clock.now += 6
    display.poll()
    assert len(lines) == 2 and lines[-1].startswith("training: detector training (epoch 0/5")
    clock.now += 60
    display.poll()  # nothing changed and no heartbeat due
    assert len(lines) == 2
    clock.now += 61
    display.poll()  # 121 s: a heartbeat
    assert len(lines) == 3
    display.poll(final=True)
    assert len(lines) == 4


def test_fractions_are_reported_when_they_move_and_once_when_done(tmp_path: Path):
    clock, reported = Clock(), []
    display = _display(
        tmp_path, clock, log_line=lambda line: None, fraction_s=10,
        on_fraction=lambda stage, fraction: reported.append((stage, round(fraction, 3))),
    )  # fmt: skip
    # A time budget of 600 s ends first: 60 s of 600 done.
    _write(
        tmp_path, "detector", state="training", epoch=1, epochs=100, elapsed_s=60,
        budget_s=600, wall=clock.now,
    )  # fmt: skip
    display.poll()
    assert reported == [("detector", 0.1)]
    clock.now += 5
    display.poll()  # too soon
    assert len(reported) == 1
    clock.now += 10  # the same record, 15 s on: 75 s of 600
    display.poll()
    assert reported[-1] == ("detector", 0.125)
    _write(tmp_path, "detector", state="done", epoch=4, epochs=4, elapsed_s=240, wall=clock.now)
    display.poll()
    display.poll()
    assert reported[-1] == ("detector", 1.0) and len(reported) == 3


def test_on_a_terminal_one_live_table_and_no_lines(tmp_path: Path):
    screen = io.StringIO()
    # Prefect's own console: a theme that inherits none of rich's styles (no table.header).
    bare = Theme({"log.web_url": "bright_blue"}, inherit=False)
    console = Console(file=screen, force_terminal=True, width=100, theme=bare)
    lines: list[str] = []
    _write(tmp_path, "classifier", state="training", epoch=2, epochs=8, metric="top1", best=0.7)
    with _display(tmp_path, Clock(), console=console, log_line=lines.append):
        _write(tmp_path, "detector", state="done", epoch=3, epochs=3, metric="mAP50-95", best=0.5)
    text = screen.getvalue()
    assert lines == []
    assert "mAP50-95 0.500" in text and "top1 0.700" in text  # the last table has both
    last = text[text.rindex("stage") :]  # the last table drawn
    assert last.index("detector") < last.index("classifier")


def test_a_failing_display_never_fails_the_training(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    def broken(line: str) -> None:
        raise OSError("log sink gone")

    with (
        caplog.at_level(logging.WARNING, logger="tasks.training.progress_display"),
        _display(tmp_path, Clock(), log_line=broken),
    ):
        pass  # its first and its last read both fail
    warnings = [r for r in caplog.records if "progress display failed" in r.getMessage()]
    assert len(warnings) == 1  # said once, not at every poll
