"""The augmentation recipe refuses settings that would change what a letter is."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.data.augment_config import MAX_ROTATE_DEG, AugmentConfig


def test_defaults_leave_evaluation_alone():
    config = AugmentConfig()
    assert config.copies == 3 and not config.augment_eval_splits
    assert config.max_rotate_deg <= MAX_ROTATE_DEG


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"max_rotate_deg": 25}, "H/U"),
        ({"min_visibility": 0.2}, "mostly out of view"),
        ({"scale_min": 1.2, "scale_max": 1.1}, "scale_min=1.2 is larger than scale_max=1.1"),
        ({"copies": 21}, "less than or equal to 20"),
        ({"hflip": 0.5}, "Extra inputs are not permitted"),
    ],
)
def test_bad_recipes_are_refused_with_the_reason(fields: dict[str, object], fragment: str):
    with pytest.raises(ValidationError, match=fragment):
        AugmentConfig(**fields)  # type: ignore[arg-type]


def test_the_limits_themselves_are_allowed():
    config = AugmentConfig(max_rotate_deg=MAX_ROTATE_DEG, min_visibility=0.3, scale_min=1.0,
                           scale_max=1.0, copies=0)  # fmt: skip
    assert config.copies == 0
