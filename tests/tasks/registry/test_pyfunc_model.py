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


ISOLATED_LOAD = """
import importlib.util, json, sys
# Forget this checkout: its folder on sys.path and the editable install's finder.
sys.path = [p for p in sys.path if p not in ("", sys.argv[1])]
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
assert importlib.util.find_spec("tasks") is None, "the checkout is still importable"
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[2])
images = pd.DataFrame({"image": [sys.argv[3], "bm90IGFuIGltYWdl"]})  # a photo; "not an image"
out = model.predict(images, params={"conf": 1e-6})
print(json.dumps({"errors": out["error"].tolist(), "code": sys.modules["tasks"].__file__}))
"""


@pytest.mark.slow  # logs a model and loads it in a fresh interpreter
def test_the_logged_model_loads_where_the_checkout_is_not_installed(
    smoke_weights: Path, smoke_onnx: Path, subset_dataset: Path, tmp_path: Path
):
    import json
    import subprocess
    import sys

    import mlflow

    from tasks.core.records import LETTERS
    from tasks.registry.publish import log_model, model_metadata
    from tasks.registry.tracking import client_for

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        client = client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
        experiment = client.create_experiment("code", (tmp_path / "artifacts").as_uri())
        run = client.create_run(experiment).info.run_id
        meta = model_metadata(LETTERS, 320, "smoke", {})
        uri = log_model(run, smoke_weights, smoke_onnx, meta)
        local = mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "model"))
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
    image = sorted((subset_dataset / "test" / "images").iterdir())[0]
    repo = str(Path(__file__).resolve().parents[3])

    done = subprocess.run(
        [sys.executable, "-c", ISOLATED_LOAD, repo, local, _b64(image.read_bytes())],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"].startswith(local), "tasks came from the model's own code folder"
    assert "" in result["errors"], "the good image was answered"
    assert "image 1 is not an image (expected JPEG, PNG, WebP, BMP…)." in result["errors"]
