"""Pretrained weights as an input of every recipe: find them, fetch them, or say why not.

A recipe names the weights a stage starts from (``TrainConfig.weights``,
``ClassifierConfig.weights``): an ultralytics release name (``yolov5nu.pt``), a local path or
an http(s) URL. :func:`resolve_weights` looks in the weights folder first
(``FINGERSPELL_WEIGHTS_DIR``), so an offline machine with the files beside it trains what an
online one does; then it reads a local path or downloads. With nothing to be had it returns
"scratch" and logs one line that says why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tasks.core.files import build_file

log = logging.getLogger(__name__)

# Offline stand-ins: a file in the weights folder that holds the same architecture as an
# ultralytics release name. The COCO YOLOv5n backbone and neck in the YOLOv5u layout
# (../shared/weights/SOURCE.md) is ``yolov5nu.pt`` less its trained detection head.
STAND_INS: dict[str, tuple[str, ...]] = {"yolov5nu.pt": ("yolov5n-coco-backbone.pt",)}

# The folder, inside a runs folder, where downloaded weights are kept.
PRETRAINED_CACHE = "pretrained"

Origin = Literal["weights_dir", "local", "download", "scratch"]


class StartingWeights(BaseModel):
    """Which weights a training started from (logged to MLflow, kept in the model)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requested: str | None
    path: Path | None = None
    sha256: str | None = None
    origin: Origin = "scratch"
    reason: str = ""

    @property
    def pretrained(self) -> bool:
        """True when there are weights to load."""
        return self.path is not None

    def describe(self) -> str:
        """One line for logs and the app: ``name (sha256 6fa26cd9af67, weights_dir)``."""
        if self.path is None:
            return "scratch" + (f" ({self.reason})" if self.reason else "")
        return f"{self.path.name} (sha256 {(self.sha256 or '')[:12]}, {self.origin})"

    def record(self) -> dict[str, str]:
        """The flat form kept in a model's metadata and MLflow params."""
        if self.path is None:
            return {"name": "scratch", "requested": self.requested or "", "reason": self.reason}
        return {
            "name": self.path.name,
            "requested": self.requested or "",
            "sha256": self.sha256 or "",
            "origin": self.origin,
        }


def sha256_of(path: Path) -> str:
    """The file's sha256 (hex)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(source: str, target: Path) -> None:
    """Fetch ``source`` (a URL or an ultralytics release name) into ``target`` atomically."""
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, attempt_download_asset

    with build_file(target) as fetched:
        if source.lower().startswith(("http://", "https://")):
            import urllib.request

            with urllib.request.urlopen(source, timeout=60) as response:
                fetched.write_bytes(response.read())
        elif target.name in GITHUB_ASSETS_NAMES:
            attempt_download_asset(str(fetched), retry=1)
        else:
            raise FileNotFoundError(f"{source!r} is no file, URL or ultralytics release name")
        if not fetched.is_file() or fetched.stat().st_size == 0:
            raise OSError(f"nothing was downloaded for {source!r}")


def _safe_name(source: str) -> str:
    """A file name for a URL or release name (no query string, no credentials)."""
    return Path(urllib.parse.urlsplit(source).path).name or "weights.pt"


def resolve_weights(
    requested: str | None,
    weights_dir: Path | None,
    cache_dir: Path,
    download: Callable[[str, Path], Any] | None = None,
) -> StartingWeights:
    """Find the weights a recipe asks for, or explain why training starts from scratch.

    Args:
        requested: An ultralytics release name, a local path, an http(s) URL, or None.
        weights_dir: Searched first for the name (and its offline stand-ins), if set.
        cache_dir: Where downloads are kept (a second call finds them there).
        download: Fetches a URL or release name into a path (default: http(s) or
            ultralytics' release assets).

    Returns:
        The weights file with its sha256 and origin, or "scratch" with the reason.
    """
    if not requested:
        return StartingWeights(requested=None, reason="the recipe names no pretrained weights")
    name = _safe_name(requested)
    if weights_dir is not None:
        for candidate in (name, *STAND_INS.get(name, ())):
            path = weights_dir / candidate
            if path.is_file():
                return _found(requested, path, "weights_dir")
    local = Path(requested).expanduser()
    if "://" not in requested and local.is_file():
        return _found(requested, local.resolve(), "local")
    cached = cache_dir / name
    if cached.is_file():
        return _found(requested, cached, "download")
    if "://" not in requested and (os.sep in requested or not requested.endswith(".pt")):
        reason = f"{requested} is not a file"
    else:
        try:
            (download or _download)(requested, cached)
            return _found(requested, cached, "download")
        except Exception as error:  # no network, unknown name, HTTP error: train anyway
            reason = f"could not download {name}: {type(error).__name__}: {error}"
    where = f"; not in {weights_dir}" if weights_dir is not None else ""
    scratch = StartingWeights(requested=requested, reason=reason + where)
    log.warning(
        "pretrained weights %s unavailable, training from scratch: %s", name, scratch.reason
    )
    return scratch


def _found(requested: str, path: Path, origin: Origin) -> StartingWeights:
    return StartingWeights(requested=requested, path=path, sha256=sha256_of(path), origin=origin)


class Transferred:
    """How many tensors came from the pretrained weights: (transferred, total).

    Counted first against the model as built, then again against the model the trainer
    trains (with the dataset's classes, so a detection head of another class count shows).
    """

    def __init__(self, source: dict[str, Any], target: dict[str, Any]) -> None:
        self.source = source
        self.count = self._match(target)

    def _match(self, target: dict[str, Any]) -> tuple[int, int]:
        same = sum(
            1 for k, v in target.items() if k in self.source and self.source[k].shape == v.shape
        )
        return same, len(target)

    def on_pretrain_routine_end(self, trainer: Any) -> None:
        """Ultralytics callback: recount on the model about to be trained."""
        model = getattr(trainer.model, "module", trainer.model)
        self.count = self._match(model.state_dict())
        log.info("the trainer starts with %d/%d tensors from pretrained weights", *self.count)


def transfer(model: Any, weights: StartingWeights) -> Transferred | None:
    """Load ``weights`` into an ultralytics ``YOLO`` model by name and shape.

    A layer that does not fit (a head for another class count) keeps its initialisation.

    Returns:
        The count of what transferred, kept up to date once training starts; None when
        ``weights`` is "scratch".
    """
    if weights.path is None:
        return None
    import torch

    checkpoint = torch.load(weights.path, map_location="cpu", weights_only=False)
    source = (checkpoint.get("ema") or checkpoint["model"]).float().state_dict()
    counted = Transferred(source, model.model.state_dict())
    model.load(checkpoint)  # ultralytics copies what matches by name and shape
    model.add_callback("on_pretrain_routine_end", counted.on_pretrain_routine_end)
    log.info("started from %s: %d/%d tensors", weights.describe(), *counted.count)
    return counted
