"""Models cannot run code: a ``.pt`` file is a pickle, and loading one must not execute it.

Each entry point that opens a ``.pt`` (starting weights, a run folder's ``last.pt``, the
recognizer's PyTorch backend, a registered version) is handed a checkpoint whose unpickling
would create a marker file. The marker must never appear; the error names the file. Where a
sha256 is recorded, a file that differs is refused; plain ``http://`` weights are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tasks.inference.backends import torch_backend
from tasks.training.resume import Checkpoint, checkpoint_state
from tasks.training.weights import (
    CheckpointRefused,
    StartingWeights,
    load_checkpoint,
    resolve_weights,
    sha256_of,
    transfer,
)


class _RunsCode:
    """Unpickling this runs ``code`` (what a hostile checkpoint does)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return exec, (self.code,)


def _hostile(path: Path, marker: Path) -> Path:
    code = f"open({str(marker)!r}, 'w').close()"
    payload = {"epoch": 3, "optimizer": {}, "model": _RunsCode(code), "train_args": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "code-ran"


def test_starting_weights_that_run_code_are_refused(tmp_path: Path, marker: Path):
    weights = _hostile(tmp_path / "pretrained.pt", marker)
    start = StartingWeights(requested="pretrained.pt", path=weights, sha256=sha256_of(weights))

    with pytest.raises(CheckpointRefused, match=r"pretrained\.pt"):
        transfer(object(), start)
    assert not marker.exists(), "the pickle's code ran"


def test_a_last_pt_that_runs_code_is_refused_not_resumed_nor_thrown_away(
    tmp_path: Path, marker: Path
):
    last = _hostile(tmp_path / "run" / "weights" / "last.pt", marker)

    with pytest.raises(CheckpointRefused, match=r"last\.pt"):
        checkpoint_state(last)
    assert not marker.exists(), "the pickle's code ran"
    assert last.is_file(), "a refused checkpoint is left for a person to look at"


def test_a_truncated_last_pt_is_still_set_aside(tmp_path: Path):
    last = tmp_path / "weights" / "last.pt"
    last.parent.mkdir()
    torch.save({"epoch": 1, "optimizer": {}}, last)
    last.write_bytes(last.read_bytes()[:100])  # a kill while writing
    assert checkpoint_state(last) is Checkpoint.NONE
    assert last.with_suffix(".corrupt").is_file()


def test_the_recognizer_does_not_run_code_from_a_pt_model(tmp_path: Path, marker: Path):
    weights = _hostile(tmp_path / "best.pt", marker)
    with pytest.raises(Exception, match=r"best\.pt"):
        torch_backend(weights, {}, None)
    assert not marker.exists(), "ultralytics unpickled it with weights_only=False"


def test_a_pt_that_differs_from_its_recorded_sha256_is_refused(tmp_path: Path, marker: Path):
    weights = _hostile(tmp_path / "best.pt", marker)
    meta = {"sha256": {"best.pt": "0" * 64}}
    with pytest.raises(CheckpointRefused, match=r"best\.pt: sha256 .* differs"):
        torch_backend(weights, meta, None)
    start = StartingWeights(requested="best.pt", path=weights, sha256="0" * 64)
    with pytest.raises(CheckpointRefused, match="differs from the recorded"):
        transfer(object(), start)
    assert not marker.exists()


def test_real_pretrained_weights_still_load(shared_weights: Path):
    checkpoint = load_checkpoint(shared_weights / "yolov5n-coco-backbone.pt")
    assert checkpoint["model"] is not None


def test_plain_http_weights_are_refused_before_any_download(tmp_path: Path):
    fetched: list[str] = []
    url = "http://user:hunter2@models.example.org/best.pt"
    with pytest.raises(ValueError, match="use https") as caught:
        resolve_weights(url, None, tmp_path, download=lambda s, p: fetched.append(s))
    assert fetched == [] and "hunter2" not in str(caught.value)


def test_two_weights_urls_with_one_file_name_are_two_cache_entries(tmp_path: Path):
    def fetch(source: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source)

    first = resolve_weights("https://a.example.org/m/best.pt", None, tmp_path, fetch)
    second = resolve_weights("https://b.example.org/m/best.pt", None, tmp_path, fetch)
    signed = resolve_weights("https://a.example.org/m/best.pt?sig=abc", None, tmp_path, fetch)

    assert first.path != second.path and second.path.read_text().startswith("https://b.")
    assert signed.path == first.path, "a new signature on the same object reuses its copy"


def test_a_registered_version_whose_file_was_swapped_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import mlflow

    from tasks.registry import models, publish
    from tasks.registry.tracking import client_for

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:
        client = client_for(uri)
        experiment = client.create_experiment("loading", str(tmp_path / "artifacts"))
        run = client.create_run(experiment).info.run_id
        weights, onnx = tmp_path / "best.pt", tmp_path / "model.onnx"
        torch.save({"model": None}, weights)
        onnx.write_bytes(b"onnx")
        meta = publish.model_metadata(["A"], 64, "data1", {})
        version = publish.register(publish.log_model(run, weights, onnx, meta), {})

        files = models.download_version(version.version, uri)
        recorded = json.loads((files.artifacts / "metadata.json").read_text())["sha256"]
        assert recorded["best.pt"] == sha256_of(weights)

        stored = next((tmp_path / "artifacts").rglob("best.pt"))
        stored.write_bytes(stored.read_bytes() + b"swapped")
        monkeypatch.setattr(mlflow.artifacts, "download_artifacts", _fresh_copy(tmp_path))
        with pytest.raises(CheckpointRefused, match=r"best\.pt"):
            models.download_version(version.version, uri)
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


def _fresh_copy(tmp_path: Path) -> Any:
    """mlflow's download, into a new folder each time (its own cache would hide the swap)."""
    import mlflow

    real = mlflow.artifacts.download_artifacts
    calls = iter(range(100))

    def download(uri: str, dst_path: str | None = None, **kwargs: Any) -> str:
        return real(uri, dst_path=str(tmp_path / f"download-{next(calls)}"), **kwargs)

    return download
