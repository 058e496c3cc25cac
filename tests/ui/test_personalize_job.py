"""The app's personalize job: a child process it reads, reports and can stop."""

from __future__ import annotations

import threading
import time

import pytest

import ui.personalize_job
from ui.app_settings import get_ui_settings
from ui.personalize_job import Cancelled, PersonalizeJob, launch_flow


def wait_for(job: PersonalizeJob, state: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while job.state != state and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.state == state, (job.state, job.error)


def gone(pid: int, seconds: float = 5.0) -> bool:
    """Whether process ``pid`` has exited (zombies of other parents count as gone)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ")[1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_personalize_job_runs_in_the_background_and_reports():
    def launcher(learner: str, on_line, cancel) -> dict:
        on_line(f"training {learner}")
        return {"alias": f"personal-{learner}", "after": {"learner": 0.9}}

    job = PersonalizeJob("ann", launcher)
    assert job.start()
    wait_for(job, "done")
    assert job.outcome == {"alias": "personal-ann", "after": {"learner": 0.9}}
    assert list(job.lines) == ["training ann"] and job.alias == "personal-ann"
    assert not job.cancel(), "nothing running to stop"


def test_a_failed_personalize_job_keeps_its_error_and_can_start_again():
    def launcher(learner: str, on_line, cancel) -> dict:
        raise RuntimeError("teach at least two bursts")

    job = PersonalizeJob("ann", launcher)
    job.start()
    wait_for(job, "failed")
    assert job.error == "teach at least two bursts"
    job._launcher = lambda learner, on_line, cancel: {}
    assert job.start()
    wait_for(job, "done")


def test_a_running_job_starts_once_and_stops_when_asked():
    started = threading.Event()

    def launcher(learner: str, on_line, cancel: threading.Event) -> dict:
        started.set()
        cancel.wait(5)
        raise Cancelled("stopped")

    job = PersonalizeJob("ann", launcher)
    assert job.start()
    assert started.wait(5)
    assert not job.start(), "a second start while running"
    assert job.cancel() and job.stopping
    wait_for(job, "cancelled")
    assert not job.stopping


def test_launch_flow_reads_the_child_output_and_outcome(monkeypatch: pytest.MonkeyPatch):
    """The child gets the learner and the app's fine-tune minutes; its outcome line is parsed."""
    child = 'import sys; print("epoch 1", *sys.argv[1:]); print(\'PERSONALIZED {"alias": "a"}\')'
    monkeypatch.setattr(ui.personalize_job, "_CHILD", child)
    monkeypatch.setenv("FINGERSPELL_UI_PERSONALIZE_MINUTES", "0.5")
    get_ui_settings.cache_clear()
    lines: list[str] = []
    try:
        assert launch_flow("ann", lines.append, threading.Event()) == {"alias": "a"}
    finally:
        get_ui_settings.cache_clear()
    assert lines == ["epoch 1 ann 0.5"]


def test_launch_flow_raises_the_child_last_lines_on_failure(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ui.personalize_job, "_CHILD", 'print("no champion"); raise SystemExit(1)')
    with pytest.raises(RuntimeError, match="no champion"):
        launch_flow("ann", lambda line: None, threading.Event())


# The child starts a grandchild (as ultralytics' workers are) and prints both pids.
_SLEEPER = """
import os, signal, subprocess, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("pids", os.getpid(), worker.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("learner", ["ann", "stubborn"])
def test_stop_ends_the_child_and_its_workers(learner: str, monkeypatch: pytest.MonkeyPatch):
    """SIGINT to the child's group; one that ignores it is killed after the grace time."""
    monkeypatch.setattr(ui.personalize_job, "_CHILD", _SLEEPER)
    monkeypatch.setattr(ui.personalize_job, "STOP_GRACE_SECONDS", 1.0)
    job = PersonalizeJob(learner, launch_flow)
    job.start()
    deadline = time.monotonic() + 20
    while not job.lines and time.monotonic() < deadline:
        time.sleep(0.05)
    _, child, worker = job.lines[0].split()
    started = time.monotonic()
    assert job.cancel()
    wait_for(job, "cancelled", seconds=10)
    assert gone(int(child)) and gone(int(worker)), "child or worker left running"
    assert time.monotonic() - started < 8
