"""Every benchmark script starts: its imports resolve after code moves (``--help`` only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Imported by the scripts (or served, ceiling_page.py), not run on their own.
NOT_SCRIPTS = {"_common.py", "ceiling_page.py", "simulated_signer.py"}
SCRIPTS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py") if p.name not in NOT_SCRIPTS)


def test_the_scripts_are_found():
    assert {"browser.py", "inference.py", "personalize.py", "train.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_starts(script: str):
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
