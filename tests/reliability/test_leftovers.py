"""Small leaks: a signed weights URL in a model's metadata, model copies left in /tmp."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tasks.inference import model_cache
from tasks.training.weights import StartingWeights

SIGNED = "https://bucket.example.org/w/best.pt?X-Goog-Signature=SIGSECRET123"


def test_the_weights_record_kept_in_metadata_json_is_redacted(tmp_path: Path):
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"w")
    found = StartingWeights(requested=SIGNED, path=weights, sha256="ab", origin="download")
    scratch = StartingWeights(requested=SIGNED, reason=f"could not download {SIGNED}")
    for record in (found.record(), scratch.record()):
        assert "SIGSECRET123" not in str(record)
        assert record["requested"].endswith("X-Goog-Signature=***")


def test_a_moving_model_reference_is_downloaded_into_the_cache_not_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import mlflow

    def fake_download(artifact_uri: str, dst_path: str, **kwargs: Any) -> str:
        (Path(dst_path) / "model.onnx").write_bytes(b"onnx")
        return dst_path

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", fake_download)
    cache = tmp_path / "cache"

    got = model_cache.download("models:/asl-detector/latest", cache)

    assert got.is_relative_to(cache), f"{got} is outside the cache folder"
    assert got.name.startswith("."), "a staging name: swept once this process is gone"
