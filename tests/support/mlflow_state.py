"""MLflow's process-wide state, put back after a test that points it elsewhere."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def mlflow_uris_restored() -> Iterator[pytest.MonkeyPatch]:
    """Put back MLflow's process-wide URIs and the variables it exports for them afterwards.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI``; setting the old URI again
    would pin MLflow to it, so the module globals and the variables are restored as they were.
    """
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service import utils as tracking

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tracking, "_tracking_uri", tracking._tracking_uri)
        patch.setattr(registry, "_registry_uri", registry._registry_uri)
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            patch.setenv(name, os.environ.get(name, ""))  # records the value, or its absence
            if not os.environ[name]:
                patch.delenv(name)
        yield patch
