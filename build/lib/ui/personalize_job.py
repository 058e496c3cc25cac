"""The personalize flow run from the app: a child process per learner, polled by the page.

Pure logic, no Streamlit. The flow runs in a child Python so the app stays responsive and its
own threads never share the GIL with a training; the app never imports Prefect. One job per
learner lives as long as the app process, so a reloaded page finds its running training.

The child's output is shown on the page, and a child prints what no logging filter sees (a
traceback, MLflow's messages with the tracking URL): every line and error is redacted here,
as it is read, so nothing the page can show holds a URL's password or signature.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from tasks.core.redact import redact
from tasks.registry.models import personal_alias
from ui.app_settings import get_ui_settings

ROOT = Path(__file__).resolve().parents[1]
JobState = Literal["idle", "running", "done", "failed", "cancelled"]
STOP_GRACE_SECONDS = 15.0  # after SIGINT, before SIGKILL: time for Prefect to mark the run

# Run in the child: the flow is imported only there.
_CHILD = """
import sys
from flows.personalize import PersonalizeParams, personalize_flow
outcome = personalize_flow(PersonalizeParams(learner=sys.argv[1], minutes=float(sys.argv[2])))
print("PERSONALIZED " + outcome.model_dump_json(), flush=True)
"""
Launcher = Callable[[str, Callable[[str], None], threading.Event], dict[str, Any]]


class Cancelled(Exception):
    """The learner stopped the run."""


def launch_flow(
    learner: str, on_line: Callable[[str], None], cancel: threading.Event
) -> dict[str, Any]:
    """Run the personalize flow for ``learner`` in a child Python.

    Args:
        learner: Whose captures.
        on_line: Called with each line the child prints.
        cancel: Set it to stop the child: SIGINT to its process group (Prefect then marks
            the flow run), SIGKILL if it is still there after ``STOP_GRACE_SECONDS``.

    Returns:
        The flow's outcome (``PersonalizeOutcome`` as a dict).

    Raises:
        Cancelled: ``cancel`` was set before the child finished.
        RuntimeError: The child failed; the message is its last line of output (a traceback
            ends with the exception), redacted like every line ``on_line`` gets.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, learner, str(get_ui_settings().personalize_minutes)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own group: a stop reaches its workers too
    )
    finished = threading.Event()
    threading.Thread(
        target=_stop_on, args=(cancel, finished, child), name=f"stop-{learner}", daemon=True
    ).start()
    outcome: dict[str, Any] | None = None
    tail: deque[str] = deque(maxlen=8)
    assert child.stdout is not None
    try:
        for raw in child.stdout:
            line = redact(raw.rstrip())
            if line.startswith("PERSONALIZED "):
                outcome = json.loads(line.removeprefix("PERSONALIZED "))
                continue
            tail.append(line)
            on_line(line)
        status = child.wait()
    finally:
        finished.set()
    if cancel.is_set() and outcome is None:
        raise Cancelled(f"stopped; the child exited with status {status}")
    if status != 0 or outcome is None:
        last = next((line for line in reversed(tail) if line.strip()), None)
        raise RuntimeError(last.strip() if last else f"exit status {status}")
    return outcome


def _stop_on(cancel: threading.Event, finished: threading.Event, child: subprocess.Popen) -> None:
    while not finished.is_set():
        if cancel.wait(0.2):
            break
    if finished.is_set():
        return
    for sig, wait in ((signal.SIGINT, STOP_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class PersonalizeJob:
    """One learner's personalize run on a background thread; the page polls its fields."""

    def __init__(self, learner: str, launcher: Launcher) -> None:
        self.learner, self._launcher = learner, launcher
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self.state: JobState = "idle"
        self.lines: deque[str] = deque(maxlen=12)
        self.outcome: dict[str, Any] | None = None
        self.error: str | None = None
        self.started = self.finished = 0.0

    def start(self) -> bool:
        """Start the run unless one is running; True if it started."""
        with self._lock:
            if self.state == "running":
                return False
            self.state, self.outcome, self.error = "running", None, None
            self.lines.clear()
            self._cancel = threading.Event()
            self.started = time.time()
            cancel = self._cancel
        threading.Thread(
            target=self._run, args=(cancel,), name=f"personalize-{self.learner}", daemon=True
        ).start()
        return True

    def cancel(self) -> bool:
        """Ask a running run to stop; True if one was running."""
        with self._lock:
            if self.state != "running":
                return False
            self._cancel.set()
            return True

    @property
    def stopping(self) -> bool:
        """A stop was asked and the run has not ended yet."""
        return self.state == "running" and self._cancel.is_set()

    def _run(self, cancel: threading.Event) -> None:
        try:
            outcome = self._launcher(self.learner, self._line, cancel)
        except Cancelled as error:
            with self._lock:
                self.state, self.error, self.finished = "cancelled", redact(str(error)), time.time()
            return
        except Exception as error:  # shown on the page; the app carries on
            with self._lock:
                self.state, self.error, self.finished = "failed", redact(str(error)), time.time()
            return
        with self._lock:
            self.state, self.outcome, self.finished = "done", outcome, time.time()

    def _line(self, line: str) -> None:
        # Whatever the launcher: the page shows these lines.
        with self._lock:
            self.lines.append(redact(line))

    @property
    def alias(self) -> str:
        """The registry alias this learner's model gets."""
        return personal_alias(self.learner)


_JOBS: dict[str, PersonalizeJob] = {}
_JOBS_LOCK = threading.Lock()


def job_for(learner: str) -> PersonalizeJob:
    """The process-wide job of ``learner``."""
    with _JOBS_LOCK:
        job = _JOBS.get(learner)
        if job is None:
            # Looked up at call time, so tests can replace the module's launch_flow.
            job = _JOBS[learner] = PersonalizeJob(learner, launch_flow)
        return job
