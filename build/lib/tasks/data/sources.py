"""Where a dataset comes from: parse a source string and fetch it into a working folder.

Kept apart from :mod:`tasks.data.acquire` (which normalizes and publishes) so that the network and
archive handling stay small and testable. No Prefect here.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

import fsspec

from tasks.core.records import Record

log = logging.getLogger(__name__)

ROBOFLOW_PREFIX = "roboflow:"
ROBOFLOW_FORMAT = "yolov8"
KEY_HINT = "set ROBOFLOW_API_KEY or FINGERSPELL_ROBOFLOW_API_KEY"

# Loggers that write request URLs, and the Roboflow client puts the key in the query string.
_URL_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.response", "requests")
_JUNK_ENTRIES = {"__MACOSX", ".DS_Store"}
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")
# The most an archive may unpack to, by the sizes its entries declare; a zip bomb of a few
# kilobytes could otherwise fill the disk. zipfile never writes more than an entry declares.
MAX_UNCOMPRESSED_BYTES = 16 * 1024**3


class AcquireError(RuntimeError):
    """A dataset source could not be fetched or is not a YOLO export."""


class DatasetSource(Record):
    """A parsed dataset source: a local folder or zip, a URL of either, or a Roboflow version."""

    kind: Literal["folder", "zip", "url", "roboflow"]
    path: Path | None = None
    url: str | None = None
    workspace: str | None = None
    project: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.kind == "roboflow":
            return f"{ROBOFLOW_PREFIX}{self.workspace}/{self.project}/{self.version}"
        return self.url if self.kind == "url" else str(self.path)


def parse_source(source: str) -> DatasetSource:
    """Tell what kind of dataset source a string names.

    Args:
        source: ``roboflow:<workspace>/<project>/<version>``, a path (or ``file://`` URI) to a
            ``.zip`` export, a path to an existing export folder, or an fsspec URL
            (``gs://bucket/asl``, ``gs://bucket/asl.zip``) of either, fetched by
            :mod:`tasks.data.remote`.

    Returns:
        The parsed source.

    Raises:
        ValueError: If the string is none of the above; the message names the source.
    """
    text = source.strip()
    if text.startswith(ROBOFLOW_PREFIX):
        parts = text.removeprefix(ROBOFLOW_PREFIX).strip("/").split("/")
        if len(parts) != 3 or not all(parts) or not parts[2].isdigit() or int(parts[2]) < 1:
            raise ValueError(
                f"dataset source {source!r} is not a Roboflow dataset: expected "
                "roboflow:<workspace>/<project>/<version> with a version number >= 1"
            )
        return DatasetSource(
            kind="roboflow", workspace=parts[0], project=parts[1], version=int(parts[2])
        )
    if not text:
        raise ValueError("dataset source is empty: give a folder, a .zip or roboflow:<ws>/<p>/<v>")
    if is_url(text):
        scheme = text.split("://", 1)[0].lower()
        if scheme not in fsspec.available_protocols():
            raise ValueError(f"dataset source {source!r}: no filesystem is known for {scheme}://")
        return DatasetSource(kind="url", url=text)
    path = Path(unquote(urlparse(text).path)) if text.startswith("file://") else Path(text)
    path = path.expanduser()
    if path.suffix.lower() == ".zip":
        return DatasetSource(kind="zip", path=path.resolve())
    if path.is_dir():
        return DatasetSource(kind="folder", path=path.resolve())
    raise ValueError(
        f"dataset source {source!r} is neither an existing folder, a .zip file, a URL "
        "(gs://...), nor roboflow:<workspace>/<project>/<version>"
    )


def is_url(text: str) -> bool:
    """Whether ``text`` is a ``scheme://`` URL served through fsspec (``file://`` is local)."""
    return bool(_URL.match(text)) and not text.lower().startswith("file://")


def find_export_root(folder: Path, what: str) -> Path:
    """Find the folder holding ``data.yaml``: ``folder`` itself or its single top-level folder.

    Args:
        folder: An export folder or the folder an archive was extracted into.
        what: How to name the source in an error message.

    Returns:
        The export root.

    Raises:
        AcquireError: If no ``data.yaml`` is at either place.
    """
    if (folder / "data.yaml").is_file():
        return folder
    entries = [p for p in folder.iterdir() if p.name not in _JUNK_ENTRIES]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "data.yaml").is_file():
        return entries[0]
    raise AcquireError(
        f"{what} has no data.yaml (looked at its root and inside a single top-level folder); "
        "is it a YOLO export?"
    )


def extract_zip(archive: Path, target: Path) -> Path:
    """Extract a zipped YOLO export into ``target`` and return the export root inside it.

    Args:
        archive: The ``.zip`` file.
        target: A folder that does not exist yet.

    Returns:
        The folder holding ``data.yaml``.

    Raises:
        FileNotFoundError: If the archive does not exist.
        AcquireError: If it is not a zip, holds no YOLO export, has an entry whose path leaves
            ``target`` (absolute or with ``..``), or declares more than
            :data:`MAX_UNCOMPRESSED_BYTES` in all; the last two before anything is written.
    """
    if not archive.is_file():
        raise FileNotFoundError(f"dataset zip {archive} does not exist")
    try:
        with zipfile.ZipFile(archive) as bundle:
            _check_members(archive, bundle.infolist())
            bundle.extractall(target)
    except zipfile.BadZipFile as exc:
        raise AcquireError(f"{archive} is not a valid zip file: {exc}") from exc
    return find_export_root(target, f"zip {archive}")


def _check_members(archive: Path, members: list[zipfile.ZipInfo]) -> None:
    """Refuse an archive with a path-escaping entry or too large a declared size.

    ``extractall`` would silently rewrite ``../x`` to ``x``; an export holding such a name is
    broken or hostile, so it is refused rather than half-trusted.

    Raises:
        AcquireError: Naming the archive and the first bad entry, or both sizes.
    """
    for member in members:
        name = member.filename.replace("\\", "/")
        if name.startswith("/") or re.match(r"[a-zA-Z]:", name) or ".." in name.split("/"):
            raise AcquireError(
                f"{archive} has an entry outside the archive folder: {member.filename!r} "
                "(absolute path or '..'); refusing to extract it"
            )
    total = sum(member.file_size for member in members)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise AcquireError(
            f"{archive} unpacks to {total:,} bytes, over the limit of "
            f"{MAX_UNCOMPRESSED_BYTES:,} bytes (MAX_UNCOMPRESSED_BYTES); refusing to extract it"
        )


def download_roboflow(source: DatasetSource, target: Path, api_key: str | None) -> Path:
    """Download a Roboflow dataset version in YOLOv8 format into ``target``.

    The key travels only to the Roboflow client; errors and logs have it masked.

    Args:
        source: A ``roboflow`` source.
        target: A folder that does not exist yet (the client skips existing folders).
        api_key: The Roboflow API key.

    Returns:
        The folder holding the export's ``data.yaml``.

    Raises:
        AcquireError: If the key is missing or the download fails.
    """
    if not api_key:
        raise AcquireError(f"{source} needs a Roboflow API key: {KEY_HINT}")
    # Imported here: the client resolves its API address when imported and is only
    # needed for this kind of source.
    from roboflow import Roboflow

    log.info("downloading %s from Roboflow (format %s)", source, ROBOFLOW_FORMAT)
    failure: str | None = None
    with mask_secret_in_logs(api_key):
        try:
            workspace = Roboflow(api_key=api_key).workspace(source.workspace)
            version = workspace.project(source.project).version(source.version)
            if version is None:
                failure = f"version {source.version} not found"
            else:
                version.download(ROBOFLOW_FORMAT, location=str(target), overwrite=True)
        except Exception as exc:
            failure = f"{type(exc).__name__}: {mask(str(exc), api_key)}"
    if failure is not None:
        # Raised outside the except block so no chained exception can carry the key along.
        raise AcquireError(f"downloading {source} from Roboflow failed: {failure}")
    return find_export_root(target, f"Roboflow export of {source}")


def mask(text: str, secret: str) -> str:
    """Replace every occurrence of ``secret`` in ``text`` with ``***``."""
    return text.replace(secret, "***") if secret else text


class _MaskFilter(logging.Filter):
    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self._secret in message:
            record.msg, record.args = mask(message, self._secret), None
        return True


@contextmanager
def mask_secret_in_logs(secret: str) -> Iterator[None]:
    """Mask ``secret`` in records of the HTTP libraries' loggers while the block runs."""
    masker = _MaskFilter(secret)
    loggers = [logging.getLogger(name) for name in _URL_LOGGERS]
    for logger in loggers:
        logger.addFilter(masker)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(masker)
