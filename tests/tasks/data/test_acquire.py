"""ACQUIRE: parsing sources, content ids, and publishing folders, zips and Roboflow exports."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from fakes.roboflow_api import FakeRoboflow, build_export_zip

from tasks.core.records import LETTERS
from tasks.data.acquire import AcquireError, acquire, content_id, parse_source
from tasks.data.sources import mask_secret_in_logs
from tasks.data.validate import validate_dataset
from tasks.data.yolo_format import read_names

REPO = Path(__file__).resolve().parents[3]
SUBSET_COUNTS = {"train": 52, "valid": 26, "test": 24}
API_KEY = "rf-Test-Key-s3cr3t-0123abcd"


def _published(datasets_dir: Path) -> list[str]:
    """Every entry under datasets_dir, to check that nothing half-written is left."""
    return sorted(p.relative_to(datasets_dir).as_posix() for p in datasets_dir.rglob("*"))


# --- parse_source -------------------------------------------------------------------------


def test_parse_source_roboflow() -> None:
    parsed = parse_source("roboflow:david-lee-d0rhs/american-sign-language-letters/1")
    assert (parsed.kind, parsed.workspace, parsed.project, parsed.version) == (
        "roboflow",
        "david-lee-d0rhs",
        "american-sign-language-letters",
        1,
    )
    assert str(parsed) == "roboflow:david-lee-d0rhs/american-sign-language-letters/1"


def test_parse_source_paths(tmp_path: Path) -> None:
    assert parse_source(str(tmp_path)).kind == "folder"
    assert parse_source(tmp_path.as_uri()).path == tmp_path
    zipped = parse_source(str(tmp_path / "export.ZIP"))
    assert (zipped.kind, zipped.path) == ("zip", tmp_path / "export.ZIP")


@pytest.mark.parametrize(
    "source",
    ["roboflow:ws/project", "roboflow:ws/project/latest", "roboflow:ws//1", "/no/such/folder", ""],
)
def test_parse_source_rejects(source: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_source(source)
    assert repr(source) in str(info.value) or "empty" in str(info.value)


# --- content_id and data.yaml ---------------------------------------------------------------


def test_content_id_hashes_split_files_and_class_names(
    subset_dataset: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(subset_dataset, tmp_path / "copy"))
    original = content_id(copy)
    assert len(original) == 16 and int(original, 16) >= 0
    assert content_id(copy, LETTERS) == original
    (copy / "train" / "labels.cache").write_bytes(b"cache")
    (copy / "README.dataset.txt").write_text("readme")
    # Of data.yaml only the class names count: not its paths, nc form or other keys.
    (copy / "data.yaml").write_text(f"path: /elsewhere\nroboflow: {{}}\nnames: {list(LETTERS)}\n")
    assert content_id(copy) == original
    (copy / "data.yaml").write_text(f"names: {['x', *LETTERS[1:]]}\n")
    assert content_id(copy) != original
    (copy / "data.yaml").write_text(f"names: {list(LETTERS)}\n")
    label = next((copy / "valid" / "labels").iterdir())
    label.write_text(label.read_text() + "\n")
    assert content_id(copy) != original
    label.rename(label.with_name("renamed.txt"))
    assert len({content_id(copy), original}) == 2


def test_read_names_forms(tmp_path: Path) -> None:
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text("nc: 2\nnames: {0: A, 1: B}\n")
    assert read_names(data_yaml) == ("A", "B")
    data_yaml.write_text("nc: 3\nnames: [A, B]\n")
    with pytest.raises(AcquireError, match="nc=3"):
        read_names(data_yaml)


# --- acquire from a folder or a zip ---------------------------------------------------------


def test_acquire_folder_is_content_addressed_and_idempotent(
    subset_dataset: Path, tmp_path: Path
) -> None:
    datasets_dir = tmp_path / "datasets"
    ref = acquire(str(subset_dataset), datasets_dir)

    final = datasets_dir / "raw" / ref.id
    assert ref.id == content_id(subset_dataset)
    assert ref.uri == final.as_uri() and ref.local_path == final
    assert ref.names == LETTERS and ref.counts == SUBSET_COUNTS
    assert os.listdir(datasets_dir) == ["raw"] and os.listdir(datasets_dir / "raw") == [ref.id]
    meta = yaml.safe_load(ref.data_yaml.read_text())
    assert meta == {
        "path": str(final),
        "train": "train/images",
        "val": "valid/images",
        "test": "test/images",
        "nc": 26,
        "names": list(LETTERS),
    }
    assert validate_dataset(final, ref.names).ok

    before = {p: p.stat() for p in [final, *final.rglob("*")]}
    again = acquire(str(subset_dataset), datasets_dir)
    assert again == ref
    after = {p: p.stat() for p in [final, *final.rglob("*")]}
    assert after.keys() == before.keys()
    for path, stat in before.items():
        assert (after[path].st_ino, after[path].st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert os.listdir(datasets_dir) == ["raw"] and os.listdir(datasets_dir / "raw") == [ref.id]


def _write_zip(subset: Path, archive: Path, prefix: str) -> Path:
    """A Roboflow-style export zip, with its files at the root or under ``prefix``."""
    exported = zipfile.ZipFile(io.BytesIO(build_export_zip(subset, "ws", "asl", 1)))
    with zipfile.ZipFile(archive, "w") as bundle:
        for member in exported.infolist():
            bundle.writestr(prefix + member.filename, exported.read(member))
        # Extra files an export may carry that are not data.
        bundle.writestr(f"{prefix}train/labels.cache", b"ultralytics cache")
        if prefix:
            bundle.writestr("__MACOSX/._data.yaml", b"resource fork")
    return archive


@pytest.mark.parametrize("prefix", ["", "American-Sign-Language-Letters-1/"])
def test_acquire_zip_layouts(subset_dataset: Path, tmp_path: Path, prefix: str) -> None:
    archive = _write_zip(subset_dataset, tmp_path / "export.zip", prefix)
    datasets_dir = tmp_path / "datasets"

    ref = acquire(str(archive), datasets_dir)

    assert ref.id == content_id(subset_dataset)
    assert ref.counts == SUBSET_COUNTS and ref.names == LETTERS
    assert not list(ref.local_path.rglob("*.cache"))
    assert not list(ref.local_path.glob("README*"))
    assert _published(datasets_dir)[:2] == ["raw", f"raw/{ref.id}"]
    # The same content from a folder is the same dataset: nothing new is written.
    assert acquire(str(subset_dataset), datasets_dir) == ref


def test_acquire_zip_without_data_yaml_leaves_nothing(subset_dataset: Path, tmp_path: Path) -> None:
    archive = tmp_path / "no-yaml.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for label in sorted((subset_dataset / "train" / "labels").iterdir())[:3]:
            bundle.write(label, f"train/labels/{label.name}")
    datasets_dir = tmp_path / "datasets"

    with pytest.raises(AcquireError, match=r"no-yaml\.zip has no data\.yaml"):
        acquire(str(archive), datasets_dir)
    assert _published(datasets_dir) == []


def test_acquire_broken_sources_leave_nothing(subset_dataset: Path, tmp_path: Path) -> None:
    datasets_dir = tmp_path / "datasets"
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"this is not a zip")
    with pytest.raises(AcquireError, match="not a valid zip"):
        acquire(str(garbage), datasets_dir)
    with pytest.raises(FileNotFoundError, match=r"missing\.zip"):
        acquire(str(tmp_path / "missing.zip"), datasets_dir)

    no_valid = Path(shutil.copytree(subset_dataset, tmp_path / "no-valid"))
    shutil.rmtree(no_valid / "valid")
    with pytest.raises(AcquireError, match="no valid/images"):
        acquire(str(no_valid), datasets_dir)
    assert _published(datasets_dir) == []


def test_acquire_roboflow_needs_a_key(tmp_path: Path) -> None:
    datasets_dir = tmp_path / "datasets"
    with pytest.raises(AcquireError) as info:
        acquire("roboflow:ws/project/1", datasets_dir, api_key=None)
    message = str(info.value)
    assert "ROBOFLOW_API_KEY" in message and "FINGERSPELL_ROBOFLOW_API_KEY" in message
    assert _published(datasets_dir) == []


def test_mask_secret_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    url_logger = logging.getLogger("urllib3.connectionpool")
    with caplog.at_level(logging.DEBUG, logger="urllib3"), mask_secret_in_logs(API_KEY):
        url_logger.debug('"GET /ws?api_key=%s HTTP/1.1" 200 12', API_KEY)
    assert "api_key=***" in caplog.text and API_KEY not in caplog.text


# --- acquire from Roboflow, against a fake API on 127.0.0.1 --------------------------------

# The roboflow client reads API_URL when it is imported, so each download runs in a fresh
# interpreter whose environment points the client at the fake. All logging goes to stderr.
_HARNESS = """
import logging, os, sys
from pathlib import Path
logging.basicConfig(level=logging.DEBUG, format="%(name)s %(levelname)s %(message)s")
from tasks.data.acquire import acquire
key = os.environ.pop("FAKE_ROBOFLOW_KEY")
try:
    ref = acquire(sys.argv[1], Path(sys.argv[2]), api_key=key)
except Exception as exc:
    logging.getLogger("harness").exception("acquire failed")
    print("ERROR " + str(exc))
    sys.exit(3)
print("REF " + ref.model_dump_json())
"""


def _acquire_subprocess(
    source: str, datasets_dir: Path, api_url: str, key: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    drop = {
        "ROBOFLOW_API_KEY",
        "FINGERSPELL_ROBOFLOW_API_KEY",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    }
    env = {k: v for k, v in os.environ.items() if k.upper() not in drop}
    env.update(
        API_URL=api_url,
        ROBOFLOW_CONFIG_DIR=str(tmp_path / "no-roboflow-config.json"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONPATH=str(REPO),
        TQDM_DISABLE="1",
        FAKE_ROBOFLOW_KEY=key,
    )
    return subprocess.run(
        [sys.executable, "-c", _HARNESS, source, str(datasets_dir)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _files_mention(folder: Path, secret: str) -> list[str]:
    return [
        p.as_posix() for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()
    ]


def test_acquire_roboflow_download(subset_dataset: Path, tmp_path: Path) -> None:
    datasets_dir = tmp_path / "datasets"
    with FakeRoboflow(subset_dataset, API_KEY) as fake:
        source = f"roboflow:{fake.workspace}/{fake.project}/{fake.version}"
        result = _acquire_subprocess(source, datasets_dir, fake.url, API_KEY, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    ref_line = next(line for line in result.stdout.splitlines() if line.startswith("REF "))
    ref = json.loads(ref_line.removeprefix("REF "))
    assert ref["id"] == content_id(subset_dataset)
    assert ref["counts"] == SUBSET_COUNTS and tuple(ref["names"]) == LETTERS
    assert "GET /download/fingerspell-tests-asl-letters-1.zip" in fake.calls
    assert "GET /fingerspell-tests/asl-letters/1/yolov8" in fake.calls
    # The key went to the fake (its check passed) but never into output, logs or files.
    assert "api_key=***" in result.stderr
    assert API_KEY not in result.stdout + result.stderr
    assert _files_mention(datasets_dir, API_KEY) == []
    assert _published(datasets_dir)[:2] == ["raw", f"raw/{ref['id']}"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("failure", ["wrong key", "server down"])
def test_acquire_roboflow_failure_hides_key(
    subset_dataset: Path, tmp_path: Path, failure: str
) -> None:
    datasets_dir = tmp_path / "datasets"
    with FakeRoboflow(subset_dataset, api_key="the-right-key") as fake:
        url = fake.url if failure == "wrong key" else f"http://127.0.0.1:{_closed_port()}"
        result = _acquire_subprocess("roboflow:ws/p/1", datasets_dir, url, API_KEY, tmp_path)

    assert result.returncode == 3, result.stdout + result.stderr
    assert "ERROR downloading roboflow:ws/p/1 from Roboflow failed" in result.stdout
    assert API_KEY not in result.stdout + result.stderr
    assert _published(datasets_dir) == []
