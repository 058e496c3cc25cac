"""Settings from the environment: the project's variables, and MLflow's own where ours are unset."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tasks.core.settings import MLFLOW_URI_AT_START, Settings, get_settings, prepare_environment

REPO = Path(__file__).resolve().parents[3]

_VARIABLES = (
    "FINGERSPELL_HOME",
    "FINGERSPELL_MLFLOW_TRACKING_URI",
    "FINGERSPELL_MLFLOW_ARTIFACT_ROOT",
    "FINGERSPELL_EXPERIMENT",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "FINGERSPELL_ROBOFLOW_API_KEY",
    "ROBOFLOW_API_KEY",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable of the developer's shell leaks in; the data home is a fresh folder."""
    for name in _VARIABLES:
        monkeypatch.setenv(name, "")  # records the value, or its absence, to restore after
        monkeypatch.delenv(name)
    monkeypatch.setenv(MLFLOW_URI_AT_START, "")
    monkeypatch.setenv("FINGERSPELL_HOME", str(tmp_path / "home"))


def _user_sets_mlflow_tracking_uri(monkeypatch: pytest.MonkeyPatch, uri: str) -> None:
    """As if the process had been started with ``MLFLOW_TRACKING_URI=uri``."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(MLFLOW_URI_AT_START, uri)


def test_defaults_keep_everything_in_the_data_home(tmp_path: Path):
    settings = Settings()
    home = (tmp_path / "home").resolve()
    assert settings.home == home
    assert settings.tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert settings.artifact_root == (home / "mlartifacts").as_uri()
    assert settings.experiment == "fingerspell"
    assert settings.datasets_dir == home / "datasets"
    assert settings.yolo_config_dir == home / "ultralytics"


def test_mlflow_tracking_uri_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    store = tmp_path / "X.db"
    _user_sets_mlflow_tracking_uri(monkeypatch, f"sqlite:///{store}")
    settings = Settings()
    assert settings.tracking_uri == f"sqlite:///{store}"
    # a sqlite store still keeps its artifacts in the data home, not the working directory
    assert settings.artifact_root == (settings.home / "mlartifacts").as_uri()


def test_the_project_variable_wins_over_mlflows(monkeypatch: pytest.MonkeyPatch):
    _user_sets_mlflow_tracking_uri(monkeypatch, "sqlite:///mlflows.db")
    monkeypatch.setenv("FINGERSPELL_MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    settings = Settings()
    assert settings.tracking_uri == "http://127.0.0.1:5000"
    assert settings.artifact_root is None  # a server decides where artifacts go


def test_an_empty_project_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FINGERSPELL_MLFLOW_TRACKING_URI", "")
    _user_sets_mlflow_tracking_uri(monkeypatch, "https://mlflow.example/")
    assert Settings().tracking_uri == "https://mlflow.example/"


def test_experiment_from_mlflow_or_the_project(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "theirs")
    assert Settings().experiment == "theirs"
    monkeypatch.setenv("FINGERSPELL_EXPERIMENT", "ours")
    assert Settings().experiment == "ours"


def test_fields_are_still_set_by_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    _user_sets_mlflow_tracking_uri(monkeypatch, "sqlite:///ignored.db")
    settings = Settings(home=tmp_path, mlflow_tracking_uri="http://h:1", experiment="e")
    assert (settings.tracking_uri, settings.experiment) == ("http://h:1", "e")


def test_explicit_artifact_root_wins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FINGERSPELL_MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("FINGERSPELL_MLFLOW_ARTIFACT_ROOT", "gs://bucket/artifacts")
    assert Settings().artifact_root == "gs://bucket/artifacts"


def test_roboflow_key_from_either_variable_and_never_shown(monkeypatch: pytest.MonkeyPatch):
    assert Settings().roboflow_key() is None
    monkeypatch.setenv("ROBOFLOW_API_KEY", "plain")
    assert Settings().roboflow_key() == "plain"
    monkeypatch.setenv("FINGERSPELL_ROBOFLOW_API_KEY", "secret-key")
    settings = Settings()
    assert settings.roboflow_key() == "secret-key"
    assert "secret-key" not in repr(settings)


def test_get_settings_reads_once(monkeypatch: pytest.MonkeyPatch):
    get_settings.cache_clear()
    try:
        first = get_settings()
        monkeypatch.setenv("FINGERSPELL_EXPERIMENT", "changed")
        assert get_settings() is first and first.experiment == "fingerspell"
    finally:
        get_settings.cache_clear()


def test_prepare_environment_makes_the_home_and_keeps_set_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.delenv("YOLO_CONFIG_DIR", raising=False)
    monkeypatch.setenv("NO_ALBUMENTATIONS_UPDATE", "keep")
    settings = Settings(home=tmp_path / "fresh")
    prepare_environment(settings)
    assert settings.home.is_dir()
    assert os.environ["YOLO_CONFIG_DIR"] == str(settings.yolo_config_dir)
    assert os.environ["NO_ALBUMENTATIONS_UPDATE"] == "keep"


def test_the_copy_mlflow_writes_is_not_taken_for_the_users_choice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """mlflow.set_tracking_uri() writes MLFLOW_TRACKING_URI; a later flow or test in the same
    process (or a child of it), with another data home, must not inherit the last store."""
    import mlflow

    with mlflow_state_restored(monkeypatch):
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'last-flow.db'}")
        assert os.environ["MLFLOW_TRACKING_URI"].endswith("last-flow.db")  # what MLflow does
        settings = Settings()
        assert settings.tracking_uri == f"sqlite:///{settings.home / 'mlflow.db'}"


def test_a_child_process_sees_the_users_variable_not_mlflows_copy(tmp_path: Path):
    script = (
        "import os; from tasks.core.settings import Settings; "
        "print(Settings().tracking_uri, os.environ['MLFLOW_TRACKING_URI'])"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:///copy.db"}
    for user, expected in (("", f"sqlite:///{(tmp_path / 'home').resolve()}/mlflow.db"),
                           ("sqlite:///users.db", "sqlite:///users.db")):  # fmt: skip
        env[MLFLOW_URI_AT_START] = user  # what the first process found
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
            check=True, timeout=120,
        ).stdout.split()  # fmt: skip
        assert out == [expected, "sqlite:///copy.db"]
    env.pop(MLFLOW_URI_AT_START)  # a first process: the variable as it finds it
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()  # fmt: skip
    assert out[0] == "sqlite:///copy.db"


@contextmanager
def mlflow_state_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Put back MLflow's process-wide tracking URI (its module global) after the block."""
    from mlflow.tracking._tracking_service import utils as tracking

    monkeypatch.setattr(tracking, "_tracking_uri", tracking._tracking_uri)
    yield
