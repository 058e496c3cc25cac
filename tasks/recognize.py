"""The one recognizer: load a detector, letterbox a frame, run it, decode letters.

Every caller (the webcam app, the predict flow, the MLflow pyfunc model, the benchmarks) goes
through :class:`Recognizer`, so there is exactly one letterbox, one decode and one NMS in the
project. Pre/post-processing is numpy/cv2; inference is onnxruntime, or PyTorch through
ultralytics when a model has no ONNX export.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from tasks.records import LETTERS, Box, Detection, Record

log = logging.getLogger(__name__)

Format = Literal["onnx", "int8", "pt"]
PAD_VALUE = 114  # ultralytics pads with grey 114; the model was trained on that
MAX_THREADS = 4  # YOLO11n at batch 1 stops scaling past a few cores; more only steals CPU
_FILES = {"onnx": "model.onnx", "int8": "model.int8.onnx", "pt": "best.pt"}
_FALLBACK: dict[str, tuple[Format, ...]] = {
    "onnx": ("onnx", "int8", "pt"),
    "int8": ("int8", "onnx", "pt"),
    "pt": ("pt", "onnx", "int8"),
}


class ModelSource(Record):
    """What a recognizer was loaded from: the caller's URI, the file used, and its format."""

    uri: str
    path: Path
    format: Format


class Recognition(Record):
    """The letters found in one image, best first, and where the time went."""

    detections: tuple[Detection, ...]
    timing_ms: dict[str, float]

    @property
    def top(self) -> Detection | None:
        """The most confident detection, or None when nothing passed the threshold."""
        return self.detections[0] if self.detections else None


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How an image of ``shape`` (h, w) was placed on the model's input canvas."""

    shape: tuple[int, int]
    gain: tuple[float, float]  # (x, y): each side is rounded separately, as ultralytics does
    pad: tuple[int, int]  # (left, top)


def letterbox(
    image: np.ndarray, size: tuple[int, int], canvas: np.ndarray | None = None
) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` keeping its aspect ratio and centre it on a grey canvas of ``size`` (h, w).

    Args:
        image: BGR uint8 image, H x W x 3.
        size: Canvas (height, width).
        canvas: Optional uint8 buffer of that size to draw into (saves an allocation per frame).

    Returns:
        The canvas and the placement needed to map boxes back.
    """
    h, w = image.shape[:2]
    out_h, out_w = size
    ratio = min(out_h / h, out_w / w)
    new_w, new_h = max(round(w * ratio), 1), max(round(h * ratio), 1)
    left, top = round((out_w - new_w) / 2 - 0.1), round((out_h - new_h) / 2 - 0.1)
    if canvas is None:
        canvas = np.empty((out_h, out_w, 3), np.uint8)
    canvas.fill(PAD_VALUE)
    resized = image if (new_w, new_h) == (w, h) else cv2.resize(image, (new_w, new_h))
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas, Letterbox((h, w), (new_w / w, new_h / h), (left, top))


def preprocess(
    image: np.ndarray,
    size: tuple[int, int],
    canvas: np.ndarray | None = None,
    tensor: np.ndarray | None = None,
) -> tuple[np.ndarray, Letterbox]:
    """Turn a BGR frame into the model input: letterboxed, RGB, NCHW float32 in [0, 1].

    Args:
        image: BGR uint8 image, H x W x 3.
        size: Model input (height, width).
        canvas: Optional (h, w, 3) uint8 buffer for the letterbox.
        tensor: Optional (1, 3, h, w) float32 buffer for the result.

    Returns:
        The input tensor and the placement needed to map boxes back.

    Raises:
        ValueError: When ``image`` is not a BGR uint8 image.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 H x W x 3 image, got {image.shape} {image.dtype}")
    canvas, placement = letterbox(image, size, canvas)
    if tensor is None:
        tensor = np.empty((1, 3, *size), np.float32)
    # BGR->RGB, HWC->CHW and /255 straight into the tensor; splitting the planes first beats
    # one strided numpy pass by a third.
    for plane, channel in zip(cv2.split(canvas)[::-1], tensor[0], strict=True):
        np.multiply(plane, np.float32(1 / 255), out=channel)
    return tensor, placement


def unletterbox(boxes: np.ndarray, placement: Letterbox) -> np.ndarray:
    """Map (N, 4) xyxy boxes on the canvas back to the original image, clipped to its borders.

    Args:
        boxes: Boxes in canvas pixels.
        placement: What :func:`letterbox` returned for the image.

    Returns:
        A new float32 (N, 4) array in image pixels.
    """
    (gain_x, gain_y), (left, top) = placement.gain, placement.pad
    h, w = placement.shape
    shifted = (boxes - np.array([left, top, left, top], np.float32)) / np.array(
        [gain_x, gain_y, gain_x, gain_y], np.float32
    )
    return shifted.clip(0, np.array([w, h, w, h], np.float32)).astype(np.float32, copy=False)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: (N, 4) xyxy boxes.
        scores: (N,) scores.
        iou: A box is dropped when its IoU with a better kept box is above this (as torchvision).
        max_det: Stop after keeping this many.

    Returns:
        Indices of the kept boxes, best first.
    """
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_det:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        inter_w = (np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest])).clip(0)
        inter_h = (np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest])).clip(0)
        inter = inter_w * inter_h
        order = rest[inter / (areas[best] + areas[rest] - inter + 1e-9) <= iou]
    return np.asarray(keep, dtype=np.int64)


def decode(
    output: np.ndarray,
    placement: Letterbox,
    names: tuple[str, ...],
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 10,
    agnostic: bool = False,
) -> tuple[Detection, ...]:
    """Turn a YOLO11 head output (1, 4 + nc, N) of cx, cy, w, h and class scores into detections.

    There is no objectness: a candidate's confidence is its best class score. NMS is per class
    unless ``agnostic`` (one hand shows one letter, so agnostic suits live video).

    Args:
        output: The raw head output, in canvas pixels.
        placement: How the frame was letterboxed onto the canvas.
        names: Class names, index = class id.
        conf: Keep candidates scoring strictly above this.
        iou: NMS overlap above which the weaker box is dropped.
        max_det: Most detections returned.
        agnostic: One NMS across all classes.

    Returns:
        Detections in frame pixels, best first.
    """
    pred = output[0]
    class_scores = pred[4:]
    # max over the class axis is ~15x faster than argmax there; argmax only the few survivors.
    candidates = np.flatnonzero(class_scores.max(0) > conf)
    if candidates.size == 0:
        return ()
    survivors = class_scores[:, candidates]
    class_ids = survivors.argmax(0)
    scores = survivors[class_ids, np.arange(candidates.size)]
    cx, cy, bw, bh = pred[:4, candidates]
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    # Shifting each class to its own far-away region makes one NMS pass class-aware.
    offset = 0.0 if agnostic else class_ids[:, None] * 8192.0
    kept = nms(boxes + offset, scores, iou, max_det)
    mapped = unletterbox(boxes[kept], placement).tolist()
    return tuple(
        Detection(
            letter=names[cid],
            class_id=cid,
            confidence=score,
            box=Box(x1=b[0], y1=b[1], x2=b[2], y2=b[3]),
        )
        for cid, score, b in zip(
            class_ids[kept].tolist(), scores[kept].tolist(), mapped, strict=True
        )
    )


class Recognizer:
    """Finds fingerspelled letters in BGR frames with one shared model.

    Thread safety: one ``onnxruntime.InferenceSession`` serves every thread, because
    ``InferenceSession.run`` is documented as safe to call concurrently, and a session per
    thread would multiply memory and thread pools on a small CPU. Per-thread scratch buffers
    hold the letterbox canvas and input tensor, so concurrent callers never share mutable
    state. The PyTorch fallback is not re-entrant, so its forward pass runs under a lock.

    Build one with :meth:`load`.
    """

    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        input_size: tuple[int, int],
        names: tuple[str, ...],
        source: ModelSource,
    ) -> None:
        self._infer = infer
        self.input_size = input_size
        self.names = names
        self.source = source
        self._scratch = threading.local()

    @property
    def imgsz(self) -> int:
        """The model's input side in pixels (the larger side if not square)."""
        return max(self.input_size)

    @classmethod
    def load(
        cls,
        uri: str,
        *,
        cache_dir: Path | None = None,
        threads: int | None = None,
        prefer: Format = "onnx",
        spin: bool = False,
    ) -> Recognizer:
        """Load a model from a file, a model folder or an MLflow URI.

        Args:
            uri: A ``.onnx`` or ``.pt`` file, a folder holding ``model.onnx`` /
                ``model.int8.onnx`` / ``best.pt`` / ``metadata.json`` (directly or under
                ``artifacts/``, as in a downloaded MLflow model), or an MLflow URI
                (``models:/name@alias``, ``models:/name/3``, ``runs:/<id>/model``).
            cache_dir: Where MLflow downloads are kept and reused; default
                ``~/.cache/fingerspell/models``.
            threads: Intra-op threads for inference; default ``os.cpu_count()`` capped at 4.
                For PyTorch weights this sets torch's process-wide thread count, and only
                when given.
            prefer: Which file of a folder to use first; the others are fallbacks.
            spin: Let idle onnxruntime threads busy-wait for work. About 7% faster on an idle
                machine, but 20-40% slower when other processes compete for the cores (measured
                on 2 shared cores), and it burns CPU the app's video threads need.

        Returns:
            A ready recognizer.

        Raises:
            FileNotFoundError: When the path or folder holds no usable model.
        """
        local = Path(uri)
        if not local.exists():
            if "://" not in uri and ":/" not in uri:
                raise FileNotFoundError(f"no model at {uri}")
            local = _download(uri, cache_dir or Path.home() / ".cache" / "fingerspell" / "models")
        path, fmt, meta = _pick(local, prefer)
        if fmt == "pt":
            if prefer != "pt":
                log.info("no ONNX export found, using PyTorch weights %s", path)
            infer, size, names = _torch_backend(path, meta, threads)
        else:
            infer, size, names, fmt = _onnx_backend(path, meta, threads, spin)
        source = ModelSource(uri=uri, path=path, format=fmt)
        log.info("loaded %s model %s (input %sx%s)", fmt, path, *size)
        return cls(infer, size, names, source)

    def recognize(
        self,
        image: np.ndarray,
        conf: float = 0.25,
        iou: float = 0.45,
        max_det: int = 10,
        *,
        agnostic: bool = False,
    ) -> Recognition:
        """Find letters in one BGR uint8 image (H x W x 3).

        Args:
            image: The frame, as OpenCV reads it.
            conf: Minimum class score kept.
            iou: NMS overlap above which the weaker box is dropped.
            max_det: Most detections returned.
            agnostic: NMS across classes (one letter per hand) instead of per class.

        Returns:
            Detections in original pixel coordinates, best first, and stage timings.
        """
        start = time.perf_counter()
        tensor, placement = self._preprocess(image)
        prepared = time.perf_counter()
        output = self._infer(tensor)
        inferred = time.perf_counter()
        detections = decode(output, placement, self.names, conf, iou, max_det, agnostic)
        done = time.perf_counter()
        timing = {
            "preprocess": (prepared - start) * 1e3,
            "infer": (inferred - prepared) * 1e3,
            "postprocess": (done - inferred) * 1e3,
            "total": (done - start) * 1e3,
        }
        return Recognition(detections=detections, timing_ms=timing)

    def recognize_path(self, path: Path | str, **kwargs: Any) -> Recognition:
        """Read an image file and :meth:`recognize` it; keyword arguments pass through.

        Raises:
            ValueError: When the file is missing or is not an image OpenCV can decode.
        """
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read {path} as an image")
        return self.recognize(image, **kwargs)

    def _preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        scratch = self._scratch
        if getattr(scratch, "canvas", None) is None:
            h, w = self.input_size
            scratch.canvas = np.empty((h, w, 3), np.uint8)
            scratch.tensor = np.empty((1, 3, h, w), np.float32)
        return preprocess(image, self.input_size, scratch.canvas, scratch.tensor)


def _pick(local: Path, prefer: Format) -> tuple[Path, Format, dict[str, Any]]:
    """Choose the model file of a path, its format and any metadata.json beside it."""
    if local.is_file():
        fmt: Format = "pt" if local.suffix == ".pt" else "onnx"
        return local, fmt, _read_metadata(local.parent / "metadata.json")
    for folder in (local / "artifacts", local):
        for fmt in _FALLBACK[prefer]:
            candidate = folder / _FILES[fmt]
            if candidate.is_file():
                return candidate, fmt, _read_metadata(folder / "metadata.json")
    raise FileNotFoundError(f"no model.onnx, model.int8.onnx or best.pt in {local}")


def _read_metadata(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _names(meta: dict[str, Any], nc: int | None) -> tuple[str, ...]:
    names = meta.get("names")
    if isinstance(names, dict):  # ultralytics keeps {id: name}
        names = [names[k] for k in sorted(names, key=int)]
    if names is None and nc in (None, len(LETTERS)):
        names = LETTERS
    if names is None or nc not in (None, len(names)):
        raise ValueError(f"model has {nc} classes but its metadata names {names!r}")
    return tuple(str(n) for n in names)


def _size(imgsz: Any) -> tuple[int, int]:
    if isinstance(imgsz, int):
        return imgsz, imgsz
    h, w = imgsz
    return int(h), int(w)


def _onnx_backend(
    path: Path, meta: dict[str, Any], threads: int | None, spin: bool
) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, int], tuple[str, ...], Format]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or min(os.cpu_count() or 1, MAX_THREADS)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(str(path), options, providers=providers)
    embedded = session.get_modelmeta().custom_metadata_map
    merged = {k: ast.literal_eval(v) for k, v in embedded.items() if k in ("names", "imgsz")}
    merged.update(meta)
    model_input, model_output = session.get_inputs()[0], session.get_outputs()[0]
    height, width = model_input.shape[2:]
    # A static export dictates its input size; a dynamic one runs at the size it was made for.
    static = isinstance(height, int) and isinstance(width, int)
    size = (height, width) if static else _size(merged.get("imgsz", 640))
    channels = model_output.shape[1]
    names = _names(merged, channels - 4 if isinstance(channels, int) else None)
    quantized = embedded.get("quantization") == "int8" or path.name.endswith(".int8.onnx")
    input_name = model_input.name

    def infer(tensor: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: tensor})[0]

    return infer, size, names, "int8" if quantized else "onnx"


def _torch_backend(
    path: Path, meta: dict[str, Any], threads: int | None
) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, int], tuple[str, ...]]:
    import torch
    from ultralytics import YOLO

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

    return infer, _size(merged["imgsz"]), _names(merged, len(model.names))


def _download(uri: str, cache_dir: Path) -> Path:
    """Download an MLflow model URI once into ``cache_dir`` and return the local folder."""
    import mlflow
    from mlflow import MlflowClient

    resolved, cacheable = uri, True
    if uri.startswith("models:/"):
        name, _, ref = uri.removeprefix("models:/").partition("@")
        if ref:  # an alias moves; cache by the version it points at now
            version = MlflowClient().get_model_version_by_alias(name, ref).version
            resolved = f"models:/{name}/{version}"
        else:
            cacheable = uri.rstrip("/").rsplit("/", 1)[-1].isdigit()  # "latest" or a stage moves
    # The same "models:/x/3" means another model on another server.
    where = f"{mlflow.get_tracking_uri()}|{mlflow.get_registry_uri()}|{resolved}"
    key = hashlib.sha256(where.encode()).hexdigest()[:16]
    final = cache_dir / key
    marker = final / ".fingerspell-model"
    if cacheable and marker.is_file():
        log.info("using cached %s (%s) from %s", uri, resolved, final)
        return final / marker.read_text()
    cache_dir.mkdir(parents=True, exist_ok=True)
    # A moving reference ("latest", a stage) goes to a fresh temp folder and is never reused.
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir if cacheable else None))
    log.info("downloading %s (%s) to %s", uri, resolved, final if cacheable else staging)
    got = Path(mlflow.artifacts.download_artifacts(artifact_uri=resolved, dst_path=str(staging)))
    if not cacheable:
        return got
    relative = got.relative_to(staging).as_posix()
    (staging / marker.name).write_text(relative)
    try:
        # Atomic: other processes see no folder or a complete one (the marker is inside).
        staging.rename(final)
    except OSError:  # another process finished first; its copy is as good as ours
        shutil.rmtree(staging, ignore_errors=True)
    return final / relative
