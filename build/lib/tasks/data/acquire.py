"""ACQUIRE: bring a dataset export in, normalize it, and publish it under its content id.

A published dataset lives at ``<datasets_dir>/raw/<id>`` with the layout
``{train,valid,test}/{images,labels}`` and a ``data.yaml`` whose ``path:`` is absolute. It is
written once (temp folder + rename) and never changed afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from tasks.core.files import publish, staging_dir
from tasks.core.records import SPLITS, DatasetRef
from tasks.data.remote import fetch
from tasks.data.sources import (
    AcquireError,
    DatasetSource,
    download_roboflow,
    extract_zip,
    find_export_root,
    is_url,
    parse_source,
)
from tasks.data.yolo_format import (
    YAML_KEYS,
    count_images,
    data_yaml_spec,
    read_data_yaml,
    read_names,
    write_data_yaml,
)

__all__ = [
    "AcquireError",
    "DatasetSource",
    "acquire",
    "content_id",
    "localize",
    "parse_source",
]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def _is_content(path: Path) -> bool:
    # Caches are rebuilt by ultralytics and hold absolute paths; READMEs are not data.
    name = path.name.lower()
    return not (name.endswith(".cache") or name.startswith("readme") or name == "data.yaml")


def _content_files(root: Path) -> Iterator[Path]:
    for split in SPLITS:
        folder = root / split
        if folder.is_dir():
            yield from (p for p in folder.rglob("*") if p.is_file() and _is_content(p))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_id(root: Path, names: Sequence[str] | None = None) -> str:
    """Hash a YOLO dataset folder's class names, images and labels into a short content id.

    The class names are part of the content: a label says ``3``, and only the names say which
    letter that is, so renaming or reordering them makes a different dataset.

    Args:
        root: Folder with ``train``/``valid``/``test`` sub-folders.
        names: Class names, index = class id; read from ``root/data.yaml`` (through
            :func:`~tasks.data.yolo_format.read_names`) when not given.

    Returns:
        16 hex characters of the sha256 over the class names in order, then the sorted
        (relative path, file sha256) pairs of every file under the split folders, ignoring
        ``*.cache``, ``data.yaml`` and READMEs.

    Raises:
        AcquireError: If ``names`` is not given and ``root/data.yaml`` has no valid names.
    """
    if names is None:
        names = read_names(root / "data.yaml")
    entries = sorted(
        (path.relative_to(root).as_posix(), _file_sha256(path)) for path in _content_files(root)
    )
    digest = hashlib.sha256()
    # JSON keeps the names unambiguous whatever characters they hold.
    digest.update(f"names\0{json.dumps(list(names))}\n".encode())
    for relative, file_hash in entries:
        digest.update(f"{relative}\0{file_hash}\n".encode())
    return digest.hexdigest()[:16]


def acquire(source: str, datasets_dir: Path, api_key: str | None = None) -> DatasetRef:
    """Fetch a dataset export and publish it, content-addressed, under ``datasets_dir/raw``.

    Acquiring the same content twice is a no-op that returns the same reference. Nothing is
    left under ``datasets_dir`` when it fails.

    Args:
        source: A folder, a ``.zip``, an fsspec URL of either (``gs://bucket/asl``) or
            ``roboflow:<workspace>/<project>/<version>``.
        datasets_dir: Root folder of datasets (created if missing).
        api_key: Roboflow API key, needed only for Roboflow sources; never logged.

    Returns:
        A reference to ``datasets_dir/raw/<id>``.

    Raises:
        ValueError: If the source string is not understood.
        AcquireError: If the source cannot be fetched or is not a YOLO export.
    """
    parsed = parse_source(source)
    datasets_dir = datasets_dir.expanduser().resolve()
    datasets_dir.mkdir(parents=True, exist_ok=True)
    # The temp folder sits next to its destination so the final rename is atomic.
    workdir = staging_dir(datasets_dir / "raw", prefix=".acquire-")
    try:
        export_root = _materialize(parsed, workdir, api_key)
        staged = workdir / "dataset"
        names = _normalize(export_root, staged, move=parsed.kind != "folder")
        dataset_id = content_id(staged, names)  # staged has no data.yaml yet
        final = datasets_dir / "raw" / dataset_id
        if final.exists():
            log.info("dataset %s from %s is already at %s", dataset_id, parsed, final)
        else:
            write_data_yaml(staged / "data.yaml", data_yaml_spec(final, SPLITS, names))
            publish(staged, final, complete="data.yaml")
            log.info("acquired %s from %s into %s", dataset_id, parsed, final)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return DatasetRef(
        id=dataset_id,
        uri=final.as_uri(),
        names=read_names(final / "data.yaml"),
        counts=count_images(final),
    )


def _materialize(source: DatasetSource, workdir: Path, api_key: str | None) -> Path:
    if source.kind == "roboflow":
        return download_roboflow(source, workdir / "download", api_key)
    if source.kind == "url":
        assert source.url is not None
        local = fetch(source.url, workdir / "download")
        if local.suffix.lower() == ".zip":
            return extract_zip(local, workdir / "unzipped")
        return find_export_root(local, f"folder {source.url}")
    assert source.path is not None
    if source.kind == "zip":
        return extract_zip(source.path, workdir / "unzipped")
    return find_export_root(source.path, f"folder {source.path}")


def localize(dataset: DatasetRef, datasets_dir: Path) -> DatasetRef:
    """Make a dataset readable on this machine: a remote one is acquired under ``datasets_dir``.

    A training job on Vertex AI gets a ``DatasetRef`` whose ``uri`` is ``gs://...``; YOLO reads
    local files, so the folder is copied (and published by content, once) first.

    Args:
        dataset: Any dataset reference.
        datasets_dir: Root folder of datasets on this machine.

    Returns:
        ``dataset`` itself when it is local, else the same record with a local ``uri``.
    """
    if not is_url(dataset.uri):
        return dataset
    local = acquire(dataset.uri, datasets_dir)
    return dataset.model_copy(update={"uri": local.uri})


def _split_folder(export_root: Path, entry: Any, split: str) -> Path | None:
    """Find a split's folder (the parent of its ``images``) from data.yaml or by convention."""
    candidates: list[Path] = []
    if isinstance(entry, str) and entry.strip():
        # Roboflow writes '../train/images' relative to a folder it never creates.
        parts = [part for part in PurePosixPath(entry.strip()).parts if part not in ("..", ".")]
        candidates.append(export_root.joinpath(*parts))
    candidates.append(export_root / split / "images")
    if split == "valid":
        candidates.append(export_root / "val" / "images")
    top = export_root.resolve()
    for images in candidates:
        if images.name != "images" or not images.is_dir():
            continue
        # The split folder must be a proper sub-folder: it is moved or copied whole.
        folder = images.parent.resolve()
        if folder != top and folder.is_relative_to(top):
            return images.parent
    return None


def _normalize(export_root: Path, target: Path, move: bool) -> tuple[str, ...]:
    """Lay a YOLO export out as ``target/{train,valid,test}/{images,labels}``.

    Returns:
        The class names from the export's data.yaml.
    """
    meta = read_data_yaml(export_root / "data.yaml")
    names = read_names(export_root / "data.yaml")
    target.mkdir(parents=True)
    used: set[Path] = set()
    for split in SPLITS:
        folder = _split_folder(export_root, meta.get(YAML_KEYS[split]), split)
        if folder is None or folder.resolve() in used:
            if split != "test":
                raise AcquireError(f"{export_root} has no {split}/images folder")
            log.warning("%s has no test split; publishing an empty one", export_root)
            for kind in ("images", "labels"):
                (target / split / kind).mkdir(parents=True)
            continue
        used.add(folder.resolve())
        destination = target / split
        if move:
            folder.rename(destination)
            for cache in destination.rglob("*.cache"):
                cache.unlink()
        else:
            shutil.copytree(folder, destination, ignore=shutil.ignore_patterns("*.cache"))
        (destination / "labels").mkdir(exist_ok=True)
    return names
