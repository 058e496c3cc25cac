"""Dataset sources behind fsspec URLs: fetched like a local folder or zip, offline.

fsspec's ``memory://`` filesystem stands in for ``gs://``: the code path (url_to_fs, find, get)
is the one gcsfs serves on Vertex AI; only the storage differs.
"""

from __future__ import annotations

import shutil
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from uuid import uuid4

import fsspec
import pytest

from flows.data import _source_fingerprint
from tasks.core.records import DatasetRef
from tasks.data.acquire import AcquireError, acquire, content_id, localize, parse_source
from tasks.data.remote import fetch, filesystem, fingerprint


@pytest.fixture
def memory_root() -> Iterator[str]:
    """A fresh prefix in fsspec's process-wide memory filesystem, removed afterwards."""
    root = f"memory://fingerspell-{uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root.removeprefix("memory://")):
        fs.rm(root.removeprefix("memory://"), recursive=True)


def _upload(folder: Path, url: str) -> None:
    fs, root = filesystem(url)
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        fs.pipe_file(f"{root}/{file.relative_to(folder).as_posix()}", file.read_bytes())


def _zip(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            bundle.write(file, prefix + file.relative_to(folder).as_posix())
    return archive


def test_parse_source_urls() -> None:
    assert parse_source("gs://bucket/asl").kind == "url"
    parsed = parse_source("memory://bucket/asl.zip")
    assert (parsed.kind, parsed.url, str(parsed)) == ("url", "memory://bucket/asl.zip", parsed.url)
    assert parse_source("file:///tmp").kind == "folder", "file:// stays a local path"
    with pytest.raises(ValueError, match="no filesystem is known for nosuch://"):
        parse_source("nosuch://bucket/asl")


def test_acquire_remote_folder_matches_local(
    subset_dataset: Path, tmp_path: Path, memory_root: str
) -> None:
    url = f"{memory_root}/exports/asl-letters/"
    _upload(subset_dataset, url)
    local = acquire(str(subset_dataset), tmp_path / "local")
    remote = acquire(url, tmp_path / "remote")
    assert remote.id == local.id == content_id(subset_dataset)
    assert remote.counts == local.counts and remote.names == local.names
    assert sorted(p.name for p in (tmp_path / "remote").iterdir()) == ["raw"], "temp dir left"
    again = acquire(url, tmp_path / "remote")
    assert again == remote, "a second acquire publishes nothing new"


@pytest.mark.parametrize("prefix", ["", "American-Sign-Language-Letters-1/"])
def test_acquire_remote_zip(
    subset_dataset: Path, tmp_path: Path, memory_root: str, prefix: str
) -> None:
    archive = _zip(subset_dataset, tmp_path / "asl.zip", prefix)
    url = f"{memory_root}/asl.zip"
    fs, path = filesystem(url)
    fs.pipe_file(path, archive.read_bytes())
    ref = acquire(url, tmp_path / "datasets")
    assert ref.id == content_id(subset_dataset)
    assert (ref.local_path / "data.yaml").is_file()


def test_fingerprint_changes_with_content(subset_dataset: Path, memory_root: str) -> None:
    url = f"{memory_root}/asl"
    _upload(subset_dataset, url)
    first = fingerprint(url)
    assert _source_fingerprint(url) == first, "the data flow's cache key uses it"
    fs, root = filesystem(url)
    label = sorted(fs.find(f"{root}/valid/labels"))[0]
    fs.pipe_file(label, fs.cat_file(label) + b"\n")
    assert fingerprint(url) != first


def test_localize_acquires_remote_and_keeps_the_record(
    subset_dataset: Path, tmp_path: Path, memory_root: str
) -> None:
    url = f"{memory_root}/published/abc"
    _upload(subset_dataset, url)
    remote = DatasetRef(id="augmented-abc", uri=url, counts={"train": 52}, parent_id="p")
    local = localize(remote, tmp_path / "datasets")
    assert local.uri.startswith("file://") and (local.local_path / "data.yaml").is_file()
    assert local.model_dump(exclude={"uri"}) == remote.model_dump(exclude={"uri"})
    on_disk = DatasetRef(id="x", uri=subset_dataset.as_uri())
    assert localize(on_disk, tmp_path / "other") is on_disk
    assert not (tmp_path / "other").exists(), "a local dataset is not copied"


@pytest.mark.parametrize("name", ["missing", "empty/"])
def test_missing_remote_source_fails_and_leaves_nothing(
    tmp_path: Path, memory_root: str, name: str
) -> None:
    fs, root = filesystem(memory_root)
    fs.mkdir(f"{root}/empty")
    with pytest.raises(AcquireError, match=r"neither a \.zip nor a non-empty folder"):
        acquire(f"{memory_root}/{name}", tmp_path / "datasets")
    with pytest.raises(AcquireError, match="copying dataset source"):
        fetch(f"{memory_root}/missing.zip", tmp_path / "zip")
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == []


def test_gs_without_gcsfs_names_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Hide gcsfs (installed or not) so fsspec's import of it fails as on a bare install.
    for module in [m for m in sys.modules if m.split(".")[0] == "gcsfs"] + ["gcsfs"]:
        monkeypatch.setitem(sys.modules, module, None)
    # fsspec caches imported implementations; an empty registry makes it import again.
    monkeypatch.setattr(sys.modules["fsspec.registry"], "registry", MappingProxyType({}))
    with pytest.raises(AcquireError, match=r"needs the gcsfs package \(pip install gcsfs\)"):
        acquire("gs://some-bucket/asl.zip", tmp_path / "datasets")
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == []


def test_copy_of_remote_zip_is_byte_identical(subset_dataset: Path, tmp_path: Path,
                                              memory_root: str) -> None:  # fmt: skip
    archive = _zip(subset_dataset, tmp_path / "asl.zip")
    fs, path = filesystem(f"{memory_root}/x/asl.zip")
    fs.pipe_file(path, archive.read_bytes())
    local = fetch(f"{memory_root}/x/asl.zip", tmp_path / "fetched")
    assert local == tmp_path / "fetched" / "asl.zip"
    assert local.read_bytes() == archive.read_bytes()
    shutil.rmtree(tmp_path / "fetched")
