"""Batch prediction: expand inputs to image files, recognize each, write CSV and JSON.

Unreadable images are reported per file and skipped; the rest still get predictions. A file's
header is read first: one declaring too many pixels, or too large a file, is skipped before its
bytes are read. Locations are written redacted (a signed URL's signature never lands in the
predictions), and the detection settings have the served model's limits.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict

from tasks.core.files import write_atomic
from tasks.core.redact import redact
from tasks.data.yolo_format import is_image
from tasks.inference.draw import draw_detections
from tasks.inference.image_bytes import MAX_PIXELS, ImageRejected, decode_image_bytes
from tasks.inference.recognizer import Recognizer
from tasks.registry.pyfunc_model import check_options

MAX_FILE_BYTES = 200 * 1024 * 1024  # a 50-megapixel PNG is ~150 MB at most

CSV_COLUMNS = ("image", "letter", "confidence", "x1", "y1", "x2", "y2")


class Skipped(BaseModel):
    """An input that produced no prediction, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str
    reason: str


class PredictReport(BaseModel):
    """What a batch prediction produced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    n_images: int
    n_detections: int
    skipped: tuple[Skipped, ...]
    letter_counts: dict[str, int]
    csv_path: Path
    json_path: Path
    annotated_dir: Path | None = None


def expand_inputs(inputs: Sequence[str]) -> tuple[list[str], list[Skipped]]:
    """Turn folders, globs, files and URIs into a sorted, de-duplicated list of images.

    Folders are searched recursively for image suffixes; ``file://`` URIs become paths;
    other URIs (``gs://``, ``https://``) are kept as they are and read through fsspec.

    Returns:
        The image locations, and the inputs that matched nothing.
    """
    found: dict[str, None] = {}
    missing: list[Skipped] = []
    for item in inputs:
        parsed = urlparse(item)
        if parsed.scheme not in ("", "file") and len(parsed.scheme) > 1:
            found[item] = None
            continue
        path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(item)
        if path.is_dir():
            matches = [p for p in path.rglob("*") if is_image(p)]
        elif path.is_file():
            matches = [path]
        else:
            matches = [Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file()]
        if not matches:
            missing.append(Skipped(image=item, reason="no such file, folder or glob match"))
        for match in sorted(matches):
            found[str(match)] = None
    return list(found), missing


def read_image(location: str) -> np.ndarray:
    """Read a local path or an fsspec URI into a BGR array.

    Raises:
        ValueError: The location cannot be read, is empty, does not decode as an image, or
            declares more than :data:`~tasks.inference.image_bytes.MAX_PIXELS` pixels.
    """
    name = redact(location)
    try:
        with _open(location) as handle:
            data = _read_checked(handle, name)
    except ImageRejected:
        raise
    except OSError as error:  # its text may repeat the location unredacted: name the kind only
        kind = os.strerror(error.errno) if isinstance(error.errno, int) else type(error).__name__
        raise ValueError(f"cannot read {name}: {kind}") from None
    except Exception as error:  # any backend error means: this one file is unreadable
        raise ValueError(f"cannot read {name}: {redact(str(error))}") from None
    # The one decoder for outside bytes: an empty file, a non-image or a pixel bomb becomes a
    # one-line ValueError (ImageRejected) naming the file, never a cv2.error ending the batch.
    return decode_image_bytes(data, name=name)


def _open(location: str) -> Any:
    """A binary handle on a local path or an fsspec URI (remote ones read lazily)."""
    if "://" in location:
        import fsspec

        return fsspec.open(location, "rb")
    return Path(location).open("rb")  # the caller's with-block closes it


def _read_checked(handle: Any, name: str) -> bytes:
    """The file's bytes, once its size and its header's pixel count are within the limits."""
    from PIL import Image

    size = getattr(handle, "size", None)
    if size is None:
        size = os.fstat(handle.fileno()).st_size
    if size > MAX_FILE_BYTES:
        raise ImageRejected(f"{name} is {size:,} bytes; files up to {MAX_FILE_BYTES:,} are read.")
    try:
        # Pillow reads only the header here (a few KB), not the pixels.
        with Image.open(handle) as header:
            width, height = header.size
    except Image.DecompressionBombError:  # beyond Pillow's own limit (~179 Mpx)
        raise ImageRejected(
            f"{name} has too many pixels; images up to {MAX_PIXELS:,} are accepted."
        ) from None
    except Exception:  # not an image: the decoder names the problem
        width = height = 0
    if width * height > MAX_PIXELS:
        raise ImageRejected(
            f"{name} has {width}×{height} pixels; images up to {MAX_PIXELS:,} are accepted."
        )
    handle.seek(0)
    return handle.read(MAX_FILE_BYTES + 1)


def _annotated_name(location: str, index: int) -> str:
    return f"{index:05d}_{Path(urlparse(location).path).stem}.jpg"


def predict_images(
    recognizer: Recognizer,
    images: Iterable[str],
    out_dir: Path,
    conf: float = 0.25,
    annotate: bool = False,
    skipped: Sequence[Skipped] = (),
) -> PredictReport:
    """Recognize every image and write ``predictions.csv`` / ``predictions.json`` to ``out_dir``.

    Args:
        recognizer: The shared recognizer.
        images: Image locations (see :func:`expand_inputs`).
        out_dir: Output folder (created).
        conf: Minimum confidence of a detection.
        annotate: Also write each image with its detections drawn to ``out_dir/annotated``.
        skipped: Inputs already known to be unusable, carried into the report.

    Returns:
        Counts, skipped files with reasons, and the paths written.
    """
    check_options(conf)
    rows: list[dict[str, object]] = []
    per_image: list[dict[str, object]] = []
    skips = list(skipped)
    annotated_dir = out_dir / "annotated" if annotate else None
    n_images = 0
    for index, location in enumerate(images):
        try:
            image = read_image(location)
        except ValueError as error:
            skips.append(Skipped(image=redact(location), reason=str(error)))
            continue
        n_images += 1
        result = recognizer.recognize(image, conf=conf)
        dets = [
            {"letter": d.letter, "confidence": round(d.confidence, 4)}
            | {k: round(getattr(d.box, k), 1) for k in ("x1", "y1", "x2", "y2")}
            for d in result.detections
        ]
        shown = redact(location)  # a signed URL's signature stays out of the predictions
        rows += [{"image": shown, **d} for d in dets]
        per_image.append({"image": shown, "detections": dets})
        if annotated_dir is not None:
            annotated_dir.mkdir(parents=True, exist_ok=True)
            drawn = draw_detections(image, result.detections)
            cv2.imwrite(str(annotated_dir / _annotated_name(location, index)), drawn)

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    csv_path, json_path = out_dir / "predictions.csv", out_dir / "predictions.json"
    write_atomic(csv_path, buffer.getvalue())
    counts = Counter(str(row["letter"]) for row in rows)
    report = PredictReport(
        model=redact(recognizer.source.uri),
        n_images=n_images,
        n_detections=len(rows),
        skipped=tuple(skips),
        letter_counts=dict(sorted(counts.items())),
        csv_path=csv_path,
        json_path=json_path,
        annotated_dir=annotated_dir,
    )
    payload = {"report": report.model_dump(mode="json"), "images": per_image}
    write_atomic(json_path, json.dumps(payload, indent=2))
    return report
