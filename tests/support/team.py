"""Talk to the team stack of ``deployments/team/team_stack.py`` from a test.

Flow runs are created and read through Prefect's REST API (one HTTP call, no CLI start-up);
MLflow is read through its client. Only PIDs the stack recorded are ever signalled.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deployments" / "team"))

import team_postgres  # noqa: E402
import team_stack  # noqa: E402

__all__ = ["FINAL", "Prefect", "team_postgres", "team_stack"]

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Prefect:
    """A thin client of the Prefect server's REST API."""

    def __init__(self, api: str) -> None:
        self.http = httpx.Client(base_url=api, timeout=30)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def run_deployment(self, name: str, params: dict[str, Any]) -> str:
        """Create a flow run of ``flow/deployment`` with ``params``; return its id."""
        answer = self.http.get(f"/deployments/name/{name}")
        answer.raise_for_status()
        created = self.http.post(
            f"/deployments/{answer.json()['id']}/create_flow_run",
            json={"parameters": {"params": params}},
        )
        created.raise_for_status()
        return created.json()["id"]

    def flow_run(self, run_id: str) -> dict[str, Any]:
        """The flow run as the server has it."""
        answer = self.http.get(f"/flow_runs/{run_id}")
        answer.raise_for_status()
        return answer.json()

    def wait(self, run_id: str, states: set[str], timeout: float) -> dict[str, Any]:
        """Wait until the run's state type is one of ``states``; fail if it ends otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state_type"] in states:
                return run
            if run["state_type"] in FINAL:
                raise AssertionError(f"flow run {run['name']} ended {run['state_type']}: {run}")
            time.sleep(1)
        raise TimeoutError(f"flow run {run_id} not in {states} after {timeout:.0f} s")

    def read_all(self, what: str) -> list[dict[str, Any]]:
        """Every record of ``what`` (``logs``, ``flow_runs``, ``artifacts``, ``deployments``…)."""
        records: list[dict[str, Any]] = []
        while True:
            page = self.http.post(f"/{what}/filter", json={"limit": 200, "offset": len(records)})
            page.raise_for_status()
            records += page.json()
            if len(page.json()) < 200:
                return records


def flow_pid(run: dict[str, Any]) -> int:
    """The PID of the process a process worker started for ``run`` (``host:pid``)."""
    return int(str(run["infrastructure_pid"]).rsplit(":", 1)[-1])
