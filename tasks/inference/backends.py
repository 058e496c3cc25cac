"""How the recognizer loads a model: pick its file, read its metadata, open a backend.

ONNX Runtime runs ``model.onnx`` / ``model.int8.onnx``; PyTorch (through ultralytics) runs a
``best.pt`` without an export. Each backend returns the same ``infer(tensor) -> raw head``.
"""

from __future__ import annotations

import ast
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tasks.core.records import LETTERS
from tasks.inference.crop_classifier import CLASSIFIER_ONNX, DEFAULT_PAD, CropClassifier
from tasks.inference.runtime import open_session

Format = Literal["onnx", "int8", "pt"]
_FILES = {"onnx": "model.onnx", "int8": "model.int8.onnx", "pt": "best.pt"}
_FALLBACK: dict[str, tuple[Format, ...]] = {
    "onnx": ("onnx", "int8", "pt"),
    "int8": ("int8", "onnx", "pt"),
    "pt": ("pt", "onnx", "int8"),
}


def pick_model_file(local: Path, prefer: Format) -> tuple[Path, Format, dict[str, Any]]:
    """Choose the model file of a path, its format and any metadata.json beside it."""
    if local.is_file():
        fmt: Format = "pt" if local.suffix == ".pt" else "onnx"
        return local, fmt, read_metadata(local.parent / "metadata.json")
    for folder in (local / "artifacts", local):
        for fmt in _FALLBACK[prefer]:
            candidate = folder / _FILES[fmt]
            if candidate.is_file():
                return candidate, fmt, read_metadata(folder / "metadata.json")
    raise FileNotFoundError(f"no model.onnx, model.int8.onnx or best.pt in {local}")


def classifier_beside(detector: Path, meta: dict[str, Any]) -> CropClassifier | None:
    """The letter classifier beside a detector, if the model is two-stage."""
    folder = detector.parent
    pad, mirror = float(meta.get("crop_pad", DEFAULT_PAD)), bool(meta.get("crop_mirror", False))
    members = meta.get("classifiers")
    if members:  # an ensemble: every member fp32, as assembled
        paths = [folder / str(name) for name in members]
        missing = [path.name for path in paths if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"two-stage model in {folder} lacks {', '.join(missing)}")
        return CropClassifier(paths, pad, mirror=mirror)
    if (folder / CLASSIFIER_ONNX).is_file():
        return CropClassifier(folder / CLASSIFIER_ONNX, pad, mirror=mirror)
    if meta.get("two_stage"):
        raise FileNotFoundError(f"two-stage model in {folder} has no classifier.onnx")
    return None


def read_metadata(path: Path) -> dict[str, Any]:
    """A model's ``metadata.json`` ({} when there is none).

    Raises:
        ValueError: Naming the file, when it is no JSON object (cut off, or another shape).
    """
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: damaged model metadata ({error})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: model metadata must be a JSON object, not {type(meta).__name__}")
    return meta


def class_names(meta: dict[str, Any], nc: int | None) -> tuple[str, ...]:
    names = meta.get("names")
    if isinstance(names, dict):  # ultralytics keeps {id: name}
        names = [names[k] for k in sorted(names, key=int)]
    if names is None and nc in (None, len(LETTERS)):
        names = LETTERS
    if names is None or nc not in (None, len(names)):
        raise ValueError(f"model has {nc} classes but its metadata names {names!r}")
    return tuple(str(n) for n in names)


def input_size(imgsz: Any) -> tuple[int, int]:
    if isinstance(imgsz, int):
        return imgsz, imgsz
    h, w = imgsz
    return int(h), int(w)


def onnx_backend(
    path: Path, meta: dict[str, Any], threads: int | None, spin: bool
) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, int], tuple[str, ...], Format]:
    session = open_session(path, threads, spin)
    embedded = session.get_modelmeta().custom_metadata_map
    merged = {k: ast.literal_eval(v) for k, v in embedded.items() if k in ("names", "imgsz")}
    merged.update(meta)
    model_input, model_output = session.get_inputs()[0], session.get_outputs()[0]
    height, width = model_input.shape[2:]
    # A static export dictates its input size; a dynamic one runs at the size it was made for.
    static = isinstance(height, int) and isinstance(width, int)
    size = (height, width) if static else input_size(merged.get("imgsz", 640))
    channels = model_output.shape[1]
    names = class_names(merged, channels - 4 if isinstance(channels, int) else None)
    quantized = embedded.get("quantization") == "int8" or path.name.endswith(".int8.onnx")
    input_name = model_input.name

    def infer(tensor: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: tensor})[0]

    return infer, size, names, "int8" if quantized else "onnx"


def torch_backend(
    path: Path, meta: dict[str, Any], threads: int | None
) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, int], tuple[str, ...]]:
    import torch
    from ultralytics import YOLO

    from tasks.training.weights import enable_safe_load, verify_sha256

    # A .pt file is a pickle: check it is the file the model was logged with, and let
    # ultralytics unpickle model classes only.
    verify_sha256(path, meta.get("sha256", {}).get(path.name))
    enable_safe_load()
    if threads:
        torch.set_num_threads(threads)
    model = YOLO(str(path)).model.float().eval()
    merged = {"names": model.names, "imgsz": model.args.get("imgsz", 640), **meta}
    model = model.fuse(verbose=False)
    lock = threading.Lock()

    def infer(tensor: np.ndarray) -> np.ndarray:
        with lock, torch.inference_mode():
            out = model(torch.from_numpy(tensor))
        return (out[0] if isinstance(out, list | tuple) else out).numpy()

    return infer, input_size(merged["imgsz"]), class_names(merged, len(model.names))
