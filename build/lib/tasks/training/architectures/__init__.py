"""Model architectures this project adds to ultralytics' own, as small yaml files.

Each file here names an ultralytics model yaml as its ``base`` and overrides some of its keys
(width, depth, classes): only the difference is ours, the layers stay ultralytics'. A recipe
names one by file name (``TrainConfig.model="yolo11-hand-slim.yaml"``); anything else
(``yolo11n.yaml``, ``yolo11n.pt``, a path) goes to ultralytics unchanged.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tasks.core.files import write_atomic

FOLDER = Path(__file__).resolve().parent


def shipped(model: str) -> Path | None:
    """The file here called ``model``, if there is one."""
    path = FOLDER / model
    return path if "/" not in model and path.suffix == ".yaml" and path.is_file() else None


def resolve(model: str, out_dir: Path | None = None) -> str:
    """What to hand ``ultralytics.YOLO`` for ``model``.

    Args:
        model: A file name here, or anything ultralytics reads.
        out_dir: Where the full yaml of a file here is written (default: a temp folder).

    Returns:
        The path of the full model yaml for a file here, else ``model`` unchanged.

    Raises:
        ValueError: When a file here lacks ``base`` or is not a mapping.
    """
    path = shipped(model)
    if path is None:
        return model
    target = (out_dir or Path(tempfile.gettempdir()) / "fingerspell-architectures") / (
        f"{path.stem}-{fingerprint(model)}.yaml"
    )
    if not target.is_file():  # the name holds the digest: an existing file is this one
        write_atomic(target, yaml.safe_dump(expand(path), sort_keys=False))
    return str(target)


def expand(path: Path) -> dict[str, Any]:
    """The base model's yaml with the keys ``path`` sets; the base's ``scales`` are dropped
    so that ``depth_multiple``/``width_multiple`` apply."""
    from ultralytics.utils import YAML
    from ultralytics.utils.checks import check_yaml

    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict) or not isinstance(spec.get("base"), str):
        raise ValueError(f"{path}: expected a mapping with 'base: <ultralytics model yaml>'")
    spec = dict(spec)
    full = dict(YAML.load(check_yaml(spec.pop("base"))))
    full.pop("scales", None)
    full.update(spec)
    return full


def fingerprint(model: str) -> str | None:
    """A digest of what a file here sets (changing it changes run keys, so the model
    retrains; its comments do not), else None."""
    path = shipped(model)
    if path is None:
        return None
    spec = json.dumps(yaml.safe_load(path.read_text()), sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:16]
