"""What teaching buys: a simulated new signer's held-out error before and after personalize.

Needs a data home whose MLflow store holds a champion (``make demo`` leaves one); the captures
of the simulated signer (``benchmarks/simulated_signer.py``) are written there under the learner
``simulated`` (replacing earlier ones), then the personalize flow runs with its budget.

    .venv/bin/python benchmarks/personalize.py --home .fingerspell --minutes 4

Prints the table and writes ``benchmarks/results/personalize.json``. The goal: the simulated
signer's held-out error (1 - top-1) at least halves, while base valid top-1 drops by no more
than 0.02, within 10 minutes of CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

LEARNER = "simulated"


def main() -> None:
    """Simulate the signer, personalize, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=ROOT / ".fingerspell")
    parser.add_argument("--dataset", type=Path, default=None, help="default FINGERSPELL_DATASET")
    parser.add_argument("--minutes", type=float, default=4.0, help="per stage, side by side")
    parser.add_argument("--bursts", type=int, default=3, help="bursts per letter")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ["FINGERSPELL_HOME"] = str(args.home.resolve())

    from simulated_signer import make_signer

    from flows.personalize import PersonalizeParams, personalize_flow
    from tasks.core.settings import get_settings
    from tasks.data.captures import delete_learner, learner_dir

    settings = get_settings()
    dataset = args.dataset or Path(settings.dataset)
    delete_learner(settings.home, LEARNER)
    bursts = make_signer(dataset, learner_dir(settings.home, LEARNER), args.bursts, seed=args.seed)
    started = time.monotonic()
    outcome = personalize_flow(
        # reuse=False: a rerun with the same seed must train, not find the last run's model.
        PersonalizeParams(learner=LEARNER, minutes=args.minutes, source=str(dataset), reuse=False)
    )
    seconds = time.monotonic() - started
    error = {
        when: 1 - scores["learner"]
        for when, scores in (("before", outcome.before), ("after", outcome.after))
    }
    result = {
        "learner_top1_before": outcome.before["learner"],
        "learner_top1_after": outcome.after["learner"],
        "base_valid_top1_before": outcome.before["base"],
        "base_valid_top1_after": outcome.after["base"],
        "learner_error_ratio": error["after"] / error["before"] if error["before"] else None,
        "base_valid_drop": outcome.before["base"] - outcome.after["base"],
        "minutes_per_stage": args.minutes,
        "flow_seconds": round(seconds, 1),
        "bursts": len(bursts),
        "held_out_bursts": sum(burst.split == "valid" for burst in bursts),
        "champion_version": outcome.champion_version,
        "personal_version": outcome.model.version,
    }
    rows = [
        ("simulated signer top-1", outcome.before["learner"], outcome.after["learner"]),
        ("base valid top-1", outcome.before["base"], outcome.after["base"]),
    ]
    metrics = outcome.model.metrics
    for part in ("pixel", "landmark", "fused"):  # each part of a fused model, if it has them
        if f"learner_{part}_top1_before" in metrics:
            name = f"  signer, {part} alone" if part != "fused" else "  signer, fused (boxes)"
            before, after = (metrics[f"learner_{part}_top1_{w}"] for w in ("before", "after"))
            rows.append((name, before, after))
            result[f"learner_{part}_top1_before"] = metrics[f"learner_{part}_top1_before"]
            result[f"learner_{part}_top1_after"] = metrics[f"learner_{part}_top1_after"]
    print(f"{'':26}{'before':>8}{'after':>8}")
    for name, before, after in rows:
        print(f"{name:26}{before:8.3f}{after:8.3f}")
    ratio = result["learner_error_ratio"]
    print(
        f"held-out error after/before: {ratio if ratio is None else round(ratio, 3)} "
        f"(goal <= 0.5); base valid drop {result['base_valid_drop']:.3f} (goal <= 0.02); "
        f"flow {seconds / 60:.1f} min"
    )
    out = ROOT / "benchmarks" / "results" / "personalize.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
