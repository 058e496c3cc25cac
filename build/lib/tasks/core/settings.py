"""Settings in one typed place, read from the environment (prefix ``FINGERSPELL_``).

MLflow's own variables count too, as MLflow users expect: ``MLFLOW_TRACKING_URI`` and
``MLFLOW_EXPERIMENT_NAME`` fill in the tracking URI and the experiment when the project's
variable (``FINGERSPELL_MLFLOW_TRACKING_URI``, ``FINGERSPELL_EXPERIMENT``) is not set; the
project's variable wins when both are. MLflow reads its credentials
(``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``/``_TOKEN``, ``MLFLOW_TRACKING_INSECURE_TLS``) itself.

Read them once with :func:`get_settings` at the edge (a flow, the CLI, the app) and pass
values down; tasks take plain arguments and never re-read the environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tasks.core.redact import install_redaction

ROBOFLOW_DEFAULT = "roboflow:david-lee-d0rhs/american-sign-language-letters/1"

# Offline-safe, quiet settings of the libraries we use (the Makefile exports the same).
# Prefect's temporary server can take longer than its 20 s default to start on 2 busy cores.
QUIET_ENV: dict[str, str] = {
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "False",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # `mlflow server` otherwise starts a pool of job-runner processes (GenAI jobs) we never use.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    # Ultralytics unpickles only model classes from a checkpoint (read once, at its import).
    "ULTRALYTICS_SAFE_LOAD": "1",
}


# MLFLOW_TRACKING_URI as the user gave it: as the first process of this tree found it. Once told
# a store, mlflow.set_tracking_uri() writes it into that variable, which children inherit, so
# from then on the variable names the store the last flow (or test) used, not the user's
# choice. The first import keeps the user's value here, and children inherit this one too.
MLFLOW_URI_AT_START = "_FINGERSPELL_MLFLOW_TRACKING_URI_AT_START"
os.environ.setdefault(MLFLOW_URI_AT_START, os.environ.get("MLFLOW_TRACKING_URI", ""))


def users_mlflow_tracking_uri() -> str | None:
    """The user's ``MLFLOW_TRACKING_URI``, not the copy MLflow writes there once told a store.

    Returns:
        The variable as the first process of this process tree found it; ``None`` when it was
        unset or empty.
    """
    return os.environ.get(MLFLOW_URI_AT_START) or None


class Settings(BaseSettings):
    """Where Fingerspell keeps its data and how it reaches MLflow and the dataset."""

    # populate_by_name: code and tests still pass fields by name where an alias reads the env.
    # env_ignore_empty: an empty project variable (VAR= in a shell) falls back to MLflow's.
    model_config = SettingsConfigDict(
        env_prefix="FINGERSPELL_",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        env_ignore_empty=True,
    )

    home: Path = Field(
        default=Path(".fingerspell"),
        description="Data home: datasets, MLflow sqlite store and artifacts, ultralytics settings.",
    )
    mlflow_tracking_uri: str | None = Field(
        default_factory=users_mlflow_tracking_uri,
        description="MLflow tracking URI (else MLFLOW_TRACKING_URI); "
        "default sqlite:///<home>/mlflow.db.",
    )
    mlflow_artifact_root: str | None = Field(
        default=None,
        description="Artifact location for new experiments; default <home>/mlartifacts.",
    )
    # An alias replaces the prefix, so the project's name is spelled out; the first one set wins.
    experiment: str = Field(
        default="fingerspell",
        validation_alias=AliasChoices("FINGERSPELL_EXPERIMENT", "MLFLOW_EXPERIMENT_NAME"),
        description="MLflow experiment name (else MLFLOW_EXPERIMENT_NAME).",
    )
    dataset: str | None = Field(
        default=None,
        description="Dataset source: a local export folder, a .zip, or "
        "roboflow:<workspace>/<project>/<version>.",
    )
    weights_dir: Path | None = Field(
        default=None,
        description="Folder searched first for the pretrained weights a recipe names "
        "(an offline machine keeps its copies here); then they are downloaded.",
    )
    roboflow_api_key: SecretStr | None = Field(
        default=None,
        description="Roboflow key; ROBOFLOW_API_KEY is read too. Never logged.",
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI, defaulting to a sqlite file in the data home."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str | None:
        """Where new MLflow experiments put their artifacts.

        With a tracking server (http/https) the server decides, unless set explicitly; with a
        local sqlite store the artifacts go under the data home (MLflow 3 would otherwise
        write them relative to the working directory).
        """
        if self.mlflow_artifact_root:
            return self.mlflow_artifact_root
        if self.tracking_uri.startswith(("http://", "https://", "databricks")):
            return None
        return (self.home / "mlartifacts").as_uri()

    @property
    def datasets_dir(self) -> Path:
        """Folder holding acquired (content-addressed) and augmented datasets."""
        return self.home / "datasets"

    @property
    def yolo_config_dir(self) -> Path:
        """Ultralytics' settings folder, kept inside the data home, not in the user's home."""
        return self.home / "ultralytics"

    def roboflow_key(self) -> str | None:
        """The Roboflow API key from settings or ``ROBOFLOW_API_KEY``, if any."""
        if self.roboflow_api_key is not None:
            return self.roboflow_api_key.get_secret_value()
        return os.environ.get("ROBOFLOW_API_KEY") or None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read settings from the environment once per process.

    Log redaction is installed here too: the app reads settings before anything can log a
    tracking URI, without calling :func:`prepare_environment`.
    """
    install_redaction()
    return Settings()


def prepare_environment(settings: Settings) -> None:
    """Point third-party libraries at the data home before they are imported.

    Ultralytics reads ``YOLO_CONFIG_DIR`` at import time, so this must run first. Every flow
    calls this, after Prefect has configured its log handlers, so URL credentials are redacted
    from here on in every handler (Prefect's run logs included).
    """
    install_redaction()
    settings.home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(settings.yolo_config_dir))
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
