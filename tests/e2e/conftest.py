"""Real servers for end-to-end tests, started on 127.0.0.1 and stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.servers import BIN, free_port, start_server, stop, wait_http

from tasks.core.settings import get_settings


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` (sqlite store, served artifacts) on 127.0.0.1.

    One per test module: a module's tests may build on each other's registry state (first
    model → champion, then challenger), and another module's models must not be in it.
    """
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = root / "server.log"
    process = start_server(
        [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        log,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", process, timeout=120, log=log)
        yield uri
    finally:
        stop(process)


@pytest.fixture(scope="module")
def env(
    request: pytest.FixtureRequest, mlflow_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """A fresh data home whose settings point at this module's MLflow server.

    The experiment is the module's ``EXPERIMENT`` (default ``"e2e"``).
    """
    home = tmp_path_factory.mktemp("home")
    experiment = getattr(request.module, "EXPERIMENT", "e2e")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINGERSPELL_HOME", str(home))
        patch.setenv("FINGERSPELL_MLFLOW_TRACKING_URI", mlflow_server)
        patch.setenv("FINGERSPELL_EXPERIMENT", experiment)
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        get_settings.cache_clear()
        yield {"home": home, "uri": mlflow_server}
    get_settings.cache_clear()
