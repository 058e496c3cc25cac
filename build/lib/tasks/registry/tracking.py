"""The one MLflow set-up: where the tracking store and registry are, and the experiment.

The flows, the app and the tests point MLflow at the store and get their client through here
(:func:`client_for`, :func:`connect`); nothing else sets MLflow's URIs. Credentials come from
MLflow's own variables (``MLFLOW_TRACKING_USERNAME``...), which a flow may fill from Prefect
Secret blocks; every client redacts what it writes; :func:`with_retries` wraps the steps that
must outlive a server restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tasks.core.redact import redact
from tasks.core.settings import Settings, get_settings, prepare_environment
from tasks.registry.clients import NoImagesClient, RedactingClient, load_tracking_credentials

log = logging.getLogger(__name__)

T = TypeVar("T")


def configure_mlflow(tracking_uri: str, experiment: str, artifact_root: str | None) -> str:
    """Point MLflow at the tracking store and make sure the experiment exists.

    The experiment gets an explicit artifact location: MLflow 3 with a sqlite store would
    otherwise put artifacts relative to the working directory.

    Returns:
        The experiment id.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = mlflow.MlflowClient()
    existing = client.get_experiment_by_name(experiment)
    if existing is not None:
        return existing.experiment_id
    location = f"{artifact_root.rstrip('/')}/{experiment}" if artifact_root else None
    return client.create_experiment(experiment, artifact_location=location)


def client_for(tracking_uri: str, *, images: bool = True) -> RedactingClient:
    """A redacting client for the tracking store and its registry (the same URI).

    Also points mlflow's process-wide URIs there: ``Recognizer.load`` downloads ``models:/``
    URIs through them.

    Args:
        tracking_uri: The store.
        images: False for a learner's run: the client logs no image file.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    kind = RedactingClient if images else NoImagesClient
    return kind(tracking_uri=tracking_uri, registry_uri=tracking_uri)


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking server does not answer."""


def check_reachable(
    tracking_uri: str, timeout: float = 5.0, waits: Sequence[float] = (2, 5)
) -> None:
    """Fail early and clearly when an MLflow server is down, before any work starts.

    MLflow's own client would retry each request for minutes and then fail with a long
    traceback, after the data had been built. Only a server URI is checked (a sqlite store
    is a file); any HTTP answer counts as up, so a server that wants credentials passes here.

    Raises:
        TrackingUnavailable: No answer after the waits, naming the server (credentials
            redacted) and the setting to change.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import requests

    health = f"{tracking_uri.rstrip('/')}/health"
    error: Exception | None = None
    for wait in (*waits, None):
        try:
            requests.get(health, timeout=timeout)
            return
        except (requests.ConnectionError, requests.Timeout) as exc:
            error = exc
        if wait is not None:
            time.sleep(wait)
    reason = type(error).__name__ if error else "no answer"
    raise TrackingUnavailable(
        f"MLflow tracking server {redact(tracking_uri)} does not answer ({reason}); start it, "
        "or point FINGERSPELL_MLFLOW_TRACKING_URI at one that runs"
    )


def connect(
    tracking_uri: str, experiment: str, artifact_root: str | None, *, images: bool = True
) -> tuple[RedactingClient, str]:
    """A flow's client for the tracking store, and the id of ``experiment`` (created if needed).

    Credentials that the environment lacks are read from Prefect Secret blocks first.

    Args:
        tracking_uri: The store.
        experiment: The experiment's name.
        artifact_root: Where its artifacts go (None: the store's default).
        images: False for a learner's run (see :func:`client_for`).

    Raises:
        TrackingUnavailable: A tracking server that does not answer (see
            :func:`check_reachable`).
    """
    check_reachable(tracking_uri)
    load_tracking_credentials(tracking_uri)
    experiment_id = configure_mlflow(tracking_uri, experiment, artifact_root)
    return client_for(tracking_uri, images=images), experiment_id


@dataclass(frozen=True)
class Job:
    """What every flow starts from: the settings, a client of the tracking store, the experiment."""

    settings: Settings
    client: RedactingClient
    experiment_id: str


def open_job(*, images: bool = True) -> Job:
    """Read the settings, prepare the process environment and connect to MLflow.

    Args:
        images: False for a learner's run: its client logs no image file.

    Raises:
        TrackingUnavailable: A tracking server that does not answer.
    """
    settings = get_settings()
    prepare_environment(settings)
    client, experiment_id = connect(
        settings.tracking_uri, settings.experiment, settings.artifact_root, images=images
    )
    return Job(settings, client, experiment_id)


def with_retries(
    action: Callable[[], T],
    what: str,
    waits: Sequence[float] = (10.0, 30.0, 60.0),
) -> T:
    """Run ``action``; when the tracking store fails, wait and try again.

    MLflow's HTTP client already retries a request for a while; this covers a server that is
    down for longer (a restart, a deploy) around the steps that must not be lost, such as
    registering a trained model. The last failure is raised.

    Args:
        action: The step, e.g. ``lambda: register(uri, tags)``.
        what: Its name, for the log.
        waits: Seconds to wait before each new try.
    """
    for wait in waits:
        try:
            return action()
        except Exception as error:  # MlflowException, a connection error, a locked sqlite
            log.warning("%s failed (%s); trying again in %.0f s", what, _short(error), wait)
            time.sleep(wait)
    return action()


def _short(error: Exception) -> str:
    first = str(error).strip().splitlines()
    return f"{type(error).__name__}: {first[0][:200] if first else ''}"
