"""The Vertex AI deployments, checked through Prefect's and prefect-gcp's own code paths.

``deployments/create_pools.py`` runs against Prefect's temporary local API and writes the real
pool and variables; ``prefect.yaml``'s Vertex deployments are templated as ``prefect deploy``
templates them; their job variables are validated against the pool's schema and turned into a
Vertex ``CustomJob`` by ``VertexAIWorker.run``. Only Google is faked, at the outermost boundary:
``google.auth.default`` (no GCP account here) and the aiplatform ``JobServiceAsyncClient`` that
``GcpCredentials`` would hand the worker.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import re
import uuid
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import google.auth
import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1.types.accelerator_type import AcceleratorType
from google.cloud.aiplatform_v1.types.custom_job import CustomJob
from google.cloud.aiplatform_v1.types.job_state import JobState
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.utilities.schema_tools.validation import ValidationError, validate
from prefect.utilities.templating import apply_values, resolve_variables
from prefect_gcp.credentials import GcpCredentials
from prefect_gcp.workers.vertex import VertexAIWorker, VertexAIWorkerJobConfiguration

from flows.pipeline import PipelineParams
from flows.train_params import TrainParams

REPO = Path(__file__).resolve().parents[2]
PROJECT = "test-project"
MLFLOW_URI = "https://mlflow.test.internal"
DATASET_URI = "gs://test-bucket/asl-letters.zip"
IMAGE = "us-central1-docker.pkg.dev/test-project/fingerspell/train:2026-11-25"
# Set in the worker's own environment: none of it may reach the Vertex job.
WORKER_SECRETS = {
    "ROBOFLOW_API_KEY": "rf-worker-secret-123",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-worker-secret-456",
}
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL", re.IGNORECASE)

pytestmark = pytest.mark.slow  # Prefect's temporary API server starts for the module


def _create_pools() -> ModuleType:
    path = REPO / "deployments" / "create_pools.py"
    spec = importlib.util.spec_from_file_location("create_pools", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vertex_deployments() -> list[dict[str, Any]]:
    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    return [d for d in deployments if d["work_pool"]["name"] == "vertex-gpu"]


class FakeJobService:
    """Stands in for aiplatform's JobServiceAsyncClient: records jobs, reports success."""

    def __init__(self) -> None:
        self.created: list[tuple[str, CustomJob]] = []

    async def create_custom_job(self, parent: str, custom_job: CustomJob) -> CustomJob:
        self.created.append((parent, custom_job))
        return CustomJob(
            name=f"{parent}/customJobs/1",
            display_name=custom_job.display_name,
            state=JobState.JOB_STATE_PENDING,
        )

    async def get_custom_job(self, name: str) -> CustomJob:
        return CustomJob(name=name, display_name="done", state=JobState.JOB_STATE_SUCCEEDED)


@pytest.fixture(autouse=True)
def no_gcp(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GCP account here: application-default credentials are anonymous."""
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), PROJECT))
    for name in ("GOOGLE_CLOUD_PROJECT", "FINGERSPELL_MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    for name in _create_pools().VARIABLES.values():
        monkeypatch.delenv(name[0], raising=False)


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    """Run create_pools.py against the local API; template the deployments like `prefect deploy`."""
    module = _create_pools()
    options = ["--project", PROJECT, "--mlflow-uri", MLFLOW_URI, "--dataset-uri", DATASET_URI]

    async def run() -> dict[str, Any]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), PROJECT))
            variables = await module.main(options)
        async with get_client() as client:
            pool = await client.read_work_pool("vertex-gpu")
            local = await client.read_work_pool("local-process")
            deployments = []
            for deployment in _vertex_deployments():
                # The order of prefect's deploy command: variables, then build-step outputs.
                resolved = await resolve_variables(copy.deepcopy(deployment), client=client)
                outputs = {"build-image": {"image": IMAGE}}
                deployments.append(apply_values(resolved, outputs, warn_on_notset=True))
        return {"variables": variables, "pool": pool, "local": local, "deployments": deployments}

    return asyncio.run(run())


def test_pools_and_variables_are_created(setup: dict[str, Any]) -> None:
    assert setup["local"].type == "process"
    assert setup["pool"].type == "vertex-ai"
    defaults = setup["pool"].base_job_template["variables"]["properties"]
    assert defaults["maximum_run_time_hours"]["default"] == 12 > 1, "Vertex's default is 1 h"
    assert defaults["accelerator_type"]["default"] == "NVIDIA_L4"
    assert setup["variables"]["fingerspell_mlflow_tracking_uri"] == MLFLOW_URI
    assert setup["variables"]["fingerspell_image_repository"].startswith(
        "us-central1-docker.pkg.dev/test-project/"
    )


def test_create_pools_is_idempotent_and_keeps_edits(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _create_pools()
    monkeypatch.setenv("FINGERSPELL_VERTEX_MAX_RUN_HOURS", "24")
    again = asyncio.run(module.main(["--project", PROJECT]))
    assert again["fingerspell_vertex_max_run_hours"] == 24, "an explicit value is written, as int"
    assert again["fingerspell_mlflow_tracking_uri"] == MLFLOW_URI, "an unset one is kept"
    monkeypatch.delenv("FINGERSPELL_VERTEX_MAX_RUN_HOURS")
    back = asyncio.run(module.main(["--project", PROJECT, "--mlflow-uri", MLFLOW_URI]))
    assert back["fingerspell_vertex_max_run_hours"] == 24, "a re-run keeps the edited value"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINGERSPELL_VERTEX_MAX_RUN_HOURS", "12")
        asyncio.run(module.main(["--project", PROJECT]))


def test_every_vertex_deployment_validates_against_prefect_gcp_schema(
    setup: dict[str, Any],
) -> None:
    default = VertexAIWorker.get_default_base_job_template()["variables"]
    assert [d["entrypoint"] for d in setup["deployments"]] == [
        "flows/train.py:train_flow",
        "flows/pipeline.py:pipeline_flow",
        "flows/trials.py:trial_flow",
    ]
    for deployment in setup["deployments"]:
        job_variables = deployment["work_pool"]["job_variables"]
        assert "{{" not in str(job_variables), "every placeholder is resolved"
        validate(job_variables, default, raise_on_error=True)
        validate(job_variables, setup["pool"].base_job_template["variables"], raise_on_error=True)
        assert job_variables["maximum_run_time_hours"] > 1
        assert deployment["pull"][0]["prefect.deployments.steps.set_working_directory"] == {
            "directory": "/opt/fingerspell"
        }
        assert deployment["build"][0]["prefect_docker.deployments.steps.build_docker_image"][
            "dockerfile"
        ] == ("deployments/Dockerfile")
    # The schema is strict enough to catch the classic mistake of an integer given as text.
    broken = copy.deepcopy(setup["deployments"][0]["work_pool"]["job_variables"])
    broken["maximum_run_time_hours"] = "12"
    with pytest.raises(ValidationError):
        validate(broken, default, raise_on_error=True)


def test_vertex_parameters_validate(setup: dict[str, Any]) -> None:
    train, pipeline, trial = (d["parameters"]["params"] for d in setup["deployments"])
    dataset = {"id": "abc", "uri": "gs://test-bucket/datasets/abc"}
    assert TrainParams.model_validate({**train, "dataset": dataset}).profile == "gpu"
    assert TrainParams.model_validate({**trial, "dataset": dataset}).profile == "gpu"
    params = PipelineParams.model_validate(pipeline)
    assert (params.profile, params.data.source) == ("gpu", DATASET_URI)
    assert [s["active"] for s in _vertex_deployments()[1]["schedules"]] == [False]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["train", "pipeline", "trial"])
def test_worker_builds_the_vertex_custom_job(
    setup: dict[str, Any], index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in WORKER_SECRETS.items():
        monkeypatch.setenv(name, value)
    service = FakeJobService()
    monkeypatch.setattr(
        GcpCredentials, "get_job_service_async_client", lambda self, client_options=None: service
    )
    job_variables = setup["deployments"][index]["work_pool"]["job_variables"]
    flow_run = FlowRun(id=uuid.uuid4(), name="gpu-run", flow_id=uuid.uuid4())

    async def run() -> int:
        async with get_client() as client:
            configuration = await VertexAIWorkerJobConfiguration.from_template_and_values(
                setup["pool"].base_job_template, job_variables, client=client
            )
        configuration.prepare_for_flow_run(flow_run)
        configuration.job_watch_poll_interval = 0.01  # the fake job succeeds at once
        result = await VertexAIWorker(work_pool_name="vertex-gpu").run(flow_run, configuration)
        return result.status_code

    assert asyncio.run(run()) == 0
    [(parent, job)] = service.created
    assert parent == f"projects/{PROJECT}/locations/us-central1"
    spec = job.job_spec
    [pool] = spec.worker_pool_specs
    container = pool.container_spec
    assert container.image_uri == IMAGE
    assert list(container.command) == ["prefect", "flow-run", "execute"]
    assert pool.machine_spec.machine_type == "g2-standard-8"
    assert pool.machine_spec.accelerator_type == AcceleratorType.NVIDIA_L4
    assert pool.machine_spec.accelerator_count == 1
    assert (pool.disk_spec.boot_disk_type, pool.disk_spec.boot_disk_size_gb) == ("pd-ssd", 200)
    assert spec.scheduling.timeout == timedelta(hours=12)
    assert spec.service_account == f"fingerspell-vertex@{PROJECT}.iam.gserviceaccount.com"
    env = {item.name: item.value for item in container.env}
    assert env["FINGERSPELL_MLFLOW_TRACKING_URI"] == MLFLOW_URI
    assert env["PREFECT__FLOW_RUN_ID"] == str(flow_run.id)
    assert env["FINGERSPELL_HOME"].startswith("/tmp/")
    # The worker's own PREFECT_HOME (a path on its machine) is replaced by one in the image.
    assert env["PREFECT_HOME"] == "/tmp/fingerspell/prefect"
    assert not [name for name in env if SECRET_NAME.search(name)], "secrets in plain env"
    assert not set(WORKER_SECRETS.values()) & set(env.values())
    assert "@" not in MLFLOW_URI.split("//", 1)[1], "no credentials inside the tracking URL"
    assert dict(job.labels)["prefect-io_flow-run-id"] == str(flow_run.id)
