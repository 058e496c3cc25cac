"""The one recognizer: load a detector, letterbox a frame, run it, decode letters.

Every caller (the webcam app, the predict flow, the MLflow pyfunc model, the benchmarks) goes
through :class:`Recognizer`, so there is exactly one letterbox, one decode and one NMS in the
project. Pre/post-processing is numpy/cv2; inference is onnxruntime, or PyTorch through
ultralytics when a model has no ONNX export.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tasks.core.records import Detection, Record
from tasks.inference.backends import (
    Format,
    classifier_beside,
    onnx_backend,
    pick_model_file,
    torch_backend,
)
from tasks.inference.crop_classifier import LETTERS_PER_HAND, CropClassifier
from tasks.inference.fusion import CANDIDATE_SCORE, CANDIDATES, FusedReader, load_rule
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

log = logging.getLogger(__name__)


class ModelSource(Record):
    """What a recognizer was loaded from: the caller's URI, the file used, and its format."""

    uri: str
    path: Path
    format: Format
    classifier: Path | None = None
    landmarks: Path | None = None


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
    a 26-class detector (see :mod:`tasks.inference.crop_classifier`). A fused two-stage model
    (``landmarks.onnx`` and ``hand_landmarker.task`` beside them, the rule in its metadata)
    also reads each box's hand landmarks: a box that holds no hand is not read, the letter is
    the pixels' and the landmarks' readings fused, each detection carries the hand's
    landmarks, and where no box holds a hand the palm detector looks for one (see
    :mod:`tasks.inference.fusion`).

    Build one with :meth:`load`.
    """

    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        input_size: tuple[int, int],
        names: tuple[str, ...],
        source: ModelSource,
        classifier: CropClassifier | None = None,
        fused: FusedReader | None = None,
    ) -> None:
        self._infer = infer
        self.input_size = input_size
        self.names = classifier.names if classifier else names
        self.source = source
        self.classifier = classifier
        self.fused = fused
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
        path, fmt, meta = pick_model_file(local, prefer)
        classifier = classifier_beside(path, meta)
        fused = None
        if classifier is not None:
            meta = {**meta, "names": ["hand"]}  # the detector finds hands; letters come after
            if (rule := load_rule(meta)) is not None:
                fused = FusedReader.open(path.parent, classifier, rule)
        if fmt == "pt":
            if prefer != "pt":
                log.info("no ONNX export found, using PyTorch weights %s", path)
            infer, size, names = torch_backend(path, meta, threads)
        else:
            infer, size, names, fmt = onnx_backend(path, meta, threads, spin)
        source = ModelSource(
            uri=uri,
            path=path,
            format=fmt,
            classifier=classifier.path if classifier else None,
            landmarks=fused.landmarks.path if fused else None,
        )
        log.info("loaded %s model %s (input %sx%s)", fmt, path, *size)
        if classifier is not None:
            log.info("with letter classifier %s (%s px crops)", classifier.path, classifier.size)
        if fused is not None:
            log.info("fused with landmark classifier %s (%s)", fused.landmarks.path, fused.rule)
        return cls(infer, size, names, source, classifier, fused)

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
            # A fused model checks a few boxes for a hand even when one letter is asked for,
            # and boxes the detector is unsure of too: the landmark network confirms hands.
            boxes, least = (
                (max(max_det, CANDIDATES), min(conf, CANDIDATE_SCORE))
                if self.fused
                else (max_det, conf)
            )
            hands = decode(output, placement, ("hand",), least, iou, boxes, agnostic=True)
            decoded = time.perf_counter()
            per_hand = 1 if agnostic else LETTERS_PER_HAND
            reader = self.fused or self.classifier
            detections = reader.letters(image, hands, conf, max_det, per_hand)
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
