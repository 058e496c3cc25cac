"""Python child processes of a test, with this checkout importable, to kill at a chosen point."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def python_child(
    code: str, *args: str, marker: str | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -c code args…`` in the repository; return it and a line it printed.

    The child signals "I am at the point to kill" by printing a line, so a test kills it there
    every time instead of racing it. Without ``marker`` that is its first line; with one, the
    first line equal to ``marker`` (or the last before it ended: a failure to report).
    """
    child = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a kill reaches what it started too
    )
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    while marker is not None and line != marker:
        following = child.stdout.readline()
        if not following:  # it ended without reaching the point
            break
        line = following.strip()
    return child, line


def kill_group(child: subprocess.Popen[str]) -> None:
    """``kill -9`` a child and everything it started (no clean-up code runs)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
