"""Two flows on the same recipe share a run folder: one may log ``model.onnx`` or the two-stage
folder while the other writes it again. A reader must see the old file or folder or the new
one, never a truncated file or a missing or half-deleted folder.

Each test stops the writer at its worst moment (mid-copy, right after the old folder is
removed) and looks at the target from there, as the other flow would.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from tasks.core import files
from tasks.core.files import build_dir
from tasks.inference import export

NEW = b"new model " * 1000


def _fake_ultralytics(monkeypatch: pytest.MonkeyPatch) -> None:
    """``YOLO(path).export`` writes ``NEW`` beside the weights, as ultralytics does (in /tmp)."""

    class Exporting:
        def __init__(self, path: str) -> None:
            self.path = Path(path)
            self.model = types.SimpleNamespace(model=[object()])  # a head without DFL

        def export(self, **kwargs: Any) -> str:
            out = self.path.with_suffix(".onnx")
            out.write_bytes(NEW)
            return str(out)

    import ultralytics

    monkeypatch.setattr(ultralytics, "YOLO", Exporting)


def test_an_export_is_never_seen_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _fake_ultralytics(monkeypatch)
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"weights")
    out_dir = tmp_path / "run" / "export"
    out_dir.mkdir(parents=True)
    target = out_dir / "model.onnx"
    target.write_bytes(b"old model")
    seen: list[bytes] = []
    real_copy = shutil.copyfile

    def slow_copy(src: Any, dst: Any, **kwargs: Any) -> Any:
        if Path(src).suffix != ".onnx":
            return real_copy(src, dst, **kwargs)
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[: len(data) // 2])  # the copy is half-way
        seen.append(target.read_bytes())  # what the other flow reads now
        return real_copy(src, dst, **kwargs)

    def cross_device(src: Any, dst: Any) -> None:
        # /tmp on another file system than the runs folder: shutil.move copies.
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(shutil, "copyfile", slow_copy)
    monkeypatch.setattr(os, "rename", cross_device)

    assert export.export_onnx(weights, 64, out_dir) == target

    assert seen and all(view in (b"old model", NEW) for view in seen), "a reader saw half"
    assert target.read_bytes() == NEW
    assert sorted(p.name for p in out_dir.iterdir()) == ["model.onnx"], "no temp file left"


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "without-renameat2"])
def test_a_replaced_folder_is_never_missing_nor_half_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
):
    target = tmp_path / "two-stage"
    target.mkdir()
    for name in ("model.onnx", "classifier.onnx", "metadata.json"):
        (target / name).write_text(f"old {name}")
    seen: list[list[str] | None] = []
    real_rmtree = shutil.rmtree

    def watched_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        real_rmtree(path, *args, **kwargs)
        seen.append(sorted(p.name for p in target.iterdir()) if target.exists() else None)

    monkeypatch.setattr(files.shutil, "rmtree", watched_rmtree)
    if not exchange:
        monkeypatch.setattr(files, "_exchange", lambda first, second: False)

    with build_dir(target, replace=True) as staged:
        for name in ("model.onnx", "classifier.onnx", "metadata.json"):
            (staged / name).write_text(f"new {name}")

    whole = ["classifier.onnx", "metadata.json", "model.onnx"]
    assert seen and all(view == whole for view in seen), f"a reader saw {seen}"
    assert (target / "metadata.json").read_text() == "new metadata.json"
    assert [p.name for p in tmp_path.iterdir()] == ["two-stage"], "the old folder is gone"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_the_swap_is_one_step_on_linux(tmp_path: Path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "one").touch()
    assert files._exchange(first, second)
    assert (second / "one").exists() and not (first / "one").exists()
