"""End to end: the smoke pipeline leaks no credential that rides in a URL or the environment.

The dataset comes from a signed URL (``?X-Goog-Signature=FAKESIG123``) served by a local HTTP
server on 127.0.0.1, and MLflow credentials sit in the environment, as on a real tracking
server. After the run, none of the fake secrets may appear in Prefect's run logs, flow runs or
artifacts, in any MLflow param, tag or model version tag, in the console output, or in any file
under the data home or Prefect's home (databases, artifacts, cached results).

The tracking URI itself stays the local sqlite store (a URI with a password needs an HTTP
server); its redaction is covered by the unit tests of ``tasks.registry.mlflow_runs`` and ``ui``.
"""

from __future__ import annotations

import functools
import http.server
import io
import logging
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.pipeline import PipelineParams, pipeline_flow
from flows.train_params import TrainOutcome
from tasks.core.settings import get_settings

pytestmark = [pytest.mark.slow]

SIGNATURE = "FAKESIG123"
CREDENTIAL = "FAKECRED789"
PASSWORD = "FAKEPASS456"
SECRETS = (SIGNATURE, CREDENTIAL, PASSWORD)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the request line has the URL
        pass


@pytest.fixture(scope="module")
def signed_url(subset_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The subset as a zip behind a signed-looking URL on a local HTTP server."""
    www = tmp_path_factory.mktemp("www")
    with zipfile.ZipFile(www / "asl.zip", "w") as bundle:
        for file in sorted(subset_dataset.rglob("*")):
            if file.is_file():
                bundle.write(file, file.relative_to(subset_dataset.parent))
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(www))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    # The trailing name=asl.zip: tasks/data/remote.py tells a zip by the URL's last suffix,
    # query included (reported as its own issue), so a real signed URL would be read as a folder.
    try:
        yield (
            f"http://127.0.0.1:{port}/asl.zip?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            f"&X-Goog-Credential={CREDENTIAL}&X-Goog-Signature={SIGNATURE}&name=asl.zip"
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def run(signed_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One smoke pipeline run with the signed source and MLflow credentials in the environment.

    The source comes from ``FINGERSPELL_DATASET``, not a flow parameter: Prefect stores flow
    parameters as given, where no log filter reaches.
    """
    from prefect.logging.handlers import APILogHandler

    home = tmp_path_factory.mktemp("secrets-home")
    # The data tasks log the source URL at INFO on their own loggers; send those to Prefect's
    # run logs as well, so the run logs are checked with the URL actually in them.
    tasks_logger = logging.getLogger("tasks")
    api = APILogHandler()
    # What a console would show: every record that reaches the root logger's handlers.
    console_text = io.StringIO()
    console = logging.StreamHandler(console_text)
    console.setFormatter(logging.Formatter("%(name)s %(message)s"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINGERSPELL_HOME", str(home))
        patch.setenv("FINGERSPELL_DATASET", signed_url)
        patch.setenv("FINGERSPELL_EXPERIMENT", "secrets")
        patch.delenv("FINGERSPELL_MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("MLFLOW_TRACKING_USERNAME", "fingerspell")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        get_settings.cache_clear()
        tasks_logger.addHandler(api)
        logging.getLogger().addHandler(console)
        level = tasks_logger.level
        tasks_logger.setLevel(logging.INFO)
        try:
            outcome: TrainOutcome = pipeline_flow(PipelineParams(profile="smoke"))
            api.flush()
        finally:
            tasks_logger.removeHandler(api)
            logging.getLogger().removeHandler(console)
            tasks_logger.setLevel(level)
            get_settings.cache_clear()
        yield {
            "home": home,
            "outcome": outcome,
            "tracking_uri": f"sqlite:///{home / 'mlflow.db'}",
            "console": console_text.getvalue(),
        }


def _clean(where: str, text: str) -> None:
    found = [secret for secret in SECRETS if secret in text]
    assert not found, f"{found} in {where}: {text[:500]}"


def test_prefect_logs_flow_runs_and_artifacts_hold_no_secret(run: dict):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        logs, offset = [], 0
        while page := client.read_logs(limit=200, offset=offset):
            logs += page
            offset += len(page)
        for log in logs:
            _clean(f"Prefect log of {log.name}", log.message)
        assert any("X-Goog-Signature=***" in log.message for log in logs), (
            "the source URL never reached the run logs: the scan proves nothing"
        )
        for flow_run in client.read_flow_runs(limit=200):
            _clean(f"flow run {flow_run.name}", flow_run.model_dump_json())
        for task_run in client.read_task_runs(limit=200):
            _clean(f"task run {task_run.name}", task_run.model_dump_json())
        for artifact in client.read_artifacts(limit=200):
            _clean(f"artifact {artifact.key}", artifact.model_dump_json())


def test_mlflow_params_tags_and_model_versions_hold_no_secret(run: dict):
    client = MlflowClient(run["tracking_uri"], registry_uri=run["tracking_uri"])
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments])
    assert runs
    for found in runs:
        _clean(f"params of run {found.info.run_name}", repr(found.data.params))
        _clean(f"tags of run {found.info.run_name}", repr(found.data.tags))
    data = next(r for r in runs if r.info.run_name == "data")
    source = data.data.params["source"]
    assert source.startswith("http://127.0.0.1:") and "X-Goog-Signature=***" in source
    versions = client.search_model_versions()
    assert versions
    for version in versions:
        _clean(f"model version {version.version}", repr(version.tags) + str(version.source))


def test_no_file_under_the_data_and_prefect_homes_holds_a_secret(run: dict):
    roots = [run["home"], Path(os.environ["PREFECT_HOME"])]
    scanned = 0
    for root in roots:
        for path in root.rglob("*"):
            _clean("a file name", str(path))
            if path.is_file():
                data = path.read_bytes()
                found = [s for s in SECRETS if s.encode() in data]
                assert not found, f"{found} in {path}"
                scanned += 1
    assert scanned > 10 and (run["home"] / "mlflow.db").is_file()


def test_console_log_holds_no_secret(run: dict):
    _clean("the console log", run["console"])
    assert "X-Goog-Signature=***" in run["console"], "the source URL was never logged"
