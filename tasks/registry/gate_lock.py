"""One promotion gate at a time: the champion is read, compared and moved under one lock.

MLflow has no compare-and-set for an alias. Two trainings that reach their gates together
would both read "no champion" (or the same champion) and both move it, so the second move is
judged against a champion that is no longer there. The gate therefore runs under:

- an ``flock`` in the data home, for every process on this machine (the embedded default:
  sqlite MLflow, Prefect without a server), released at once even by ``kill -9``; and
- on a Prefect server (``PREFECT_API_URL`` set: a team's workers, Vertex AI jobs), the global
  concurrency limit ``fingerspell-gate`` with one slot, shared by every worker of every pool.
  It is created on first use, and a lease that its holder stops renewing (a killed job) is
  given back by the server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks.core.files import run_folder_lock

log = logging.getLogger(__name__)

GATE_LIMIT = "fingerspell-gate"


@contextmanager
def gate_lock(home: Path, timeout_seconds: float = 3600) -> Iterator[None]:
    """Hold the promotion gate while the block runs.

    Args:
        home: The data home (its ``gate.lock`` serialises this machine's gates).
        timeout_seconds: How long to wait for a team server's slot before failing.

    Raises:
        TimeoutError: The team server's slot was not free within ``timeout_seconds``.
    """
    with run_folder_lock(home / "gate", "another training's promotion gate"):
        if not _prefect_server():
            yield
            return
        from prefect.concurrency.sync import concurrency

        ensure_gate_limit()
        with concurrency(GATE_LIMIT, occupy=1, timeout_seconds=timeout_seconds, strict=True):
            yield


def _prefect_server() -> bool:
    """Whether a Prefect server is configured (the team's, shared by other machines)."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def ensure_gate_limit() -> None:
    """Create the one-slot global concurrency limit of the gate unless the server has it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(GATE_LIMIT)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=GATE_LIMIT, limit=1)
            )
            log.info("created the global concurrency limit %s (1 slot)", GATE_LIMIT)
        except ObjectAlreadyExists:
            pass  # another worker created it first
