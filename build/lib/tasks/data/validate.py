"""VALIDATE: check a YOLO dataset file by file and collect every problem, not just the first.

Rules: every image decodes, and its header declares no more pixels than uploads and serving
accept (``MAX_PIXELS``: a tiny PNG can declare 30000×30000); images live only directly in
``<split>/images`` (the later stages read no sub-folder) and nothing else does; every label
line is ``class x y w h`` with an integer class in range, a centre inside the image and a
non-degenerate size; every label file has its image; an image without boxes is a background;
the same image bytes in two splits is leakage.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tasks.core.records import SPLITS
from tasks.data.validate_report import (
    DatasetInvalid,
    Problem,
    Severity,
    SizeStats,
    ValidationReport,
)
from tasks.data.yolo_format import is_image, label_fields, label_line_problems
from tasks.inference.image_bytes import MAX_PIXELS

__all__ = ["DatasetInvalid", "Problem", "SizeStats", "ValidationReport", "validate_dataset"]

_IGNORED_NAMES = {"data.yaml", ".gitignore", ".gitkeep"}
# A JPEG starts with SOI and ends with EOI, a PNG starts with its signature and ends with its
# IEND chunk: a file with the start but not the end was cut off (a truncated copy or download).
_MARKERS = {
    ".jpg": (b"\xff\xd8", b"\xff\xd9"),
    ".jpeg": (b"\xff\xd8", b"\xff\xd9"),
    ".png": (b"\x89PNG", b"IEND"),
}
_TRUNCATED = "truncated image: the file ends before its end marker"


@dataclass
class _Scan:
    """Mutable state while validating; frozen into a ValidationReport at the end."""

    root: Path
    nc: int
    problems: list[Problem] = field(default_factory=list)
    images: dict[str, list[Path]] = field(default_factory=lambda: defaultdict(list))
    labels: dict[str, dict[str, Path]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, severity: Severity, path: Path, message: str, line: int | None = None) -> None:
        relative = path.relative_to(self.root).as_posix()
        self.problems.append(Problem(severity=severity, file=relative, line=line, message=message))


def validate_dataset(
    root: Path, names: Sequence[str], allow_leakage: bool = False
) -> ValidationReport:
    """Validate a YOLO dataset folder laid out as ``{train,valid,test}/{images,labels}``.

    Args:
        root: The dataset folder.
        names: Class names, index = class id.
        allow_leakage: Report identical images in different splits as warnings, not errors.

    Returns:
        The report; check ``report.ok`` or call ``report.raise_if_invalid()``.
    """
    scan = _Scan(root=root, nc=len(names))
    _sort_files(scan)
    boxes: dict[str, dict[str, int]] = {}
    backgrounds: dict[str, int] = {}
    sizes: dict[str, SizeStats] = {}
    hashes: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 1))) as pool:
        for split in SPLITS:
            images = scan.images.get(split, [])
            inspected = list(pool.map(_inspect_image, images))
            dims = []
            for image, (digest, size, error) in zip(images, inspected, strict=True):
                hashes[digest].append((split, image))
                if error:
                    scan.add("error", image, error)
                if size:
                    dims.append(size)
            sizes[split] = _size_stats(dims)
            boxes[split], backgrounds[split] = _check_labels(scan, split, names)
    _check_duplicates(scan, hashes, allow_leakage)
    return ValidationReport(
        root=str(root),
        names=tuple(names),
        images={split: len(scan.images.get(split, [])) for split in SPLITS},
        backgrounds=backgrounds,
        boxes=boxes,
        sizes=sizes,
        problems=tuple(sorted(scan.problems, key=lambda p: (p.file, p.line or 0, p.message))),
    )


def _sort_files(scan: _Scan) -> None:
    """Put every file in its place: split images, split labels, or a misplaced-file problem."""
    for split in SPLITS:
        if not (scan.root / split / "images").is_dir():
            severity: Severity = "warning" if split == "test" else "error"
            scan.add(severity, scan.root / split, f"missing folder {split}/images")
    for path in sorted(scan.root.rglob("*")):
        if not path.is_file() or path.suffix == ".cache" or path.name in _IGNORED_NAMES:
            continue
        parts = path.relative_to(scan.root).parts
        split = parts[0] if len(parts) > 1 and parts[0] in SPLITS else None
        kind = parts[1] if split and len(parts) > 2 else None
        image = is_image(path)
        if split and kind == "images":
            if image and len(parts) > 3:
                # Augment, crops and evaluate read only the files directly in <split>/images.
                scan.add("error", path, f"image in a sub-folder of {split}/images: move it up")
            elif image:
                scan.images[split].append(path)
            else:
                scan.add("error", path, f"not an image file: {split}/images holds only images")
        elif split and kind == "labels" and path.suffix == ".txt":
            scan.labels[split][_stem_key(path, scan.root / split / "labels")] = path
        elif image:
            where = f"{split}/images" if split else "<split>/images"
            scan.add("error", path, f"image outside {where}: training would never see it")
        elif split:
            scan.add("warning", path, "unexpected file in a split folder; ignored")


def _stem_key(path: Path, folder: Path) -> str:
    return path.relative_to(folder).with_suffix("").as_posix()


def _inspect_image(path: Path) -> tuple[str, tuple[int, int] | None, str | None]:
    """Hash and decode one image: (sha256, (width, height) or None, error or None)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"unreadable:{path}", None, f"cannot read image: {exc.strerror}"
    if not data:  # an interrupted copy or download; say so rather than "corrupt"
        # Its own key: several empty files are each this problem, not duplicates of each other.
        return f"empty:{path}", None, "empty image file (0 bytes)"
    digest = hashlib.sha256(data).hexdigest()
    if too_many := _too_many_pixels(data):
        return digest, None, too_many
    try:
        array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        array = None
    start, end = _MARKERS.get(path.suffix.lower(), (b"", b""))
    cut = bool(end) and data.startswith(start) and end not in data[-32:]
    if array is None:
        return digest, None, _TRUNCATED if cut else "cannot decode image: corrupt or not an image"
    size = (int(array.shape[1]), int(array.shape[0]))
    # Some decoders fill a cut-off image with grey rather than fail: still an error.
    return digest, size, _TRUNCATED if cut else None


def _too_many_pixels(data: bytes) -> str | None:
    """The problem of an image whose header declares more than ``MAX_PIXELS``, else None.

    Read before decoding: a PNG of a few hundred bytes can declare 30000×30000 pixels, and
    decoding a few of those at once (one per thread) would exhaust the memory.
    """
    limit = f"images up to {MAX_PIXELS:,} pixels are accepted"
    try:
        # Pillow reads only the header here.
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Image.DecompressionBombError:  # beyond Pillow's own limit: it names no size
        return f"too many pixels: over {2 * (Image.MAX_IMAGE_PIXELS or 0):,} declared; {limit}"
    except Exception:  # not an image Pillow knows: OpenCV's decode says what is wrong
        return None
    if width * height > MAX_PIXELS:
        return f"too many pixels: {width}×{height} declared; {limit}"
    return None


def _size_stats(dims: list[tuple[int, int]]) -> SizeStats:
    if not dims:
        return SizeStats()
    widths, heights = zip(*dims, strict=True)
    return SizeStats(
        min_width=min(widths),
        max_width=max(widths),
        min_height=min(heights),
        max_height=max(heights),
    )


def _check_labels(scan: _Scan, split: str, names: Sequence[str]) -> tuple[dict[str, int], int]:
    """Check a split's label files; return (valid boxes per class name, background images)."""
    counts = dict.fromkeys(names, 0)
    labels = dict(scan.labels.get(split, {}))
    images_dir = scan.root / split / "images"
    owners: dict[str, Path] = {}
    backgrounds = 0
    for image in scan.images.get(split, []):
        key = _stem_key(image, images_dir)
        if key in owners:
            scan.add("error", image, f"shares its label file with {owners[key].name}")
            continue
        owners[key] = image
        label = labels.pop(key, None)
        if label is None or _is_blank(label):
            backgrounds += 1
            continue
        for class_id in _check_label_file(scan, label):
            counts[names[class_id]] += 1
    for orphan in labels.values():
        scan.add("error", orphan, f"label without image: no {split}/images/{orphan.stem}.* file")
    return counts, backgrounds


def _is_blank(label: Path) -> bool:
    try:
        return not label.read_bytes().strip()
    except OSError:
        return False


def _check_label_file(scan: _Scan, label: Path) -> list[int]:
    """Check every line of a label file; return the class ids of its valid boxes."""
    try:
        text = label.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        scan.add("error", label, f"cannot read label file as UTF-8 text: {exc}")
        return []
    classes: list[int] = []
    seen: dict[tuple[str, ...], int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = label_fields(raw)
        if not fields:
            continue
        messages = label_line_problems(fields, scan.nc)
        for message in messages:
            scan.add("error", label, message, line=number)
        if fields in seen:
            scan.add("warning", label, f"duplicate of line {seen[fields]}", line=number)
        elif not messages:
            seen[fields] = number
            classes.append(int(float(fields[0])))
    return classes


def _check_duplicates(
    scan: _Scan, hashes: dict[str, list[tuple[str, Path]]], allow_leakage: bool
) -> None:
    """Report byte-identical images: across splits it is leakage, within one a warning."""
    leak: Severity = "warning" if allow_leakage else "error"
    for copies in hashes.values():
        if len(copies) < 2:
            continue
        first_split, first = copies[0]
        for split, image in copies[1:]:
            original = first.relative_to(scan.root).as_posix()
            if split == first_split:
                scan.add("warning", image, f"same bytes as {original} (duplicate in {split})")
            else:
                scan.add(
                    leak,
                    image,
                    f"same bytes as {original}: leakage between {first_split} and {split}",
                )
