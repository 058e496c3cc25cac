"""Shared bits of the benchmark scripts: where results go and how tables print."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tasks.core.settings import QUIET_ENV

for _key, _value in QUIET_ENV.items():  # what the caller set explicitly wins
    os.environ.setdefault(_key, _value)

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parents[1]
SHARED = REPO.parent / "shared" / "datasets" / "asl-letters"


def dataset_path() -> Path:
    """The dataset to measure on: ``FINGERSPELL_DATASET`` or the shared export."""
    path = Path(os.environ.get("FINGERSPELL_DATASET", SHARED))
    if not (path / "data.yaml").is_file():
        raise SystemExit(f"no dataset at {path}: set FINGERSPELL_DATASET")
    return path


def machine() -> dict[str, Any]:
    """A short description of where the figures were taken."""
    return {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` (git-ignored) and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str))
    return path


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """Print a plain aligned table."""
    cells = [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) of ``values``."""
    ordered = sorted(values)
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1]
