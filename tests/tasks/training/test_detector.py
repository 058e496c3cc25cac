"""Training task: recipe keys, and a killed training that resumes from its checkpoint."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tasks.training.detector import DONE_MARKER, TrainConfig, train
from tasks.training.profiles import PRETRAINED, PROFILES, get_profile

REPO = Path(__file__).resolve().parents[3]


def test_profiles_are_valid_recipes_and_unknown_is_clear():
    assert {"smoke", "demo", "cpu", "gpu", "scratch"} <= set(PROFILES)
    # Architectures are yaml files; the weights they start from are a separate input.
    assert all(p.model.endswith(".yaml") for p in PROFILES.values())
    with pytest.raises(ValueError, match="smoke"):
        get_profile("nope")


def test_every_stage_starts_from_the_same_pretrained_family_except_scratch():
    for name in ("smoke", "demo", "cpu", "gpu"):
        recipe = PROFILES[name]
        assert recipe.weights == PRETRAINED, name
        assert recipe.classifier is None or recipe.classifier.weights == PRETRAINED, name
    cpu, gpu = PROFILES["cpu"], PROFILES["gpu"]
    assert (gpu.model, gpu.classifier.model) == (cpu.model, cpu.classifier.model)
    assert gpu.time_hours is None and gpu.epochs >= 100, "a GPU trains by epochs"
    scratch = PROFILES["scratch"]
    assert scratch.weights is None and scratch.classifier.weights is None


def test_demo_is_the_cpu_recipe_within_ten_minutes():
    demo, cpu = PROFILES["demo"], PROFILES["cpu"]
    # The stages train side by side, so the longer one is the training's wall time.
    assert max(demo.time_hours, demo.classifier.time_hours) * 60 <= 10
    budgets = {"time_hours"}
    assert demo.model_dump(exclude=budgets | {"classifier"}) == cpu.model_dump(
        exclude=budgets | {"classifier"}
    )
    assert demo.classifier.model_dump(exclude=budgets) == cpu.classifier.model_dump(exclude=budgets)


def test_cpu_profile_trains_within_two_hours_on_two_cores():
    cpu = PROFILES["cpu"]
    # One core: the detector, then the extra classifiers; the other: the first classifier.
    one_core = cpu.time_hours + sum(m.time_hours for m in cpu.extra_classifiers)
    assert max(one_core, cpu.classifier.time_hours) <= 2.0
    seeds = [cpu.classifier.seed, *(m.seed for m in cpu.extra_classifiers)]
    assert len(set(seeds)) == len(seeds), "ensemble members must be trained apart"


def test_recipe_key_ignores_placement_but_not_recipe():
    base = TrainConfig(model="yolo11n.yaml", epochs=3)
    assert base.key("d1") == base.model_copy(update={"workers": 7, "device": "cpu"}).key("d1")
    assert base.key("d1") != base.key("d2")
    assert base.key("d1") != base.model_copy(update={"epochs": 4}).key("d1")
    # Other starting weights (another file behind the same name) make another run.
    assert base.key("d1", "a" * 64) != base.key("d1", "b" * 64) != base.key("d1")


def test_ensemble_members_need_a_classifier_cut_alike_and_leave_the_detector_key():
    from tasks.training.classifier_config import ClassifierConfig

    first = ClassifierConfig(pad=0.2)
    with pytest.raises(ValueError, match="need a classifier"):
        TrainConfig(extra_classifiers=(first,))
    with pytest.raises(ValueError, match="same pad"):
        TrainConfig(classifier=first, extra_classifiers=(ClassifierConfig(pad=0.3),))
    alone = TrainConfig(classifier=first)
    both = TrainConfig(classifier=first, extra_classifiers=(ClassifierConfig(seed=1),))
    assert alone.key("d") == both.key("d"), "members do not change the hand detector's run"


def test_config_is_frozen_and_strict():
    with pytest.raises(ValueError):
        TrainConfig(unknown=1)
    with pytest.raises(ValueError):
        PROFILES["smoke"].epochs = 5


RUN_TRAINING = """
import sys
from pathlib import Path
from tasks.training.detector import TrainConfig, train
config = TrainConfig.model_validate_json(sys.argv[1])
train(Path(sys.argv[2]), "subset", config, Path(sys.argv[3]))
"""


def _epochs_done(csv_path: Path) -> list[int]:
    if not csv_path.exists():
        return []
    with csv_path.open() as handle:
        return [int(float(row["epoch"])) for row in csv.DictReader(handle)]


def _checkpoint_after_last_row(run_dir: Path) -> bool:
    # Ultralytics writes an epoch's results.csv row before its last.pt: a kill in between
    # resumes from the epoch before and logs that epoch twice. Kill after the checkpoint.
    csv_path, last = run_dir / "results.csv", run_dir / "weights" / "last.pt"
    if not _epochs_done(csv_path) or not last.exists():
        return False
    return last.stat().st_mtime >= csv_path.stat().st_mtime


def _checkpoint_matches_last_row(run_dir: Path) -> bool:
    rows = _epochs_done(run_dir / "results.csv")
    try:
        checkpoint = torch.load(
            run_dir / "weights" / "last.pt", map_location="cpu", weights_only=False
        )
    except Exception:  # caught mid-write: not a checkpoint yet
        return False
    return bool(rows) and checkpoint["epoch"] + 1 == rows[-1]  # ultralytics counts from 0


def _kill_at_checkpoint(process: subprocess.Popen, run_dir: Path, deadline: float) -> None:
    # A fixed pause before the kill raced a fast machine, where the next epoch's row landed
    # first. Freeze the training, and kill it only while last.pt holds the newest row's epoch.
    while True:
        assert process.poll() is None, "training finished before it could be killed"
        assert time.monotonic() < deadline, "no consistent checkpoint before the deadline"
        os.killpg(process.pid, signal.SIGSTOP)
        if _checkpoint_matches_last_row(run_dir):
            os.killpg(process.pid, signal.SIGKILL)
            return
        os.killpg(process.pid, signal.SIGCONT)
        time.sleep(0.1)


@pytest.mark.slow
def test_killed_training_resumes_from_last_checkpoint(subset_yaml: Path, tmp_path: Path):
    config = TrainConfig(
        model="yolo11n.yaml", imgsz=96, epochs=4, batch=16, workers=0, patience=0,
        overrides={"plots": False},
    )  # fmt: skip
    data_yaml = subset_yaml
    runs = tmp_path / "runs"
    run_dir = runs / config.key("subset")
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_TRAINING, config.model_dump_json(), str(data_yaml), str(runs)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not _checkpoint_after_last_row(run_dir):
            assert process.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.2)
        _kill_at_checkpoint(process, run_dir, deadline)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    done_before = _epochs_done(run_dir / "results.csv")
    assert 1 <= len(done_before) < 4 and not (run_dir / DONE_MARKER).exists()

    result = train(data_yaml, "subset", config, runs)

    assert result.resumed
    assert result.run_dir == run_dir
    epochs = _epochs_done(run_dir / "results.csv")
    assert epochs == [1, 2, 3, 4], f"epoch counter must continue, got {epochs}"
    assert result.epochs_completed == 4 and result.best.exists()
    # A finished training is reused, not run again.
    again = train(data_yaml, "subset", config, runs)
    assert again == result
