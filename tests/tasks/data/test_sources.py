"""Dataset sources: parsing a source string, finding the export in a folder or zip, key masking."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import pytest

from tasks.data import sources
from tasks.data.sources import (
    AcquireError,
    DatasetSource,
    download_roboflow,
    extract_zip,
    find_export_root,
    is_url,
    mask,
    mask_secret_in_logs,
    parse_source,
)


def _zip(path: Path, entries: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, text in entries.items():
            bundle.writestr(name, text)
    return path


def test_every_kind_prints_back_as_it_was_given(tmp_path: Path):
    roboflow = parse_source(" roboflow:ws/asl/3/ ")
    assert (roboflow.kind, roboflow.workspace, roboflow.project, roboflow.version) == (
        "roboflow",
        "ws",
        "asl",
        3,
    )
    assert str(roboflow) == "roboflow:ws/asl/3"
    remote = parse_source("gs://bucket/asl.zip")
    assert remote == DatasetSource(kind="url", url="gs://bucket/asl.zip")
    assert str(remote) == "gs://bucket/asl.zip"
    assert str(parse_source(str(tmp_path))) == str(tmp_path.resolve())


def test_a_zip_need_not_exist_yet_but_a_folder_must(tmp_path: Path):
    assert parse_source(str(tmp_path / "later.Zip")).kind == "zip"
    with pytest.raises(ValueError, match="neither an existing folder"):
        parse_source(str(tmp_path / "absent"))


def test_home_and_file_uris_are_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "my data").mkdir()
    assert parse_source("~/my data").path == (tmp_path / "my data").resolve()
    assert parse_source((tmp_path / "my data").as_uri()).path == (tmp_path / "my data").resolve()


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("roboflow:ws/asl", "expected roboflow:<workspace>/<project>/<version>"),
        ("roboflow:ws/asl/0", "version number >= 1"),
        ("roboflow:ws//1", "not a Roboflow dataset"),
        ("nosuchfs://bucket/x", "no filesystem is known for nosuchfs://"),
    ],
)
def test_bad_sources_are_named(source: str, fragment: str):
    with pytest.raises(ValueError, match=fragment):
        parse_source(source)


def test_is_url():
    assert is_url("gs://b/x") and is_url("s3://b") and is_url("https://h/x.zip")
    assert not is_url("file:///tmp/x") and not is_url("/tmp/x") and not is_url("C:/x")


def test_export_root_is_the_folder_or_its_single_child(tmp_path: Path):
    flat = tmp_path / "flat"
    (flat / "train").mkdir(parents=True)
    (flat / "data.yaml").write_text("names: [A]\n")
    assert find_export_root(flat, "x") == flat
    nested = tmp_path / "nested"
    (nested / "export").mkdir(parents=True)
    (nested / "export" / "data.yaml").write_text("names: [A]\n")
    (nested / "__MACOSX").mkdir()  # macOS zip junk is not a second folder
    (nested / ".DS_Store").write_text("")
    assert find_export_root(nested, "x") == nested / "export"
    (nested / "other").mkdir()
    with pytest.raises(AcquireError, match=r"the thing has no data\.yaml"):
        find_export_root(nested, "the thing")


def test_extract_zip_finds_the_export(tmp_path: Path):
    archive = _zip(tmp_path / "e.zip", {"asl/data.yaml": "names: [A]\n", "asl/train/a.txt": ""})
    assert extract_zip(archive, tmp_path / "out") == tmp_path / "out" / "asl"


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt", "C:x"])
def test_extract_zip_refuses_entries_outside_the_folder(tmp_path: Path, name: str):
    archive = _zip(tmp_path / "e.zip", {"data.yaml": "names: [A]\n", name: "x"})
    with pytest.raises(AcquireError, match="outside the archive folder"):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_extract_zip_refuses_a_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sources, "MAX_UNCOMPRESSED_BYTES", 10)
    archive = _zip(tmp_path / "e.zip", {"data.yaml": "names: [A, B, C, D]\n"})
    with pytest.raises(AcquireError, match="over the limit"):
        extract_zip(archive, tmp_path / "out")


def test_extract_zip_missing_or_broken(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        extract_zip(tmp_path / "absent.zip", tmp_path / "out")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    with pytest.raises(AcquireError, match="not a valid zip"):
        extract_zip(broken, tmp_path / "out")


def test_roboflow_without_a_key_says_how_to_give_one(tmp_path: Path):
    source = parse_source("roboflow:ws/asl/1")
    with pytest.raises(AcquireError, match="ROBOFLOW_API_KEY"):
        download_roboflow(source, tmp_path / "out", api_key=None)


def test_mask():
    assert mask("https://api/x?api_key=K3Y&K3Y", "K3Y") == "https://api/x?api_key=***&***"
    assert mask("unchanged", "") == "unchanged"


def test_the_key_is_masked_in_http_logs_only_while_the_block_runs(
    caplog: pytest.LogCaptureFixture,
):
    logger = logging.getLogger("urllib3.connectionpool")
    before = list(logger.filters)  # other libraries' own (MLflow adds one)
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        with mask_secret_in_logs("K3Y"):
            logger.debug("GET /ws?api_key=%s", "K3Y")
        logger.debug("after: %s", "K3Y")
    first, second = (record.getMessage() for record in caplog.records)
    assert first == "GET /ws?api_key=***" and second == "after: K3Y"
    assert logger.filters == before
