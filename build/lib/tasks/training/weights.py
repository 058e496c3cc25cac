"""Pretrained weights as an input of every recipe: find them, fetch them, or say why not.

A recipe names the weights a stage starts from (``TrainConfig.weights``,
``ClassifierConfig.weights``): an ultralytics release name (``yolov5nu.pt``), a local path or
an https URL. :func:`resolve_weights` looks in the weights folder first
(``FINGERSPELL_WEIGHTS_DIR``), so an offline machine with the files beside it trains what an
online one does; then it reads a local path or downloads. With nothing to be had it returns
"scratch" and logs one line that says why.

A ``.pt`` file is a pickle, and unpickling runs code. Every checkpoint the project loads goes
through :func:`load_checkpoint`: ultralytics' restricted loader (``torch.load(weights_only=True)``
with its allow-list of model classes), after the file's sha256 is checked wherever one was
recorded. A plain ``http://`` URL is refused: anyone on the path could swap the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import urllib.parse
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tasks.core.files import build_file, sha256_of
from tasks.core.redact import redact

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
        """The flat form kept in a model's metadata and MLflow params (URL secrets redacted:
        ``metadata.json`` travels with the model, where no logging filter reaches)."""
        requested = redact(self.requested or "")
        if self.path is None:
            return {"name": "scratch", "requested": requested, "reason": redact(self.reason)}
        return {
            "name": self.path.name,
            "requested": requested,
            "sha256": self.sha256 or "",
            "origin": self.origin,
        }


def _download(source: str, target: Path) -> None:
    """Fetch ``source`` (a URL or an ultralytics release name) into ``target`` atomically."""
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, attempt_download_asset

    with build_file(target) as fetched:
        if source.lower().startswith("https://"):
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


def _cache_path(source: str, cache_dir: Path) -> Path:
    """Where a download of ``source`` is kept: one entry per host and path, not per basename.

    Two URLs ending in the same ``best.pt`` are different files. The query string is left out
    of the key (a signed URL's signature changes, the object does not), and so are credentials.
    """
    parts = urllib.parse.urlsplit(source)
    if not parts.scheme:  # an ultralytics release name
        return cache_dir / _safe_name(source)
    where = f"{parts.scheme}://{parts.hostname or ''}:{parts.port or ''}{parts.path}"
    return cache_dir / hashlib.sha256(where.encode()).hexdigest()[:16] / _safe_name(source)


class CheckpointRefused(ValueError):
    """A ``.pt`` file that is not loaded: its sha256 differs from the recorded one, or it holds
    more than model weights (objects outside ultralytics' allow-list); the message names it."""


def enable_safe_load() -> None:
    """Make every ultralytics checkpoint load of this process a restricted one.

    Ultralytics reads ``ULTRALYTICS_SAFE_LOAD`` once, at import; where it is imported already,
    its module flags are set too. Its own loads (``YOLO(path)``, a trainer resuming) then
    unpickle only model classes, as :func:`load_checkpoint` does.
    """
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
    for module in ("ultralytics.utils", "ultralytics.nn.tasks"):
        if module in sys.modules and hasattr(sys.modules[module], "SAFE_LOAD"):
            sys.modules[module].SAFE_LOAD = True


def verify_sha256(path: Path, expected: str | None) -> None:
    """Check ``path`` against a recorded sha256 (nothing recorded: nothing to check).

    Raises:
        CheckpointRefused: The file's digest differs, naming the file and both digests.
    """
    if not expected:
        return
    actual = sha256_of(path)
    if actual != expected:
        raise CheckpointRefused(
            f"{path}: sha256 {actual[:12]}… differs from the recorded {expected[:12]}…; "
            "the file changed since it was written, refusing to load it"
        )


def load_checkpoint(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """Load an ultralytics checkpoint without running code from it.

    Args:
        path: The ``.pt`` file.
        sha256: Its recorded digest, checked first when given.

    Returns:
        The checkpoint dict (``model``/``ema``, ``train_args``, ``epoch``…).

    Raises:
        FileNotFoundError: No such file (nothing is downloaded here).
        CheckpointRefused: A digest mismatch, or a pickle that needs more than model classes.
        OSError: Damaged or unreadable (not a checkpoint archive, or truncated).
    """
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    verify_sha256(path, sha256)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; a cut-off one has no directory
        raise OSError(f"{path}: not a complete checkpoint archive (truncated or not a .pt)")
    enable_safe_load()
    from ultralytics.nn.tasks import torch_safe_load

    try:
        checkpoint, _ = torch_safe_load(str(path), safe_only=True)
    except TypeError as error:  # ultralytics turns what it cannot or will not load into this
        text = str(error).strip()
        if "not a loadable checkpoint" in text:  # damaged: empty, truncated, not a pickle
            cause = type(error.__cause__).__name__
            raise OSError(f"{path}: damaged checkpoint ({cause})") from None
        first = text.splitlines()[0] if text else ""
        raise CheckpointRefused(f"{path}: refused by the restricted loader: {first}") from None
    return checkpoint


def resolve_weights(
    requested: str | None,
    weights_dir: Path | None,
    cache_dir: Path,
    download: Callable[[str, Path], Any] | None = None,
) -> StartingWeights:
    """Find the weights a recipe asks for, or explain why training starts from scratch.

    Args:
        requested: An ultralytics release name, a local path, an https URL, or None.
        weights_dir: Searched first for the name (and its offline stand-ins), if set.
        cache_dir: Where downloads are kept (a second call finds them there).
        download: Fetches a URL or release name into a path (default: http(s) or
            ultralytics' release assets).

    Returns:
        The weights file with its sha256 and origin, or "scratch" with the reason.

    Raises:
        ValueError: A plain ``http://`` URL (https only).
    """
    if not requested:
        return StartingWeights(requested=None, reason="the recipe names no pretrained weights")
    if requested.lower().startswith("http://"):
        raise ValueError(
            f"weights URL {redact(requested)} is plain http: anyone on the way could replace "
            "the file, and a .pt file runs code when loaded; use https"
        )
    name = _safe_name(requested)
    if weights_dir is not None:
        for candidate in (name, *STAND_INS.get(name, ())):
            path = weights_dir / candidate
            if path.is_file():
                return _found(requested, path, "weights_dir")
    local = Path(requested).expanduser()
    if "://" not in requested and local.is_file():
        return _found(requested, local.resolve(), "local")
    cached = _cache_path(requested, cache_dir)
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
    checkpoint = load_checkpoint(weights.path, weights.sha256)
    source = (checkpoint.get("ema") or checkpoint["model"]).float().state_dict()
    counted = Transferred(source, model.model.state_dict())
    model.load(checkpoint)  # ultralytics copies what matches by name and shape
    model.add_callback("on_pretrain_routine_end", counted.on_pretrain_routine_end)
    log.info("started from %s: %d/%d tensors", weights.describe(), *counted.count)
    return counted
