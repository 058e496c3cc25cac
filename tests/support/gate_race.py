"""A promotion gate run in a process of its own, for the gate-lock tests.

Each process waits for the other right before it moves an alias (a barrier with a timeout):
without a lock both have judged by then, as two trainings finishing together would.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Any

RESULTS = {f"img{i:02d}.jpg": True for i in range(12)}


def judge(uri: str, home: Path, name: str, version: str, barrier: Any, locked: bool, out: Any):
    """Run the gate for ``version`` (under the gate lock if ``locked``); put its reason."""
    import mlflow

    from tasks.core.records import ModelVersion
    from tasks.registry.gate_lock import gate_lock
    from tasks.registry.promotion import decide_promotion

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    real = mlflow.MlflowClient.set_registered_model_alias

    def after_the_other(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Without the other gate (it waits for the lock), go on alone after the timeout.
        with suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=3)
        return real(self, *args, **kwargs)

    mlflow.MlflowClient.set_registered_model_alias = after_the_other
    worse = {image: False for image in RESULTS}  # any champion reads every image wrong
    with gate_lock(home) if locked else nullcontext():
        decision = decide_promotion(
            ModelVersion(name=name, version=version), RESULTS, 0.05, lambda _: worse, name
        )
    out.put((version, decision.champion_version, decision.reason))
