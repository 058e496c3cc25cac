"""The predict flow end to end on real images with a local model file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flows.predict import PredictParams, predict_flow
from tasks.core.settings import get_settings


def test_predict_flow_reports_skips_and_succeeds(
    subset_dataset: Path, smoke_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FINGERSPELL_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    photos = tmp_path / "photos"
    shutil.copytree(subset_dataset / "valid" / "images", photos)
    (photos / "zz-corrupt.png").write_bytes(b"garbage")

    state = predict_flow(
        PredictParams(inputs=[str(photos)], model=str(smoke_onnx), conf=1e-6), return_state=True
    )
    get_settings.cache_clear()

    assert state.is_completed()
    report = state.result()
    assert report.n_images == 26
    assert len(report.skipped) == 1 and report.skipped[0].image.endswith("zz-corrupt.png")
    assert report.csv_path.is_relative_to(tmp_path / "home" / "predictions")
    assert report.csv_path.exists() and report.json_path.exists()


def test_predict_flow_opens_mlflow_as_every_flow_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A registry URI goes through the flows' one way into MLflow (credentials from Secret
    blocks, a reachability check), not a way of its own."""
    from flows import predict

    opened: list[str] = []

    def open_job(**kwargs: object) -> None:
        opened.append(str(get_settings().tracking_uri))
        raise RuntimeError("stop here")

    monkeypatch.setenv("FINGERSPELL_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    monkeypatch.setattr(predict, "open_job", open_job)
    with pytest.raises(RuntimeError, match="stop here"):
        predict.predict_flow.fn(PredictParams(inputs=[str(tmp_path)], model="models:/x@y"))
    get_settings.cache_clear()
    assert opened and opened[0].startswith("sqlite:///")
