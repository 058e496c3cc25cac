"""Python child processes of a test, with this checkout importable, to kill at a chosen point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def python_child(code: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -c code args…`` in the repository; return it and the first line it prints.

    The child signals "I am at the point to kill" by printing a line, so a test kills it there
    every time instead of racing it.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    return child, child.stdout.readline().strip()
