"""The MLflow pyfunc face of the recognizer: what ``models:/asl-detector@champion`` loads.

Input: a DataFrame (or list) of strings, column ``image``: each a base64-encoded JPEG/PNG.
A request never makes the server read its own disk (a path is refused like any non-image),
and an image declaring more than 50 megapixels is refused before it is decoded. Output: one
row per detection with ``image_index, letter, class_id, confidence, x1, y1, x2, y2`` (pixels of
the input image) and an empty ``error``; an image that cannot be read gives one row with its
``image_index`` and the ``error``, and the other images of the request are still answered.
``mlflow models serve`` takes the same input as JSON: ``{"dataframe_records": [{"image":
"<base64>"}]}``.

A request is bounded: at most :data:`MAX_IMAGES` images, each at most
:data:`MAX_IMAGE_CHARS` of base64, at most :data:`MAX_DET` detections per image, and ``conf``
and ``iou`` that let NMS drop something (``conf`` above 0, ``iou`` below 1: ``conf=0, iou=1``
keeps every anchor). Anything else is refused as a whole with one clear error, before any
image is decoded.
"""

from __future__ import annotations

import base64
import binascii
import math
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from tasks.inference.image_bytes import MAX_PIXELS, ImageRejected, decode_image_bytes

MAX_IMAGES = 64  # per request: a few seconds of CPU at 320 px
MAX_IMAGE_CHARS = 40_000_000  # base64 of ~30 MB, a large phone photo
MAX_DET = 100  # detections per image; a hand shows one letter
OPTIONS = ("conf", "iou", "max_det")

OUTPUT_COLUMNS = (
    "image_index", "letter", "class_id", "confidence", "x1", "y1", "x2", "y2", "error",
)  # fmt: skip


def decode_image(value: str, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode one request's base64 image into a BGR array.

    Raises:
        ImageRejected: Not base64 image bytes (a path included), or too many pixels.
    """
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected(f"{name} is not base64 image bytes") from None
    return decode_image_bytes(raw, max_pixels, name)


def check_options(conf: float = 0.25, iou: float = 0.45, max_det: int = 10) -> None:
    """Refuse detection settings that would make NMS keep (nearly) every anchor.

    The predict flow and the served model share these limits.

    Raises:
        ValueError: Naming the setting, its value and what is accepted.
    """
    if not (math.isfinite(conf) and 0 < conf <= 1):
        raise ValueError(f"conf={conf!r} is refused: it must be above 0 and at most 1")
    if not (math.isfinite(iou) and 0 <= iou < 1):
        raise ValueError(f"iou={iou!r} is refused: it must be at least 0 and below 1")
    if isinstance(max_det, bool) or int(max_det) != max_det or not 1 <= max_det <= MAX_DET:
        raise ValueError(f"max_det={max_det!r} is refused: it must be a whole number 1..{MAX_DET}")


def _request_error(message: str) -> Exception:
    """A refused request: MLflow's scoring server answers it with HTTP 400 and ``message``."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _images(model_input: Any) -> list[str]:
    if hasattr(model_input, "columns"):  # a pandas DataFrame
        column = "image" if "image" in model_input.columns else model_input.columns[0]
        return [str(v) for v in model_input[column].tolist()]
    if isinstance(model_input, str):
        return [model_input]
    return [str(v) for v in model_input]


class AslDetectorModel(mlflow.pyfunc.PythonModel):
    """Letters, boxes and confidences for each input image, through the shared recognizer."""

    def load_context(self, context: Any) -> None:
        """Load the recognizer from the model's own artifacts folder."""
        from tasks.inference.recognizer import Recognizer

        folder = Path(context.artifacts["metadata"]).parent
        # int8 ships only when evaluation found it as accurate as fp32 (see flows/train.py).
        self.recognizer = Recognizer.load(str(folder), prefer="int8")

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        """Recognize letters in each image; ``params`` may set ``conf``, ``iou``, ``max_det``."""
        import pandas as pd

        options = {k: v for k, v in (params or {}).items() if k in OPTIONS and v is not None}
        try:
            check_options(**options)
        except (TypeError, ValueError) as problem:
            raise _request_error(str(problem)) from None
        images = _images(model_input)
        if len(images) > MAX_IMAGES:
            raise _request_error(
                f"{len(images)} images in one request; up to {MAX_IMAGES} are accepted, "
                "send the rest in further requests"
            )
        rows: list[dict[str, Any]] = []
        for index, value in enumerate(images):
            try:
                if len(value) > MAX_IMAGE_CHARS:
                    raise ImageRejected(
                        f"image {index} is {len(value):,} characters of base64; up to "
                        f"{MAX_IMAGE_CHARS:,} are accepted"
                    )
                image = decode_image(value, f"image {index}")
            except ImageRejected as problem:  # one bad image is a row, not a failed request
                rows.append({"image_index": index, "error": str(problem)})
                continue
            result = self.recognizer.recognize(image, **options)
            for det in result.detections:
                rows.append(
                    {
                        "image_index": index,
                        "letter": det.letter,
                        "class_id": det.class_id,
                        "confidence": float(det.confidence),
                        "x1": float(det.box.x1),
                        "y1": float(det.box.y1),
                        "x2": float(det.box.x2),
                        "y2": float(det.box.y2),
                        "error": "",
                    }
                )
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))
