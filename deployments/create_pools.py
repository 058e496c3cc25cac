"""Create Fingerspell's work pools and the Prefect variables its deployments read (idempotent).

    python deployments/create_pools.py --local-only                    # the local process pool
    python deployments/create_pools.py --project my-gcp-project \\
        --mlflow-uri https://mlflow.example.com --dataset-uri gs://my-bucket/asl-letters.zip

Pools: ``local-process`` (type ``process``) and ``vertex-gpu`` (type ``vertex-ai``, prefect-gcp's
default base job template with GPU defaults and a longer run-time limit). Variables: the
``fingerspell_*`` values that ``prefect.yaml``'s Vertex deployments read at ``prefect deploy``.
An existing variable keeps its value unless this run is given one (option or environment), so
edits made in the Prefect UI survive a re-run. Talks to the server at ``PREFECT_API_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
from collections.abc import Sequence
from string import Formatter
from typing import Any

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import (
    VariableCreate,
    VariableUpdate,
    WorkPoolCreate,
    WorkPoolUpdate,
)
from prefect.exceptions import ObjectAlreadyExists

LOCAL_POOL = "local-process"
VERTEX_POOL = "vertex-gpu"

# Variable name → (environment variable that overrides it, default). ``{project}`` and
# ``{region}`` are filled in from the options.
VARIABLES: dict[str, tuple[str, Any]] = {
    "fingerspell_vertex_region": ("FINGERSPELL_VERTEX_REGION", "{region}"),
    "fingerspell_image_repository": (
        "FINGERSPELL_IMAGE_REPOSITORY",
        "{region}-docker.pkg.dev/{project}/fingerspell/train",
    ),
    "fingerspell_vertex_service_account": (
        "FINGERSPELL_VERTEX_SERVICE_ACCOUNT",
        "fingerspell-vertex@{project}.iam.gserviceaccount.com",
    ),
    "fingerspell_vertex_machine_type": ("FINGERSPELL_VERTEX_MACHINE_TYPE", "g2-standard-8"),
    "fingerspell_vertex_accelerator_type": ("FINGERSPELL_VERTEX_ACCELERATOR_TYPE", "NVIDIA_L4"),
    "fingerspell_vertex_accelerator_count": ("FINGERSPELL_VERTEX_ACCELERATOR_COUNT", 1),
    "fingerspell_vertex_boot_disk_gb": ("FINGERSPELL_VERTEX_BOOT_DISK_GB", 200),
    "fingerspell_vertex_max_run_hours": ("FINGERSPELL_VERTEX_MAX_RUN_HOURS", 12),
    "fingerspell_mlflow_tracking_uri": ("FINGERSPELL_VERTEX_MLFLOW_TRACKING_URI", "{mlflow_uri}"),
    "fingerspell_dataset_uri": ("FINGERSPELL_VERTEX_DATASET_URI", "{dataset_uri}"),
}

# Pool defaults (used by any deployment that does not set them) → the variable holding them.
_POOL_DEFAULTS = {
    "region": "fingerspell_vertex_region",
    "machine_type": "fingerspell_vertex_machine_type",
    "accelerator_type": "fingerspell_vertex_accelerator_type",
    "accelerator_count": "fingerspell_vertex_accelerator_count",
    "boot_disk_size_gb": "fingerspell_vertex_boot_disk_gb",
    "maximum_run_time_hours": "fingerspell_vertex_max_run_hours",
    "service_account_name": "fingerspell_vertex_service_account",
}


def variable_values(
    options: dict[str, str | None], environ: dict[str, str]
) -> tuple[dict[str, Any], set[str]]:
    """The value of every variable, and the names whose value this run was given explicitly.

    Args:
        options: ``project``, ``region``, ``mlflow_uri``, ``dataset_uri``; None when not given.
        environ: The environment (its ``FINGERSPELL_*`` entries override single variables).

    Returns:
        Values by variable name, and the names set by an option or the environment. Integers
        from the environment are converted: Vertex's schema wants ``maximum_run_time_hours``
        as an integer, not ``"12"``.
    """
    project = options["project"] or environ.get("GOOGLE_CLOUD_PROJECT") or "your-gcp-project"
    fill = {
        "project": project,
        "region": options["region"] or "us-central1",
        "mlflow_uri": options["mlflow_uri"] or environ.get("FINGERSPELL_MLFLOW_TRACKING_URI", ""),
        "dataset_uri": options["dataset_uri"] or f"gs://{project}-fingerspell/asl-letters.zip",
    }
    explicit = {key for key, value in options.items() if value}
    values: dict[str, Any] = {}
    given: set[str] = set()
    for name, (env_name, default) in VARIABLES.items():
        if env_name in environ:
            raw = environ[env_name]
            values[name] = int(raw) if isinstance(default, int) else raw
            given.add(name)
        elif isinstance(default, str):
            values[name] = default.format(**fill)
            # A value derived from an option counts as given when that option was.
            if {field for _, field, _, _ in Formatter().parse(default) if field} & explicit:
                given.add(name)
        else:
            values[name] = default
    return values, given


def vertex_template(values: dict[str, Any]) -> dict[str, Any]:
    """prefect-gcp's default ``vertex-ai`` base job template with Fingerspell's GPU defaults."""
    from prefect_gcp.workers.vertex import VertexAIWorker

    template = copy.deepcopy(VertexAIWorker.get_default_base_job_template())
    properties = template["variables"]["properties"]
    for field, variable in _POOL_DEFAULTS.items():
        properties[field]["default"] = values[variable]
    properties["boot_disk_type"]["default"] = "pd-ssd"
    return template


async def ensure_pool(
    client: PrefectClient, name: str, kind: str, template: dict[str, Any] | None = None
) -> None:
    """Create the pool, or bring an existing one's base job template up to date."""
    try:
        await client.create_work_pool(
            WorkPoolCreate(name=name, type=kind, base_job_template=template or {})
        )
        print(f"created work pool {name} ({kind})")
    except ObjectAlreadyExists:
        if template is not None:
            await client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
        print(f"work pool {name} exists; template {'updated' if template else 'kept'}")


async def ensure_variables(
    client: PrefectClient, values: dict[str, Any], given: set[str]
) -> dict[str, Any]:
    """Create missing variables; overwrite existing ones only with explicitly given values.

    Returns:
        The values in force on the server afterwards.
    """
    in_force: dict[str, Any] = {}
    for name, value in values.items():
        existing = await client.read_variable_by_name(name)
        if existing is None:
            await client.create_variable(VariableCreate(name=name, value=value))
        elif name in given and existing.value != value:
            await client.update_variable(VariableUpdate(name=name, value=value))
        else:
            value = existing.value
        in_force[name] = value
        print(f"variable {name} = {value!r}")
    return in_force


async def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse options, create pools and variables; return the variables in force."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local-only", action="store_true", help="Only the process pool.")
    parser.add_argument("--project", help="GCP project id (default: GOOGLE_CLOUD_PROJECT).")
    parser.add_argument("--region", help="Vertex AI region (default: us-central1).")
    parser.add_argument("--mlflow-uri", help="MLflow tracking server URL reachable from Vertex.")
    parser.add_argument("--dataset-uri", help="gs:// URL of the dataset folder or .zip.")
    args = parser.parse_args(argv)
    async with get_client() as client:
        await ensure_pool(client, LOCAL_POOL, "process")
        if args.local_only:
            return {}
        options = {k: v for k, v in vars(args).items() if k != "local_only"}
        values, given = variable_values(options, dict(os.environ))
        in_force = await ensure_variables(client, values, given)
        await ensure_pool(client, VERTEX_POOL, "vertex-ai", vertex_template(in_force))
    if not in_force["fingerspell_mlflow_tracking_uri"]:
        print("warning: set fingerspell_mlflow_tracking_uri (--mlflow-uri) before a Vertex run")
    return in_force


if __name__ == "__main__":
    asyncio.run(main())
