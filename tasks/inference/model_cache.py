"""Download an MLflow model URI once and reuse the local copy (atomic, per server and version)."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

from tasks.core.files import publish, staging_dir
from tasks.core.redact import redact

log = logging.getLogger(__name__)


def download(uri: str, cache_dir: Path) -> Path:
    """Download an MLflow model URI once into ``cache_dir`` and return the local folder."""
    import mlflow
    from mlflow import MlflowClient

    resolved, cacheable = uri, True
    if uri.startswith("models:/"):
        name, _, ref = uri.removeprefix("models:/").partition("@")
        if ref:  # an alias moves; cache by the version it points at now
            version = _version_of_alias(MlflowClient(), name, ref)
            resolved = f"models:/{name}/{version}"
        else:
            cacheable = uri.rstrip("/").rsplit("/", 1)[-1].isdigit()  # "latest" or a stage moves
    # The same "models:/x/3" means another model on another server.
    where = f"{mlflow.get_tracking_uri()}|{mlflow.get_registry_uri()}|{resolved}"
    key = hashlib.sha256(where.encode()).hexdigest()[:16]
    final = cache_dir / key
    marker = final / ".fingerspell-model"
    if cacheable and marker.is_file():
        log.info("using cached %s (%s) from %s", uri, resolved, final)
        return final / marker.read_text()
    cache_dir.mkdir(parents=True, exist_ok=True)
    # A moving reference ("latest", a stage) goes to a fresh folder of its own, never reused;
    # it is in the cache folder, not /tmp, and is swept once this process is gone.
    staging = staging_dir(final, prefix=f".{key}-moving-" if not cacheable else None)
    log.info("downloading %s (%s) to %s", uri, resolved, final if cacheable else staging)
    got = Path(mlflow.artifacts.download_artifacts(artifact_uri=resolved, dst_path=str(staging)))
    if not any(path.is_file() for path in got.rglob("*")):
        # MLflow answers a version whose artifacts are missing with an empty folder; cached,
        # it would be served for good, even once the store is back.
        shutil.rmtree(staging, ignore_errors=True)
        raise FileNotFoundError(
            f"{uri} ({resolved}) has no files in MLflow's artifact store at "
            f"{redact(mlflow.get_tracking_uri())}; is the store reachable?"
        )
    if not cacheable:
        return got
    relative = got.relative_to(staging).as_posix()
    (staging / marker.name).write_text(relative)
    # Atomic: other processes see no folder or a complete one (the marker is inside).
    if not publish(staging, final, complete=marker.name):
        shutil.rmtree(staging, ignore_errors=True)  # another process's copy is as good as ours
    return final / relative


def _version_of_alias(client: Any, name: str, alias: str) -> str:
    from tasks.registry.models import version_by_alias

    mv = version_by_alias(client, alias, name)
    if mv is None:
        # The usual first-run state (nothing trained yet): say what to do, not a traceback.
        raise FileNotFoundError(
            f"no version of model {name!r} holds alias {alias!r} in MLflow at "
            f"{redact(client.tracking_uri)}; train one first (make demo), or name a version "
            f"(models:/{name}/<n>)"
        )
    return str(mv.version)
