"""The MLflow pyfunc face of the recognizer: what ``models:/asl-detector@champion`` loads.

Input: a DataFrame (or list) of strings, column ``image``: each a base64-encoded JPEG/PNG,
or a path to an image file on the serving machine. Output: one row per detection with
``image_index, letter, class_id, confidence, x1, y1, x2, y2`` (pixels of the input image).
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

OUTPUT_COLUMNS = ("image_index", "letter", "class_id", "confidence", "x1", "y1", "x2", "y2")


def decode_image(value: str) -> np.ndarray:
    """Decode a base64 image or read an image path into a BGR array.

    Raises:
        ValueError: The value is neither a readable image file nor base64 image bytes.
    """
    import cv2

    if len(value) < 4096 and Path(value).is_file():
        image = cv2.imread(value, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{value}: not a readable image")
        return image
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("input is neither an image path nor base64 image bytes") from None
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("base64 input does not decode to an image")
    return image


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
            result = self.recognizer.recognize(decode_image(value), **options)
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
                    }
                )
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))
