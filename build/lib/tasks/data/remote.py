"""Dataset sources behind an fsspec URL (``gs://``, ``s3://``, ``memory://``, ...).

A Vertex AI job and a laptop share no disk, so the GPU run finds its dataset by a URL both can
reach. The folder or ``.zip`` it names is copied into a local working folder here; from then on
:mod:`tasks.data.acquire` treats it exactly like a local folder or zip (same content id, same
atomic publish). Which filesystem serves a scheme is fsspec's business: ``gs://`` needs the
``gcsfs`` package, ``s3://`` needs ``s3fs``; a missing one is named in the error.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import fsspec
from fsspec import AbstractFileSystem

from tasks.core.redact import redact
from tasks.data.sources import AcquireError

log = logging.getLogger(__name__)

# The package that implements each common scheme, to name it when it is missing.
PACKAGES: dict[str, str] = {"gs": "gcsfs", "gcs": "gcsfs", "s3": "s3fs", "az": "adlfs"}
# Fields that change when an object's content changes, in order of preference per backend.
_VERSION_FIELDS = ("md5Hash", "crc32c", "ETag", "etag", "mtime", "updated", "created")


def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem serving ``url`` and the path inside it.

    Raises:
        AcquireError: If the scheme is unknown or its package is not installed.
    """
    scheme = url.split("://", 1)[0].lower()
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        package = PACKAGES.get(scheme, f"the fsspec implementation of {scheme}://")
        raise AcquireError(
            f"reading dataset source {redact(url)} needs the {package} package "
            f"(pip install {package}): {exc}"
        ) from exc
    except ValueError as exc:
        raise AcquireError(f"dataset source {redact(url)}: {redact(str(exc))}") from None


def _version(info: dict[str, Any]) -> str:
    return next((str(info[key]) for key in _VERSION_FIELDS if info.get(key) is not None), "")


def fingerprint(url: str) -> str:
    """A cheap fingerprint of a remote folder or file: names, sizes and versions, not contents.

    Args:
        url: The source URL.

    Returns:
        A sha256 hex digest that changes when a file is added, removed or rewritten.
    """
    fs, root = filesystem(url)
    root = root.rstrip("/")
    entries = fs.find(root, detail=True) if fs.isdir(root) else {root: fs.info(root)}
    digest = hashlib.sha256(url.encode())
    for name in sorted(entries):
        info = entries[name]
        digest.update(f"{name}|{info.get('size')}|{_version(info)}\n".encode())
    return digest.hexdigest()


def inside(target: Path, root: str, entry: str, url: str) -> Path:
    """Where a listed remote ``entry`` under ``root`` lands in ``target``, never outside it.

    A listing is the remote side's word: an HTTP index or an object key may hold ``..``,
    an absolute part or a backslash, and copying it as named would write anywhere on this
    machine. Every entry must name a plain path below ``root``.

    Raises:
        AcquireError: Naming the entry, when it would land outside ``target``.
    """
    try:
        parts = PurePosixPath(entry).relative_to(root).parts
    except ValueError:
        parts = ()
    unsafe = not parts or any(p in ("", ".", "..") or "\\" in p for p in parts)
    local = target.joinpath(*parts)
    if unsafe or not local.resolve().is_relative_to(target.resolve()):
        raise AcquireError(
            f"dataset source {redact(url)} lists {redact(entry)!r}, which is not a plain path "
            f"inside {redact(root)}: refusing to copy anything from it"
        )
    return local


def fetch(url: str, target: Path) -> Path:
    """Copy the folder or ``.zip`` that ``url`` names into ``target``.

    Args:
        url: An fsspec URL of a YOLO export folder or of a zipped export.
        target: A local folder that does not exist yet.

    Returns:
        The local copy: ``target`` for a folder, ``target/<name>.zip`` for a zip.

    Raises:
        AcquireError: If nothing is at ``url`` or the filesystem cannot be reached.
    """
    fs, root = filesystem(url)
    root = root.rstrip("/")
    target.mkdir(parents=True)
    # A signed URL ends in its query (…/asl.zip?X-Goog-Signature=…): the name is the path's.
    name = PurePosixPath(urlsplit(root).path if "://" in root else root).name
    try:
        if PurePosixPath(name).suffix.lower() == ".zip":
            local = target / name
            fs.get_file(root, str(local))
            return local
        files = fs.find(root) if fs.isdir(root) else []
        if not files:
            raise AcquireError(
                f"dataset source {redact(url)} is neither a .zip nor a non-empty folder"
            )
        locals_ = [inside(target, root, f, url) for f in files]
        for local in locals_:
            local.parent.mkdir(parents=True, exist_ok=True)
        # One call with lists: async filesystems (gcsfs) copy the files concurrently.
        fs.get(files, [str(local) for local in locals_])
    except (OSError, ValueError) as exc:
        raise AcquireError(
            f"copying dataset source {redact(url)} failed: {redact(str(exc))}"
        ) from None
    log.info("fetched %d files from %s", len(files), redact(url))
    return target
