"""The MLflow pyfunc face of the recognizer: what ``models:/asl-detector@champion`` loads.

Input: a DataFrame (or list) of strings, column ``image``: each a base64-encoded JPEG/PNG.
A request never makes the server read its own disk (a path is refused like any non-image),
and an image declaring more than 50 megapixels is refused before it is decoded. Output: one
row per detection with ``image_index, letter, class_id, confidence, x1, y1, x2, y2`` (pixels of
the input image) and an empty ``error``; an image that cannot be read gives one row with its
``image_index`` and the ``error``, and the other images of the request are still answered.
``mlflow models serve`` takes the same input as JSON: ``{"dataframe_records": [{"image":
"<base64>"}]}``.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from tasks.inference.image_bytes import MAX_PIXELS, ImageRejected, decode_image_bytes

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

        options = {k: v for k, v in (params or {}).items() if k in ("conf", "iou", "max_det")}
        rows: list[dict[str, Any]] = []
        for index, value in enumerate(_images(model_input)):
            try:
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
