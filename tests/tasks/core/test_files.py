"""Temp-then-rename, the run folder lock, and leftovers of killed processes."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest
from support.children import python_child

from tasks.core.files import build_dir, run_folder_lock, staging_dir, sweep_stale, write_atomic


def test_build_dir_publishes_whole_or_leaves_the_target_as_it_was(tmp_path: Path):
    target = tmp_path / "dataset"
    with build_dir(target) as staged:
        (staged / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"

    with pytest.raises(RuntimeError), build_dir(target, replace=True) as staged:
        (staged / "a.txt").write_text("half")
        raise RuntimeError("failed half-way")
    assert (target / "a.txt").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"], "no temp folder left"


def test_write_atomic_replaces_the_file(tmp_path: Path):
    path = write_atomic(tmp_path / "sub" / "x.json", "{}")
    write_atomic(path, '{"a": 1}')
    assert path.read_text() == '{"a": 1}'
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.json"]


def test_a_killed_process_staging_folder_is_swept_the_next_time(tmp_path: Path):
    target = tmp_path / "augmented"
    code = (
        "import sys, time; from pathlib import Path; from tasks.core.files import staging_dir;"
        "print(staging_dir(Path(sys.argv[1])), flush=True); time.sleep(60)"
    )
    child, line = python_child(code, str(target))
    left = Path(line)
    assert left.is_dir()
    mine = staging_dir(target)
    assert left.exists(), "a live process's staging folder is never touched"

    child.send_signal(signal.SIGKILL)  # no clean-up runs
    child.wait(timeout=10)
    removed = sweep_stale(tmp_path, f".{target.name}-")

    assert removed == [left] and not left.exists()
    assert mine.exists(), "this process's own folder stays"


def test_the_sweep_leaves_folders_of_similar_names_alone(tmp_path: Path):
    other = tmp_path / ".augmented-2-12345-abcdefgh"  # staging of a target named "augmented-2"
    other.mkdir()
    assert sweep_stale(tmp_path, ".augmented-") == []
    assert other.exists()


def test_run_folder_lock_makes_a_second_training_wait(tmp_path: Path):
    folder = tmp_path / "runs" / "abc123"
    entered, order = threading.Event(), []

    def second() -> None:
        with run_folder_lock(folder):
            order.append("second")
            entered.set()

    with run_folder_lock(folder):
        thread = threading.Thread(target=second)
        thread.start()
        assert not entered.wait(0.5), "the second entered while the first held the folder"
        order.append("first done")
    thread.join(timeout=10)
    assert order == ["first done", "second"]


def test_a_killed_holder_releases_the_run_folder_lock(tmp_path: Path):
    folder = tmp_path / "runs" / "abc123"
    code = (
        "import sys, time; from pathlib import Path; from tasks.core.files import run_folder_lock\n"
        "with run_folder_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)"
    )
    child, line = python_child(code, str(folder))
    assert line == "held"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)

    done = threading.Event()

    def take() -> None:
        with run_folder_lock(folder):
            done.set()

    threading.Thread(target=take, daemon=True).start()
    assert done.wait(10), "the lock of a killed process was not released"
