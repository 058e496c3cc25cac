"""Reliability: bad dataset sources through ACQUIRE (archives, data.yaml, Roboflow, network).

Every failure must be a one-line :class:`AcquireError` naming the source and the problem, and
must leave nothing under the datasets folder: no partial dataset and no ``.acquire-*`` temp
folder (acquire builds in a temp folder and renames only when complete).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from fakes.roboflow_api import FakeRoboflow

from tasks.data import sources
from tasks.data.acquire import AcquireError, acquire, content_id
from tasks.data.sources import extract_zip

KEY = "rf-Wrong-Key-s3cr3t-9876zyxw"


def _export_zip(dataset: Path, archive: Path, extra: dict[str, bytes] | None = None) -> Path:
    """Zip a dataset folder as an export, plus ``extra`` entries written under their raw names."""
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(dataset.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(dataset).as_posix())
        for name, data in (extra or {}).items():
            bundle.writestr(zipfile.ZipInfo(name), data)
    return archive


def _assert_one_line_and_nothing_left(error: AcquireError, datasets_dir: Path) -> str:
    message = str(error)
    assert "\n" not in message
    assert not datasets_dir.exists() or os.listdir(datasets_dir) == []
    return message


def test_zip_slip_entry_is_refused_and_nothing_is_written(dataset: Path, tmp_path: Path) -> None:
    datasets_dir = tmp_path / "home" / "datasets"
    # From <datasets_dir>/.acquire-*/unzipped, three levels up is tmp_path/home.
    archive = _export_zip(dataset, tmp_path / "slip.zip", {"../../../escaped.txt": b"owned"})

    with pytest.raises(AcquireError) as raised:
        acquire(str(archive), datasets_dir)
    message = _assert_one_line_and_nothing_left(raised.value, datasets_dir)
    assert str(archive) in message and "'../../../escaped.txt'" in message
    assert "outside the archive folder" in message
    assert not list(tmp_path.rglob("escaped.txt"))


def test_zip_with_absolute_entry_is_refused_before_extracting(
    dataset: Path, tmp_path: Path
) -> None:
    target = tmp_path / "unzipped"
    absolute = (tmp_path / "absolute.txt").as_posix()
    archive = _export_zip(dataset, tmp_path / "abs.zip", {absolute: b"owned"})

    with pytest.raises(AcquireError) as raised:
        extract_zip(archive, target)
    message = str(raised.value)
    assert str(archive) in message and repr(absolute) in message
    assert "(absolute path or '..')" in message and "\n" not in message
    assert not target.exists() and not (tmp_path / "absolute.txt").exists()


def test_oversized_archive_is_refused_before_extracting(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sources.MAX_UNCOMPRESSED_BYTES >= 1024**3  # a real export (~1 GB) still fits
    archive = _export_zip(dataset, tmp_path / "big.zip")
    with zipfile.ZipFile(archive) as bundle:
        declared = sum(member.file_size for member in bundle.infolist())
    monkeypatch.setattr(sources, "MAX_UNCOMPRESSED_BYTES", declared - 1)
    datasets_dir = tmp_path / "datasets"

    with pytest.raises(AcquireError) as raised:
        acquire(str(archive), datasets_dir)
    message = _assert_one_line_and_nothing_left(raised.value, datasets_dir)
    assert str(archive) in message
    assert f"unpacks to {declared:,} bytes, over the limit of {declared - 1:,} bytes" in message

    monkeypatch.setattr(sources, "MAX_UNCOMPRESSED_BYTES", declared)  # at the limit: accepted
    assert acquire(str(archive), datasets_dir).counts == {"train": 2, "valid": 1, "test": 1}


def test_data_yaml_nc_disagreeing_with_names_is_refused(dataset: Path, tmp_path: Path) -> None:
    meta = yaml.safe_load((dataset / "data.yaml").read_text())
    meta["nc"] = 25
    (dataset / "data.yaml").write_text(yaml.safe_dump(meta))
    datasets_dir = tmp_path / "datasets"

    with pytest.raises(AcquireError) as raised:
        acquire(str(dataset), datasets_dir)
    message = _assert_one_line_and_nothing_left(raised.value, datasets_dir)
    assert message == f"{dataset / 'data.yaml'}: nc=25 but 26 names are listed"


def test_renamed_class_names_change_the_content_id(dataset: Path, tmp_path: Path) -> None:
    datasets_dir = tmp_path / "datasets"
    original = acquire(str(dataset), datasets_dir)
    assert original.id == content_id(dataset)

    renamed = Path(shutil.copytree(dataset, tmp_path / "renamed"))
    meta = yaml.safe_load((renamed / "data.yaml").read_text())
    meta["names"][0] = "Alpha"
    (renamed / "data.yaml").write_text(yaml.safe_dump(meta))
    again = acquire(str(renamed), datasets_dir)
    assert again.names[0] == "Alpha" and again.id != original.id
    assert again.id == content_id(renamed) != content_id(dataset)

    meta["names"][:2] = ["B", "A"]  # the same names in another order: another dataset too
    (renamed / "data.yaml").write_text(yaml.safe_dump(meta))
    assert content_id(renamed) not in {original.id, again.id}
    assert sorted(os.listdir(datasets_dir / "raw")) == sorted([original.id, again.id])


@pytest.fixture
def roboflow_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Point the in-process Roboflow client at a local URL (it reads API_URL at import)."""
    import roboflow  # noqa: F401  (loads the modules whose API_URL is patched below)

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    def point_at(url: str) -> None:
        for module in [m for n, m in sys.modules.items() if n.split(".")[0] == "roboflow"]:
            if isinstance(getattr(module, "API_URL", None), str):
                monkeypatch.setattr(module, "API_URL", url)

    yield point_at


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(30)
def test_wrong_roboflow_key_is_a_clear_error_without_the_key(
    dataset: Path,
    tmp_path: Path,
    roboflow_api: Callable[[str], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    datasets_dir = tmp_path / "datasets"
    with FakeRoboflow(dataset, api_key="the-right-key") as fake:
        roboflow_api(fake.url)
        source = f"roboflow:{fake.workspace}/{fake.project}/{fake.version}"
        with caplog.at_level("DEBUG"), pytest.raises(AcquireError) as raised:
            acquire(source, datasets_dir, api_key=KEY)
    message = _assert_one_line_and_nothing_left(raised.value, datasets_dir)
    assert message.startswith(f"downloading {source} from Roboflow failed: ")
    assert "This API key does not exist." in message
    assert "POST /" in fake.calls  # the key check really reached the fake and was refused
    assert KEY not in message + caplog.text + repr(raised.value.__cause__)


@pytest.mark.timeout(30)
def test_roboflow_unreachable_fails_fast_without_the_key(
    tmp_path: Path, roboflow_api: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    port = _closed_port()
    roboflow_api(f"http://127.0.0.1:{port}")
    datasets_dir = tmp_path / "datasets"

    started = time.monotonic()
    with caplog.at_level("DEBUG"), pytest.raises(AcquireError) as raised:
        acquire("roboflow:ws/project/1", datasets_dir, api_key=KEY)
    assert time.monotonic() - started < 10
    message = _assert_one_line_and_nothing_left(raised.value, datasets_dir)
    assert message.startswith("downloading roboflow:ws/project/1 from Roboflow failed: ")
    assert f"port={port}" in message and "Connection refused" in message
    assert KEY not in message + caplog.text


@pytest.mark.timeout(30)
def test_remote_source_unreachable_fails_fast(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/exports/asl.zip"
    datasets_dir = tmp_path / "datasets"

    started = time.monotonic()
    with pytest.raises(AcquireError) as raised:
        acquire(url, datasets_dir)
    assert time.monotonic() - started < 10
    message = _assert_one_line_and_nothing_left(raised.value, datasets_dir)
    assert message.startswith(f"copying dataset source {url} failed: Cannot connect to host")


def test_broken_zip_bytes_are_a_clear_error(tmp_path: Path) -> None:
    archive = tmp_path / "export.zip"
    archive.write_bytes(b"PK\x03\x04 this is no zip")
    datasets_dir = tmp_path / "datasets"
    with pytest.raises(AcquireError) as raised:
        acquire(str(archive), datasets_dir)
    message = _assert_one_line_and_nothing_left(raised.value, datasets_dir)
    assert message.startswith(f"{archive} is not a valid zip file")


@pytest.mark.parametrize(
    "entry", ["a/../../../../escaped.txt", "train/../../../../escaped.txt", "..\\..\\escaped.txt"]
)
def test_remote_listing_entry_outside_the_folder_is_refused(
    dataset: Path, tmp_path: Path, entry: str
) -> None:
    """A remote folder (an HTTP index, an S3/GCS key) that lists ``..`` writes nowhere.

    fsspec's memory filesystem keeps the key as listed, exactly as an object store does: the
    whole acquisition must fail naming the entry, and no file may appear outside staging.
    """
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/fingerspell-slip-{tmp_path.name}"
    for path in sorted(p for p in dataset.rglob("*") if p.is_file()):
        fs.pipe_file(f"{root}/{path.relative_to(dataset).as_posix()}", path.read_bytes())
    fs.pipe_file(f"{root}/{entry}", b"owned")
    datasets_dir = tmp_path / "home" / "deep" / "datasets"
    try:
        assert any(".." in name for name in fs.find(root)), "the listing keeps the entry as is"
        with pytest.raises(AcquireError) as raised:
            acquire(f"memory://{root}", datasets_dir)
    finally:
        fs.rm(root, recursive=True)
    message = _assert_one_line_and_nothing_left(raised.value, datasets_dir)
    assert "escaped.txt" in message and "not a plain path inside" in message
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not list(tmp_path.rglob("*escaped.txt"))
