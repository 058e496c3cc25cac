"""The MLflow clients every flow, the app and the tests open: credentials, redaction, privacy.

:func:`tasks.registry.tracking.client_for` and :func:`tasks.registry.tracking.connect` hand
these out; nothing else constructs an ``MlflowClient`` that writes.

- :class:`RedactingClient` redacts URL credentials in every param and tag it writes (flows log
  through the client directly too, so redacting in the client covers every caller).
- :class:`NoImagesClient` is a personal run's: it logs no image file, whoever asks it to.
- :func:`load_tracking_credentials` fills MLflow's credential variables from Prefect Secret
  blocks, for jobs (Vertex AI) that get no secrets in their plain environment.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from tasks.core.records import IMAGE_SUFFIXES
from tasks.core.redact import redact, redact_value

log = logging.getLogger(__name__)

# What a picture file starts with, whatever its name: JPEG, PNG, GIF, BMP, WebP (RIFF), TIFF.
_PICTURE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")

# MLflow reads a tracking server's credentials from these variables. Jobs on Vertex AI get no
# secrets in their plain environment: the flow fills them from Prefect Secret blocks instead.
TRACKING_SECRET_BLOCKS = {
    "MLFLOW_TRACKING_USERNAME": "mlflow-tracking-username",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-tracking-password",
    "MLFLOW_TRACKING_TOKEN": "mlflow-tracking-token",
}


def load_tracking_credentials(tracking_uri: str) -> list[str]:
    """Set MLflow's credential variables that are unset from Prefect Secret blocks, if any.

    Args:
        tracking_uri: Only an http(s) tracking server is asked for credentials.

    Returns:
        The names of the variables set (never their values).
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return []
    from prefect.blocks.system import Secret

    loaded = []
    for variable, block in TRACKING_SECRET_BLOCKS.items():
        if os.environ.get(variable):
            continue
        try:
            os.environ[variable] = str(Secret.load(block).get())
        except (ValueError, RuntimeError):
            continue  # no such block: the server needs no credentials of this kind
        loaded.append(variable)
    return loaded


class RedactingClient(MlflowClient):
    """An ``MlflowClient`` that redacts URL credentials in every param and tag it writes.

    Flows log through the client directly as well (``client.set_tag``), so redacting in the
    client, not only in this module's helpers, covers every caller.
    """

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: dict[str, Any] | None = None,
        run_name: str | None = None,
    ) -> Any:
        """``MlflowClient.create_run`` with redacted tag values."""
        tags = {k: redact_value(v) for k, v in (tags or {}).items()}
        return super().create_run(experiment_id, start_time, tags, run_name)

    def set_tag(self, run_id: str, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        """``MlflowClient.set_tag`` with a redacted value."""
        return super().set_tag(run_id, key, redact_value(value), *args, **kwargs)

    def log_param(self, run_id: str, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        """``MlflowClient.log_param`` with a redacted value."""
        return super().log_param(run_id, key, redact_value(value), *args, **kwargs)

    def log_batch(
        self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = (), **kwargs: Any
    ) -> Any:
        """``MlflowClient.log_batch`` with redacted param and tag values."""
        params = [Param(p.key, redact(p.value)) for p in params]
        tags = [RunTag(t.key, redact(t.value)) for t in tags]
        return super().log_batch(run_id, metrics, params, tags, **kwargs)

    def set_model_version_tag(
        self, name: str, version: Any = None, key: Any = None, value: Any = None, **kwargs: Any
    ) -> Any:
        """``MlflowClient.set_model_version_tag`` with a redacted value."""
        return super().set_model_version_tag(name, version, key, redact_value(value), **kwargs)


def is_picture(path: Path) -> bool:
    """Whether ``path`` is an image file, by its suffix or by its first bytes."""
    if path.suffix.lower() in IMAGE_SUFFIXES | {".gif", ".svg"}:
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(8).startswith(_PICTURE_MAGIC)
    except OSError:
        return False


class NoImagesClient(RedactingClient):
    """The MLflow client of a personal run: it logs no image, whoever asks it to.

    The run-folder logging takes every ``.jpg`` and ``.png`` of a training folder, where
    ultralytics draws its training batches (``train_batch*.jpg``): for a learner, their webcam
    frames. A refused file is skipped with a log line, so the run itself goes on.
    """

    def log_artifact(self, run_id: str, local_path: Any, artifact_path: Any = None) -> None:
        """``MlflowClient.log_artifact``, skipping an image file."""
        if is_picture(Path(local_path)):
            log.info("not logged to MLflow: %s (a personal run logs no image)", local_path)
            return
        super().log_artifact(run_id, local_path, artifact_path)

    def log_artifacts(self, run_id: str, local_dir: Any, artifact_path: Any = None) -> None:
        """``MlflowClient.log_artifacts`` file by file, skipping image files."""
        folder = Path(local_dir)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            where = path.parent.relative_to(folder).as_posix()
            parts = [part for part in (artifact_path, where) if part and part != "."]
            self.log_artifact(run_id, str(path), "/".join(parts) or None)

    def log_image(self, run_id: str, *args: Any, **kwargs: Any) -> None:
        """Refused: a personal run logs no image."""
        log.info("not logged to MLflow: an image (a personal run logs none)")

    def log_figure(self, run_id: str, *args: Any, **kwargs: Any) -> None:
        """Refused: a personal run logs no image."""
        log.info("not logged to MLflow: a figure (a personal run logs none)")
