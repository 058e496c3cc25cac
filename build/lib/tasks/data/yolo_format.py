"""The YOLO dataset format, read and written in one place.

A dataset is ``{train,valid,test}/{images,labels}`` with one ``labels/<stem>.txt`` per image
(one ``class cx cy w h`` line per box, normalized to the image; no file or an empty one is a
background image) and a ``data.yaml`` naming the split folders and the class names. Every
stage (acquire, validate, augment, preview, crops, evaluate) reads and writes it through here;
the rules of a label line are the validator's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml

from tasks.core.files import write_atomic
from tasks.core.records import IMAGE_SUFFIXES, SPLITS
from tasks.data.sources import AcquireError

# data.yaml keys for our split folders; YOLO calls the validation split "val".
YAML_KEYS = {"train": "train", "valid": "val", "test": "test"}
MIN_SIZE = 1e-3  # boxes thinner than this fraction of the image are labelling slips
OVERFLOW = 0.02  # how far a box may poke out of the image before it is an error
# A class id is written as an integer: "1.0" means a tool wrote floats, maybe in the wrong column.
_INTEGER = re.compile(r"[+-]?\d+")


class LabelLine(NamedTuple):
    """One box of a label file: class id and ``cx cy w h`` normalized to the image."""

    cls: int
    cx: float
    cy: float
    w: float
    h: float

    def xyxy(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The box in pixels of a ``width`` × ``height`` image, as ``x0 y0 x1 y1``."""
        cx, cy, w, h = self.cx * width, self.cy * height, self.w * width, self.h * height
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


# --- label lines -------------------------------------------------------------------------


def label_fields(line: str) -> tuple[str, ...]:
    """The whitespace-separated fields of a label line (none for a blank line)."""
    return tuple(line.split())


def label_line_problems(fields: Sequence[str], nc: int | None, geometry: bool = True) -> list[str]:
    """Problems with one ``class x y w h`` line (its whitespace-split fields); empty if valid.

    Args:
        fields: The line's fields.
        nc: Number of classes (``None``: any non-negative integer class id).
        geometry: Also check that the box lies in the image and is not degenerate.

    Returns:
        One message per problem: a wrong field count, a non-number, a class id that is not
        written as an integer (``1.0``) or is out of range, and with ``geometry`` the box rules.
    """
    if len(fields) != 5:
        return [f"expected 5 values 'class x y w h', got {len(fields)}"]
    values: list[float] = []
    for text in fields:
        try:
            values.append(float(text))
        except ValueError:
            return [f"not a number: {text!r}"]
        if not math.isfinite(values[-1]):
            return [f"not a finite number: {text!r}"]
    class_id, x, y, w, h = values
    problems = []
    if not class_id.is_integer():
        problems.append(f"class id {fields[0]} is not an integer")
    elif not _INTEGER.fullmatch(fields[0]):
        problems.append(f"class id {fields[0]} is not written as an integer (write {class_id:.0f})")
    elif class_id < 0 or (nc is not None and class_id >= nc):
        upper = "" if nc is None else f"{nc - 1}"
        problems.append(f"class id {int(class_id)} out of range 0..{upper}")
    if not geometry:
        return problems
    if not (0 <= x <= 1 and 0 <= y <= 1):
        problems.append(f"box centre ({x:g}, {y:g}) outside [0, 1]")
    if not (0 < w <= 1 and 0 < h <= 1):
        problems.append(f"box size {w:g}x{h:g} outside (0, 1]")
    elif w < MIN_SIZE or h < MIN_SIZE:
        problems.append(f"degenerate box: size {w:g}x{h:g} is almost zero")
    overflow = max(w / 2 - x, x + w / 2 - 1, h / 2 - y, y + h / 2 - 1)
    if not problems and overflow > OVERFLOW:
        problems.append(f"box extends {overflow:.0%} of the image beyond its edge")
    return problems


def parse_label_line(line: str, nc: int | None = None) -> LabelLine | None:
    """The box of one label line, ``None`` for a blank line (the one label-line parser).

    Raises:
        ValueError: When the line is not ``class cx cy w h`` with an integer class id (in
            ``0..nc-1`` when ``nc`` is given) and finite numbers.
    """
    fields = label_fields(line)
    if not fields:
        return None
    problems = label_line_problems(fields, nc, geometry=False)
    if problems:
        raise ValueError(f"{'; '.join(problems)}: {line!r}")
    cls, cx, cy, w, h = (float(value) for value in fields)
    return LabelLine(int(cls), cx, cy, w, h)


def label_path(image: Path) -> Path:
    """The label file of an image in ``<split>/images/``."""
    return image.parent.parent / "labels" / f"{image.stem}.txt"


def read_label_lines(path: Path, nc: int | None = None) -> list[LabelLine]:
    """The boxes of a label file; a missing file means a background image.

    Raises:
        ValueError: On a malformed line, naming the file and line.
    """
    if not path.is_file():
        return []
    boxes = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            box = parse_label_line(line, nc)
        except ValueError as error:
            raise ValueError(
                f"{path}: expected 'class cx cy w h' at line {number}, {error}"
            ) from None
        if box is not None:
            boxes.append(box)
    return boxes


def read_labels(path: Path) -> tuple[list[int], np.ndarray]:
    """Class ids and boxes (N, 4) as ``cx cy w h`` normalized, of a label file."""
    lines = read_label_lines(path)
    boxes = np.asarray([line[1:] for line in lines], dtype=np.float32).reshape(-1, 4)
    return [line.cls for line in lines], boxes


def read_boxes_xyxy(label: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) as ``x0 y0 x1 y1`` pixels of a ``width`` × ``height`` image, and classes."""
    lines = read_label_lines(label)
    boxes = [line.xyxy(width, height) for line in lines]
    classes = [line.cls for line in lines]
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64)


def format_labels(boxes: np.ndarray, class_ids: Sequence[int]) -> str:
    """YOLO label text for boxes, each clipped to the image.

    Args:
        boxes: (N, 4) boxes as ``cx cy w h`` normalized to the image.
        class_ids: Class id of each box.

    Returns:
        One ``class cx cy w h`` line per box.
    """
    lines = []
    for (cx, cy, w, h), cls in zip(boxes, class_ids, strict=True):
        x1, x2 = max(cx - w / 2, 0.0), min(cx + w / 2, 1.0)
        y1, y2 = max(cy - h / 2, 0.0), min(cy + h / 2, 1.0)
        lines.append(f"{cls} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}\n")
    return "".join(lines)


# --- images ------------------------------------------------------------------------------


def is_image(path: Path) -> bool:
    """True for a file name with an image suffix YOLO reads."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """The images directly in ``folder``, sorted; none when it does not exist."""
    return sorted(p for p in (folder.iterdir() if folder.is_dir() else ()) if is_image(p))


def count_images(root: Path) -> dict[str, int]:
    """Images per split that has an ``images`` folder (sub-folders included)."""
    return {
        split: sum(1 for path in folder.rglob("*") if path.is_file() and is_image(path))
        for split in SPLITS
        if (folder := root / split / "images").is_dir()
    }


# --- data.yaml ---------------------------------------------------------------------------


def read_data_yaml(path: Path) -> dict[str, Any]:
    """The mapping of a ``data.yaml``.

    Raises:
        AcquireError: If it cannot be read or is no YAML mapping.
    """
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise AcquireError(f"cannot read {path}: {exc}") from exc
    if not isinstance(meta, dict):
        raise AcquireError(f"{path} is not a YAML mapping")
    return meta


def read_names(data_yaml: Path) -> tuple[str, ...]:
    """Read the class names of a YOLO ``data.yaml`` (list or ``{id: name}`` form).

    Args:
        data_yaml: The file to read.

    Returns:
        Names, index = class id.

    Raises:
        AcquireError: If names are missing, malformed, or disagree with ``nc``.
    """
    meta = read_data_yaml(data_yaml)
    names: Any = meta.get("names")
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise AcquireError(f"{data_yaml}: names must be keyed 0..n-1, got {sorted(names)}")
        names = [names[index] for index in range(len(names))]
    if not isinstance(names, list) or not names:
        raise AcquireError(f"{data_yaml}: 'names' must be a non-empty list of class names")
    if "nc" in meta and meta["nc"] != len(names):
        raise AcquireError(f"{data_yaml}: nc={meta['nc']} but {len(names)} names are listed")
    return tuple(str(name) for name in names)


def split_images(data_yaml: Path, split: str) -> tuple[Path, dict[str, Any]]:
    """The split's image folder and the yaml's contents, with the dataset root made absolute.

    ``path: .`` in a Roboflow export means "next to data.yaml", but ultralytics would read it
    relative to the working directory; resolving it here makes evaluation location-independent.
    """
    spec = read_data_yaml(data_yaml)
    key = YAML_KEYS[split]
    if not spec.get(key):
        raise AcquireError(f"{data_yaml} names no '{key}' split")
    root = Path(str(spec.get("path") or "."))
    root = root if root.is_absolute() else (data_yaml.parent / root).resolve()
    images = root / str(spec[key])
    if not images.exists() and str(spec[key]).startswith("../"):
        images = root / str(spec[key])[3:]  # Roboflow writes ../test/images; ultralytics copes too
    return images.resolve(), spec


def count_split_images(data_yaml: Path, split: str = "train") -> int:
    """Number of images in the split that ``data_yaml`` names."""
    return len(list_images(split_images(data_yaml, split)[0]))


def data_yaml_spec(
    root: Path | str, splits: Mapping[str, str] | Iterable[str], names: Sequence[str]
) -> dict[str, Any]:
    """The contents of a ``data.yaml``.

    Args:
        root: The dataset root (``path``).
        splits: Our split names (each at ``<split>/images``), or YOLO keys mapped to folders.
        names: Class names, index = class id.
    """
    if not isinstance(splits, Mapping):
        splits = {YAML_KEYS[split]: f"{split}/images" for split in splits}
    return {"path": str(root), **splits, "nc": len(names), "names": list(names)}


def write_data_yaml(path: Path, spec: Mapping[str, Any]) -> Path:
    """Write a ``data.yaml`` (atomically); see :func:`data_yaml_spec`."""
    text = yaml.safe_dump(dict(spec), sort_keys=False, allow_unicode=True, default_flow_style=None)
    return write_atomic(path, text)
