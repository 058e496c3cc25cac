"""The promotion gate: which alias a freshly registered version gets.

The gate reads **valid**, never test (test is kept for the reported figures). The champion is
scored again on the candidate's valid images, and ``champion`` moves only when the candidate
reads more of the *same* images right beyond chance: an exact McNemar test on the images the
two disagree on. With 144 valid images one image is 0.7 points of top-1, so a higher score
alone is mostly noise. Otherwise the candidate gets ``challenger``. A candidate without a valid
score never moves an alias. The champion is read again just before the alias moves: if another
run promoted in the meantime, the candidate was not compared with that one and stays
``challenger``.

A version is registered ``gate: pending`` and marked ``decided`` only once the decision is
recorded. A rerun on the same data and recipe that finds its version still pending (a kill or
an MLflow outage between registering and the alias) finishes the gate for it
(:func:`settle_registered`) instead of saying "nothing changed".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.records import ModelVersion
from tasks.evaluation.evaluate import evaluate
from tasks.evaluation.significance import mcnemar
from tasks.registry.models import (
    CHALLENGER,
    CHAMPION,
    GATE_DECIDED,
    GATE_TAG,
    MODEL_NAME,
    download_version,
    gate_pending,
    get_version,
)
from tasks.registry.tracking import with_retries

log = logging.getLogger(__name__)

GATE_METRIC = "valid_top1"
GATE_SPLIT = "valid"

# Per labelled image of the gate split (file name): whether its top-1 letter is right.
ImageResults = Mapping[str, bool]


class PromotionDecision(BaseModel):
    """What the gate decided and why; recorded on the run and the model version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    alias: str | None
    promoted: bool
    metric: str = GATE_METRIC
    candidate_score: float | None
    champion_version: str | None = None
    champion_score: float | None = None
    alpha: float
    candidate_only: int | None = Field(
        default=None, description="Gate images only the candidate reads right."
    )
    champion_only: int | None = Field(
        default=None, description="Gate images only the champion reads right."
    )
    p_value: float | None = Field(default=None, description="Exact McNemar p, two-sided.")
    reason: str


def _score(results: ImageResults | None) -> float | None:
    return sum(results.values()) / len(results) if results else None


def decide_promotion(
    candidate: ModelVersion,
    candidate_results: ImageResults | None,
    alpha: float,
    rescore: Callable[[ModelVersion], ImageResults | None],
    name: str = MODEL_NAME,
) -> PromotionDecision:
    """Move ``champion`` to the candidate only if it is better beyond chance; record why.

    Args:
        candidate: The freshly registered version.
        candidate_results: Its per-image top-1 results on the gate split (None or empty:
            evaluation failed).
        alpha: Significance level of the paired test (e.g. 0.05).
        rescore: The champion's per-image results on the same images (None: it could not be
            scored).
        name: Registered model name.

    Returns:
        The decision, also written as tags on the candidate version.
    """
    import mlflow

    client = mlflow.MlflowClient()
    candidate_score = _score(candidate_results)
    champion: ModelVersion | None = None
    champion_score: float | None = None
    paired = None
    alias: str | None = None
    if candidate_results is None or candidate_score is None:
        promoted, reason = False, "candidate has no valid score; aliases left as they were"
    else:
        champion = get_version(CHAMPION, name)
        theirs = rescore(champion) if champion is not None else None
        if champion is None:
            promoted, reason = True, "first model: becomes champion"
        elif not theirs or set(theirs) != set(candidate_results):
            promoted, reason = True, f"champion v{champion.version} could not be scored"
        else:
            images = sorted(candidate_results)
            champion_score = _score(theirs)
            paired = mcnemar([candidate_results[i] for i in images], [theirs[i] for i in images])
            promoted = paired.better(alpha)
            verdict = "better beyond chance" if promoted else "not better beyond chance"
            reason = (
                f"{GATE_METRIC} {candidate_score:.4f} vs champion v{champion.version} "
                f"{champion_score:.4f} on the same {len(images)} images: "
                f"{paired.candidate_only} read right only by the candidate, "
                f"{paired.reference_only} only by the champion; exact McNemar "
                f"p = {paired.p_value:.3g} (alpha {alpha}): {verdict}"
            )
        if promoted and (moved := _champion_moved(champion, name)) is not None:
            # Another run promoted while this one was scored: it was not compared with it.
            promoted = False
            reason += f"; but champion moved to {moved} meanwhile, so it stays challenger"
        alias = CHAMPION if promoted else CHALLENGER
        with_retries(
            lambda: client.set_registered_model_alias(name, alias, candidate.version),
            f"setting alias {alias} on v{candidate.version}",
        )
    decision = PromotionDecision(
        version=candidate.version,
        alias=alias,
        promoted=promoted,
        candidate_score=candidate_score,
        champion_version=champion.version if champion else None,
        champion_score=champion_score,
        alpha=alpha,
        candidate_only=paired.candidate_only if paired else None,
        champion_only=paired.reference_only if paired else None,
        p_value=paired.p_value if paired else None,
        reason=reason,
    )
    _record(client, name, decision)
    if alias is not None:
        log.info("promotion: v%s -> %s (%s)", candidate.version, alias, reason)
    return decision


def unchanged(version: ModelVersion, alpha: float) -> PromotionDecision:
    """The decision when nothing was trained: ``version`` already holds this data and recipe."""
    return PromotionDecision(
        version=version.version,
        alias=None,
        promoted=False,
        candidate_score=version.metrics.get(GATE_METRIC),
        alpha=alpha,
        reason=f"nothing changed: v{version.version} was trained on the same dataset "
        f"({version.dataset_id}) with the same recipe; nothing trained, aliases left as they "
        "were (reuse=false trains anew)",
    )


def not_judged(
    version: ModelVersion, candidate_score: float | None, alpha: float, name: str = MODEL_NAME
) -> PromotionDecision:
    """Record that a trial's version is judged by no gate: no alias moves, ever, for it.

    Recorded like a decision, so a rerun does not take the version for one whose gate was
    interrupted.
    """
    import mlflow

    decision = PromotionDecision(
        version=version.version,
        alias=None,
        promoted=False,
        candidate_score=candidate_score,
        alpha=alpha,
        reason=f"a trial: v{version.version} is judged by no gate and moves no alias "
        "(promote=true lets the gate judge a training)",
    )
    _record(mlflow.MlflowClient(), name, decision)
    return decision


def settle_registered(
    version: ModelVersion,
    tags: Mapping[str, str],
    alpha: float,
    score: Callable[[ModelVersion], ImageResults | None],
    rescore: Callable[[ModelVersion], ImageResults | None],
    name: str = MODEL_NAME,
) -> PromotionDecision:
    """The decision for a version already registered on the same data and recipe.

    A decided version: "nothing changed". A pending one: its gate is finished now. If the
    interrupted gate had already moved an alias to it, that alias stands and is recorded;
    otherwise the version is scored again and judged like a fresh candidate.

    Args:
        version: The version :func:`~tasks.registry.models.find_registered` found.
        tags: Its tags.
        alpha: Significance level of the paired test.
        score: The version's own per-image results on the gate split (None: not scorable).
        rescore: The champion's per-image results on the same images (see
            :func:`decide_promotion`).
        name: Registered model name.
    """
    if not gate_pending(tags):
        return unchanged(version, alpha)
    log.info("v%s was registered but its gate never decided; finishing it", version.version)
    # Asked alias by alias: a version found by search does not always list its aliases.
    held = [
        alias
        for alias in (CHAMPION, CHALLENGER)
        if (holder := get_version(alias, name)) is not None and holder.version == version.version
    ]
    if not held:
        if (results := score(version)) is None:
            # Likely passing (a download, a missing dataset): judging it "no valid score" now
            # would settle it for good; left pending, the next rerun tries again.
            return unchanged(version, alpha).model_copy(
                update={
                    "reason": f"v{version.version} was registered but never gated, and it "
                    "could not be scored now; it stays pending, aliases left as they were"
                }
            )
        return decide_promotion(version, results, alpha, rescore, name)
    import mlflow

    decision = PromotionDecision(
        version=version.version,
        alias=held[0],
        promoted=held[0] == CHAMPION,
        candidate_score=version.metrics.get(GATE_METRIC),
        alpha=alpha,
        reason=f"the interrupted gate had already given v{version.version} alias {held[0]}; "
        "recorded now, aliases left as they were",
    )
    _record(mlflow.MlflowClient(), name, decision)
    return decision


def _champion_moved(compared: ModelVersion | None, name: str) -> str | None:
    """The champion now, if it is not the one the candidate was compared with."""
    now = get_version(CHAMPION, name)
    before = compared.version if compared else None
    if (now.version if now else None) == before:
        return None
    return f"v{now.version}" if now else "no version"


def _record(client: Any, name: str, decision: PromotionDecision) -> None:
    def write() -> None:
        for key, value in decision.model_dump().items():
            if value is not None:
                tag = f"promotion.{key}"
                client.set_model_version_tag(name, decision.version, tag, str(value))
        # Last: until this tag is there, a rerun finishes the gate (see settle_registered).
        client.set_model_version_tag(name, decision.version, GATE_TAG, GATE_DECIDED)

    with_retries(write, f"recording the gate of v{decision.version}")


def scorer(
    data_yaml: Path,
    out_dir: Path,
    device: str,
    tracking_uri: str,
    what: str = "champion",
    name: str = MODEL_NAME,
) -> Callable[[ModelVersion], ImageResults | None]:
    """:func:`score_version` on ``data_yaml``'s gate split, None when a version can't be scored.

    The gate's fallback: an unreadable champion (a download that fails, a damaged file) must
    not lose the candidate, so its scores read "none" and the gate judges with what it has
    (:func:`decide_promotion`; :func:`settle_registered` leaves a version it can't score
    pending).

    Args:
        data_yaml: The candidate's dataset; its gate split is scored.
        out_dir: Where downloads and evaluations go.
        device: The evaluation device.
        tracking_uri: The MLflow store.
        what: Which version this scores, for the log ("champion", "registered").
        name: Registered model name.
    """

    def score(version: ModelVersion) -> ImageResults | None:
        try:
            return dict(score_version(version, data_yaml, out_dir, device, tracking_uri, name))
        except Exception as exc:  # any failure to score reads as "no score"
            log.warning("%s v%s could not be scored: %s", what, version.version, exc)
            return None

    return score


def score_version(
    version: ModelVersion,
    data_yaml: Path,
    out_dir: Path,
    device: str,
    tracking_uri: str,
    name: str = MODEL_NAME,
) -> ImageResults:
    """Score a registered version on the gate split of ``data_yaml``.

    The champion is scored on the candidate's own images; a version whose gate was
    interrupted is scored again on its own. A two-stage version is evaluated as its folder, a
    detector from its weights, each at its own input size. Returns its per-image top-1
    results.
    """
    out = out_dir / f"v{version.version}"
    files = download_version(version.version, tracking_uri, name, dst=out / "model")
    size = int(files.meta["imgsz"])
    report = evaluate(files.model, data_yaml, GATE_SPLIT, out, size, device=device)
    return report.image_correct
