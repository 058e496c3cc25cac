"""Serving and batch prediction have limits: images per request, detections per image, and
``conf``/``iou`` values that let NMS drop something. A batch file is judged by its header
before its bytes are read, and a signed URL's signature never lands in the predictions.

The recognizer is a stub here: the limits act before any model runs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from flows.predict import PredictParams
from tasks.inference import batch_predict
from tasks.inference.batch_predict import predict_images
from tasks.registry import pyfunc_model
from tasks.registry.pyfunc_model import MAX_DET, MAX_IMAGES, AslDetectorModel

Calls = list[dict[str, Any]]


def _stub(calls: Calls) -> SimpleNamespace:
    def recognize(image: np.ndarray, **options: Any) -> SimpleNamespace:
        calls.append(options)
        return SimpleNamespace(detections=[])

    return SimpleNamespace(source=SimpleNamespace(uri="stub://model"), recognize=recognize)


@pytest.fixture
def served() -> tuple[AslDetectorModel, Calls]:
    calls: Calls = []
    model = AslDetectorModel()
    model.recognizer = _stub(calls)  # what load_context sets
    return model, calls


def _request(encoder: Callable[..., bytes], n: int = 1) -> pd.DataFrame:
    image = base64.b64encode(encoder(".jpg", seed=1)).decode()
    return pd.DataFrame({"image": [image] * n})


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"conf": 0.0}, "conf=0.0"),
        ({"conf": 0.0, "iou": 1.0}, "conf=0.0"),
        ({"iou": 1.0}, "iou=1.0"),
        ({"conf": float("nan")}, "conf=nan"),
        ({"max_det": 1_000_000}, "max_det=1000000"),
        ({"max_det": 0}, "max_det=0"),
    ],
)
def test_settings_that_keep_every_anchor_are_refused_before_any_image_is_read(
    served: tuple[AslDetectorModel, Calls],
    encoder: Callable[..., bytes],
    params: dict[str, Any],
    named: str,
):
    model, calls = served
    with pytest.raises(MlflowException, match=named) as caught:
        model.predict(None, _request(encoder), params)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE", "HTTP 400, not 500"
    assert calls == []


def test_more_images_than_a_request_takes_are_refused_as_a_whole(
    served: tuple[AslDetectorModel, Calls], encoder: Callable[..., bytes]
):
    model, calls = served
    with pytest.raises(MlflowException, match=f"{MAX_IMAGES + 1} images in one request"):
        model.predict(None, _request(encoder, MAX_IMAGES + 1), None)
    assert calls == []


def test_requests_within_the_limits_are_answered(
    served: tuple[AslDetectorModel, Calls],
    encoder: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
):
    model, calls = served
    params = {"conf": 1e-6, "iou": 0.99, "max_det": MAX_DET}
    out = model.predict(None, _request(encoder, MAX_IMAGES), params)
    assert len(calls) == MAX_IMAGES and calls[0] == params and out.empty

    monkeypatch.setattr(pyfunc_model, "MAX_IMAGE_CHARS", 100)
    out = model.predict(None, _request(encoder), None)
    assert out["error"].iloc[0].startswith("image 0 is ") and "up to 100" in out["error"].iloc[0]


def test_batch_predict_refuses_a_zero_threshold(tmp_path: Path):
    with pytest.raises(ValidationError, match="conf"):
        PredictParams(inputs=["photos/"], conf=0)
    with pytest.raises(ValueError, match="conf=0"):
        predict_images(_stub([]), [], tmp_path / "out", conf=0)  # type: ignore[arg-type]


def test_batch_predict_judges_a_file_by_its_header_before_reading_it(
    tmp_path: Path, huge_png: Callable[[int, int], bytes], monkeypatch: pytest.MonkeyPatch
):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(huge_png(9000, 9000) + bytes(4 << 20))  # its header, then 4 MB
    decoded: list[int] = []
    real = batch_predict.decode_image_bytes
    monkeypatch.setattr(
        batch_predict,
        "decode_image_bytes",
        lambda data, **kw: decoded.append(len(data)) or real(data, **kw),
    )

    report = predict_images(_stub([]), [str(bomb)], tmp_path / "out")  # type: ignore[arg-type]

    assert report.skipped[0].reason.endswith(
        "has 9000×9000 pixels; images up to 50,000,000 are accepted."
    )
    assert decoded == [], "the file's bytes were read before its header was checked"


def test_batch_predict_writes_signed_urls_redacted(tmp_path: Path, encoder: Callable[..., bytes]):
    memory = fsspec.filesystem("memory")
    memory.pipe("/signed/a.jpg?X-Goog-Signature=SIGSECRET123", encoder(".jpg", seed=2))
    location = "memory://signed/a.jpg?X-Goog-Signature=SIGSECRET123"
    missing = "memory://signed/b.jpg?X-Goog-Signature=SIGSECRET123"
    calls: Calls = []

    def found(image: np.ndarray, **options: Any) -> SimpleNamespace:
        calls.append(options)
        box = SimpleNamespace(x1=1.0, y1=2.0, x2=3.0, y2=4.0)
        return SimpleNamespace(detections=[SimpleNamespace(letter="A", confidence=0.9, box=box)])

    stub = SimpleNamespace(source=SimpleNamespace(uri="stub://model"), recognize=found)
    report = predict_images(stub, [location, missing], tmp_path / "out")  # type: ignore[arg-type]

    assert calls, "the signed file was read"
    written = report.csv_path.read_text() + report.json_path.read_text()
    assert "SIGSECRET123" not in written and "X-Goog-Signature=***" in written
    assert "SIGSECRET123" not in json.dumps(report.model_dump(mode="json"))
