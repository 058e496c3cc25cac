"""One promotion gate at a time: two gates in two processes against one registry.

The control case runs the same two gates without the lock and shows the race the lock exists
for: both read "no champion" and both promote.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
from pathlib import Path

import mlflow
import pytest
from support.gate_race import judge
from support.mlflow_state import mlflow_uris_restored

from tasks.registry.gate_lock import gate_lock

NAME = "asl-gate-race"
FIRST = "first model: becomes champion"


def _registry(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(NAME)
    for _ in range(2):
        client.create_model_version(NAME, str(tmp_path))
    return uri


def _two_gates(tmp_path: Path, locked: bool) -> list[tuple[str, str | None, str]]:
    spawn = multiprocessing.get_context("spawn")
    uri, home, barrier, out = (
        _registry(tmp_path),
        tmp_path / "home",
        spawn.Barrier(2),
        spawn.Queue(),
    )
    home.mkdir()
    gates = [
        spawn.Process(target=judge, args=(uri, home, NAME, version, barrier, locked, out))
        for version in ("1", "2")
    ]
    for gate in gates:
        gate.start()
    decisions = [out.get(timeout=120) for _ in gates]
    for gate in gates:
        gate.join(timeout=60)
        assert gate.exitcode == 0
    return decisions


@pytest.mark.parametrize("locked", [True, False], ids=["locked", "control-unlocked"])
def test_two_gates_at_once_promote_in_turn(tmp_path: Path, locked: bool) -> None:
    with mlflow_uris_restored():
        decisions = _two_gates(tmp_path, locked)
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        champion = client.get_model_version_by_alias(NAME, "champion")
    firsts = [version for version, _, reason in decisions if reason == FIRST]
    if not locked:  # the race: both judged "no champion", the second move compared with nothing
        assert len(firsts) == 2, decisions
        return
    assert len(firsts) == 1, decisions
    later = next(d for d in decisions if d[0] != firsts[0])
    assert later[1] == firsts[0], "the second gate compared its candidate with the first's"
    assert str(champion.version) == later[0], "better beyond chance on the same images"


def test_the_lock_is_held_across_processes(tmp_path: Path) -> None:
    """While a gate runs, no other process on this machine can take the lock."""
    with gate_lock(tmp_path):
        pid = os.fork()
        if pid == 0:  # the child tries the lock file without waiting
            with (tmp_path / "gate.lock").open("a+") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os._exit(7)
                os._exit(0)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7, "the child took a lock the gate holds"
    with (tmp_path / "gate.lock").open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released once the gate is done
