"""The one recognizer: load a detector, letterbox a frame, run it, decode letters.

Every caller (the webcam app, the predict flow, the MLflow pyfunc model, the benchmarks) goes
through :class:`Recognizer`, so there is exactly one letterbox, one decode and one NMS in the
project. Pre/post-processing is numpy/cv2; inference is onnxruntime, or PyTorch through
ultralytics when a model has no ONNX export.
"""

from __future__ import annotations

import ast
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from tasks.core.records import LETTERS, Detection, Record
from tasks.inference.crop_classifier import CLASSIFIER_FILES, LETTERS_PER_HAND, CropClassifier
from tasks.inference.model_cache import download
from tasks.inference.runtime import MAX_THREADS, open_session  # noqa: F401  (MAX_THREADS re-exported)
from tasks.inference.yolo_decode import (  # noqa: F401  (re-exported: the recognizer's public helpers)
    PAD_VALUE,
    Letterbox,
    decode,
    letterbox,
    nms,
    preprocess,
    unletterbox,
)
from tasks.training.crops import DEFAULT_PAD

log = logging.getLogger(__name__)

Format = Literal["onnx", "int8", "pt"]
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
    classifier: Path | None = None


class Recognition(Record):
    """The letters found in one image, best first, and where the time went."""

    detections: tuple[Detection, ...]
    timing_ms: dict[str, float]

    @property
    def top(self) -> Detection | None:
        """The most confident detection, or None when nothing passed the threshold."""
        return self.detections[0] if self.detections else None


class Recognizer:
    """Finds fingerspelled letters in BGR frames with one shared model.

    Thread safety: one ``onnxruntime.InferenceSession`` serves every thread, because
    ``InferenceSession.run`` is documented as safe to call concurrently, and a session per
    thread would multiply memory and thread pools on a small CPU. Per-thread scratch buffers
    hold the letterbox canvas and input tensor, so concurrent callers never share mutable
    state. The PyTorch fallback is not re-entrant, so its forward pass runs under a lock.

    A two-stage model (a folder with ``classifier.onnx`` beside a one-class ``model.onnx``)
    finds hands first and reads each hand's letter from its crop; callers cannot tell it from
    a 26-class detector (see :mod:`tasks.inference.crop_classifier`).

    Build one with :meth:`load`.
    """

    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        input_size: tuple[int, int],
        names: tuple[str, ...],
        source: ModelSource,
        classifier: CropClassifier | None = None,
    ) -> None:
        self._infer = infer
        self.input_size = input_size
        self.names = classifier.names if classifier else names
        self.source = source
        self.classifier = classifier
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
            threads: Intra-op threads of the detector; default ``os.cpu_count()`` capped at 4
                (a two-stage model's small classifier always runs on one).
                For PyTorch weights this sets torch's process-wide thread count, and only
                when given.
            prefer: Which file of a folder to use first; the others are fallbacks.
            spin: Let idle onnxruntime threads busy-wait for work. 7-35% faster on an idle
                machine (the 2-core dev boxes differed), but 20-40% slower when other processes
                compete for the cores, and it burns CPU the app's video threads need.

        Returns:
            A ready recognizer.

        Raises:
            FileNotFoundError: When the path or folder holds no usable model.
        """
        local = Path(uri)
        if not local.exists():
            if "://" not in uri and ":/" not in uri:
                raise FileNotFoundError(f"no model at {uri}")
            local = download(uri, cache_dir or Path.home() / ".cache" / "fingerspell" / "models")
        path, fmt, meta = _pick(local, prefer)
        classifier = _classifier(path, meta, prefer)
        if classifier is not None:
            meta = {**meta, "names": ["hand"]}  # the detector finds hands; letters come after
        if fmt == "pt":
            if prefer != "pt":
                log.info("no ONNX export found, using PyTorch weights %s", path)
            infer, size, names = _torch_backend(path, meta, threads)
        else:
            infer, size, names, fmt = _onnx_backend(path, meta, threads, spin)
        source = ModelSource(
            uri=uri, path=path, format=fmt, classifier=classifier.path if classifier else None
        )
        log.info("loaded %s model %s (input %sx%s)", fmt, path, *size)
        if classifier is not None:
            log.info("with letter classifier %s (%s px crops)", classifier.path, classifier.size)
        return cls(infer, size, names, source, classifier)

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
        if self.classifier is None:
            detections = decode(output, placement, self.names, conf, iou, max_det, agnostic)
            decoded = done = time.perf_counter()
        else:
            hands = decode(output, placement, ("hand",), conf, iou, max_det, agnostic=True)
            decoded = time.perf_counter()
            per_hand = 1 if agnostic else LETTERS_PER_HAND
            detections = self.classifier.letters(image, hands, conf, max_det, per_hand)
            done = time.perf_counter()
        timing = {
            "preprocess": (prepared - start) * 1e3,
            "infer": (inferred - prepared) * 1e3,
            "postprocess": (decoded - inferred) * 1e3,
            **({"classify": (done - decoded) * 1e3} if self.classifier else {}),
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


def _classifier(detector: Path, meta: dict[str, Any], prefer: Format) -> CropClassifier | None:
    """The letter classifier beside a detector, if the model is two-stage."""
    folder = detector.parent
    order = ("int8", "onnx") if prefer == "int8" else ("onnx", "int8")
    pad, mirror = float(meta.get("crop_pad", DEFAULT_PAD)), bool(meta.get("crop_mirror", False))
    members = meta.get("classifiers")
    if members:  # an ensemble: every member fp32, as assembled
        paths = [folder / str(name) for name in members]
        missing = [path.name for path in paths if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"two-stage model in {folder} lacks {', '.join(missing)}")
        return CropClassifier(paths, pad, mirror=mirror)
    for kind in order:
        candidate = folder / CLASSIFIER_FILES[kind]
        if candidate.is_file():
            return CropClassifier(candidate, pad, mirror=mirror)
    if meta.get("two_stage"):
        raise FileNotFoundError(f"two-stage model in {folder} has no classifier.onnx")
    return None


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
    session = open_session(path, threads, spin)
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
