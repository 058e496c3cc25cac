"""The promotion gate: which alias a freshly registered version gets.

The alias ``champion`` moves only when the candidate beats the current champion, on the same
test data, by a margin; otherwise the candidate gets ``challenger``. A candidate without a
valid score never moves an alias. A champion scored on other test data is scored again
(:func:`rescore_champion`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tasks.core.records import ModelVersion
from tasks.evaluation.evaluate import evaluate
from tasks.inference.bundle import is_two_stage
from tasks.registry.models import CHALLENGER, CHAMPION, MODEL_NAME, get_version

log = logging.getLogger(__name__)


class PromotionDecision(BaseModel):
    """What the gate decided and why; recorded on the run and the model version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    alias: str | None
    promoted: bool
    metric: str
    candidate_score: float | None
    champion_version: str | None = None
    champion_score: float | None = None
    margin: float
    reason: str


def _valid(score: float | None) -> bool:
    return score is not None and math.isfinite(score)


def decide_promotion(
    candidate: ModelVersion,
    candidate_score: float | None,
    eval_dataset_id: str,
    metric: str,
    margin: float,
    rescore: Callable[[ModelVersion], float],
    name: str = MODEL_NAME,
) -> PromotionDecision:
    """Move ``champion`` to the candidate only if it is better; record the decision.

    The champion's score is taken from its tags when it was evaluated on the same test
    data (``eval_dataset_id``); otherwise ``rescore`` evaluates it on that data now.

    Args:
        candidate: The freshly registered version.
        candidate_score: Its score on ``metric`` (None or NaN: evaluation failed).
        eval_dataset_id: Id of the dataset whose test split produced the score.
        metric: Name of the compared metric (e.g. ``test_map50``); higher is better.
        margin: How much the candidate must beat the champion by.
        rescore: Scores a version on the candidate's test data.
        name: Registered model name.

    Returns:
        The decision, also written as tags on the candidate version.
    """
    import mlflow

    client = mlflow.MlflowClient()
    champion: ModelVersion | None = None
    champion_score: float | None = None
    alias: str | None = None
    if not _valid(candidate_score):
        promoted, reason = False, "candidate has no valid score; aliases left as they were"
    else:
        champion = get_version(CHAMPION, name)
        if champion is not None:
            champ_mv = client.get_model_version(name, champion.version)
            same_data = champ_mv.tags.get("eval_dataset_id") == eval_dataset_id
            stored = champion.metrics.get(metric)
            champion_score = stored if same_data and _valid(stored) else float(rescore(champion))
        if champion is None:
            promoted, reason = True, "first model: becomes champion"
        elif not _valid(champion_score):
            promoted, reason = True, f"champion v{champion.version} could not be scored"
        elif candidate_score > champion_score + margin:
            promoted = True
            reason = f"{metric} {candidate_score:.4f} > champion {champion_score:.4f} + {margin}"
        else:
            promoted = False
            reason = f"{metric} {candidate_score:.4f} <= champion {champion_score:.4f} + {margin}"
        alias = CHAMPION if promoted else CHALLENGER
        client.set_registered_model_alias(name, alias, candidate.version)
    decision = PromotionDecision(
        version=candidate.version,
        alias=alias,
        promoted=promoted,
        metric=metric,
        candidate_score=candidate_score if _valid(candidate_score) else None,
        champion_version=champion.version if champion else None,
        champion_score=champion_score if _valid(champion_score) else None,
        margin=margin,
        reason=reason,
    )
    _record(client, name, decision)
    if alias is not None:
        log.info("promotion: v%s -> %s (%s)", candidate.version, alias, reason)
    return decision


def _record(client: Any, name: str, decision: PromotionDecision) -> None:
    for key, value in decision.model_dump().items():
        if value is not None:
            client.set_model_version_tag(name, decision.version, f"promotion.{key}", str(value))


def rescore_champion(
    champion: ModelVersion,
    data_yaml: Path,
    out_dir: Path,
    metric: str,
    device: str,
    tracking_uri: str,
    name: str = MODEL_NAME,
) -> float:
    """Score ``champion`` on the test split of ``data_yaml`` (it was scored on other data).

    A two-stage champion is evaluated as its folder, a detector from its weights, each at its
    own input size. Returns ``metric`` (NaN when the report lacks it).
    """
    import mlflow

    folder = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{name}/{champion.version}", tracking_uri=tracking_uri
        )
    )
    artifacts = next(folder.rglob("metadata.json")).parent
    weights = artifacts if is_two_stage(artifacts) else next(folder.rglob("best.pt"))
    out = out_dir / f"champion-v{champion.version}"
    champion_size = int(json.loads((artifacts / "metadata.json").read_text())["imgsz"])
    report = evaluate(weights, data_yaml, "test", out, champion_size, device)
    return report.metrics_dict().get(metric, float("nan"))
