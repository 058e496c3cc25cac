"""The pipeline builds the data a recipe was measured on unless told otherwise."""

from __future__ import annotations

from flows.cli import parse_params
from flows.data import DataParams
from flows.pipeline import PipelineParams, data_params
from tasks.data.augment import AugmentConfig
from tasks.training.detector import TrainConfig
from tasks.training.profiles import PROFILES


def test_cpu_profile_builds_the_export_as_it_is():
    assert PROFILES["cpu"].augment_copies == 0
    assert data_params(PipelineParams(profile="cpu")).augment.copies == 0


def test_copies_given_explicitly_win_over_the_profile():
    given = PipelineParams(profile="cpu", data=DataParams(augment=AugmentConfig(copies=3)))
    assert data_params(given).augment.copies == 3
    from_cli = parse_params(PipelineParams, ["--profile", "cpu", "--data.augment.copies", "2"])
    assert data_params(from_cli).augment.copies == 2
    # Other augment settings given on the command line are kept when the profile decides.
    seeded = parse_params(PipelineParams, ["--profile", "cpu", "--data.augment.seed", "7"])
    assert (data_params(seeded).augment.copies, data_params(seeded).augment.seed) == (0, 7)


def test_a_recipe_without_a_preference_keeps_the_data_flow_default():
    assert PROFILES["smoke"].augment_copies is None
    default = AugmentConfig().copies
    assert data_params(PipelineParams(profile="smoke")).augment.copies == default
    recipe = TrainConfig(model="yolo11n.yaml", augment_copies=5)
    assert data_params(PipelineParams(profile="smoke", train=recipe)).augment.copies == 5


def test_augment_copies_do_not_change_the_training_run_key():
    base = TrainConfig(model="yolo11n.yaml")
    assert base.key("d") == base.model_copy(update={"augment_copies": 0}).key("d")
