"""The served model's input handling: base64 only, a pixel limit before decoding, error rows."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tasks.inference.recognizer import Recognizer
from tasks.registry.pyfunc_model import OUTPUT_COLUMNS, AslDetectorModel


@pytest.fixture(scope="module")
def model(smoke_onnx: Path) -> AslDetectorModel:
    served = AslDetectorModel()
    served.recognizer = Recognizer.load(str(smoke_onnx), threads=1)  # what load_context does
    return served


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def _predict(model: AslDetectorModel, images: list[str]) -> pd.DataFrame:
    return model.predict(None, pd.DataFrame({"image": images}), {"conf": 1e-6, "max_det": 3})


def test_one_bad_image_is_an_error_row_and_the_others_are_answered(
    model: AslDetectorModel, subset_dataset: Path
):
    photo = sorted((subset_dataset / "test" / "images").iterdir())[0].read_bytes()
    out = _predict(model, [_b64(b"not an image at all"), _b64(photo)])
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    bad = out[out["image_index"] == 0]
    assert len(bad) == 1 and bad["error"].iloc[0].startswith("image 0 is not an image")
    good = out[out["image_index"] == 1]
    assert len(good) >= 1 and (good["error"] == "").all() and good["letter"].notna().all()


def test_a_path_on_the_servers_disk_is_never_read(model: AslDetectorModel, subset_dataset: Path):
    path = sorted((subset_dataset / "test" / "images").iterdir())[0]
    out = _predict(model, [str(path)])
    assert len(out) == 1 and out["letter"].isna().all()
    assert out["error"].iloc[0] == "image 0 is not base64 image bytes"


def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(model: AslDetectorModel):
    declared = _png(9000, 9000, mode="1")  # a few KB that would decode to 81 megapixels
    assert len(declared) < 100_000
    out = _predict(model, [_b64(declared)])
    assert out["error"].iloc[0] == (
        "image 0 has 9000×9000 pixels; images up to 50,000,000 are accepted."
    )
