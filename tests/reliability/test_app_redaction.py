"""Reliability: what the app shows of a failed personalize run holds no credential.

The Teach page shows the personalize child's output while it runs and its error when it fails.
A child prints what no logging filter sees: a traceback, and MLflow's own messages, which name
the tracking URL with its password. Here the child is a real Python that talks to a
credentialed tracking URL nobody answers; nothing the page could show may hold the password.
"""

from __future__ import annotations

import threading
import time

import pytest

import ui.personalize_job
from ui.personalize_job import PersonalizeJob, launch_flow

SECRET = "s3cret"
TRACKING = f"http://user:{SECRET}@127.0.0.1:1/"
# What the flow does first: ask the tracking server. MLflow's error names the URL it asked.
_CHILD = f"""
import sys
from mlflow import MlflowClient
print("connecting to {TRACKING} for", sys.argv[1], flush=True)
MlflowClient({TRACKING!r}).search_experiments()
"""


@pytest.fixture
def mlflow_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child above, failing within seconds (no retries, a short timeout)."""
    monkeypatch.setattr(ui.personalize_job, "_CHILD", _CHILD)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def test_a_failed_child_shows_its_mlflow_error_without_the_password(mlflow_child: None) -> None:
    lines: list[str] = []
    with pytest.raises(RuntimeError) as failed:
        launch_flow("ann", lines.append, threading.Event())

    message = str(failed.value)
    # One line: the exception the traceback ends with, not the traceback.
    assert "\n" not in message and message.startswith("mlflow.exceptions.MlflowException")
    assert "http://user:***@127.0.0.1:1/api/2.0/mlflow/experiments/search" in message
    assert any(line.startswith("Traceback") for line in lines), "the child did fail"
    assert "connecting to http://user:***@127.0.0.1:1/ for ann" in lines
    assert not [line for line in [*lines, message] if SECRET in line]


def test_the_job_the_page_reads_holds_no_password(mlflow_child: None) -> None:
    job = PersonalizeJob("ann", launch_flow)
    job.start()
    deadline = time.monotonic() + 60
    while job.state == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.state == "failed"
    assert job.error and "user:***@127.0.0.1" in job.error
    assert SECRET not in job.error and not [line for line in job.lines if SECRET in line]


def test_any_launcher_output_is_redacted_before_the_page_sees_it() -> None:
    """The job redacts whatever the launcher gives it, not only what launch_flow read."""

    def launcher(learner: str, on_line, cancel: threading.Event) -> dict:
        on_line(f"logging to {TRACKING}")
        raise ValueError(f"cannot reach {TRACKING}api/2.0/mlflow/runs/create")

    job = PersonalizeJob("ann", launcher)
    job.start()
    deadline = time.monotonic() + 5
    while job.state == "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(job.lines) == ["logging to http://user:***@127.0.0.1:1/"]
    assert job.error == "cannot reach http://user:***@127.0.0.1:1/api/2.0/mlflow/runs/create"
