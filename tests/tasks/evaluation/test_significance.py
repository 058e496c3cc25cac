import math

import pytest

from tasks.evaluation.significance import bootstrap_interval, mcnemar


def test_the_interval_holds_the_share_and_narrows_with_more_images():
    small = bootstrap_interval([True] * 60 + [False] * 12)
    large = bootstrap_interval([True] * 600 + [False] * 120)
    assert small.value == pytest.approx(60 / 72)
    assert small.low < small.value < small.high
    assert (large.high - large.low) < (small.high - small.low)
    # 72 images at 0.83: a 95% interval about ±0.09 wide, several images either way.
    assert 0.06 < small.value - small.low < 0.12


def test_the_interval_is_the_same_for_the_same_images():
    flags = [i % 3 != 0 for i in range(144)]
    assert bootstrap_interval(flags) == bootstrap_interval(flags)


def test_no_images_give_no_interval():
    empty = bootstrap_interval([])
    assert empty.n == 0 and math.isnan(empty.low) and math.isnan(empty.value)


def test_one_image_more_is_not_a_win():
    reference = [True] * 100 + [False] * 44
    candidate = list(reference)
    candidate[100] = True  # one more image right
    test = mcnemar(candidate, reference)
    assert (test.candidate_only, test.reference_only) == (1, 0)
    assert test.p_value == 1.0 and not test.better(0.05)


def test_many_more_images_on_the_same_images_is_a_win():
    reference = [True] * 100 + [False] * 44
    candidate = [True] * 130 + [False] * 14
    test = mcnemar(candidate, reference)
    assert test.candidate_only == 30 and test.reference_only == 0
    assert test.p_value < 1e-6 and test.better(0.05)
    assert not mcnemar(reference, candidate).better(0.05), "a loss is never a win"


def test_the_exact_p_value_matches_the_binomial():
    # 8 wins against 1 loss: 2 * P(X <= 1), X ~ Bin(9, 1/2) = 2 * 10/512.
    candidate = [True] * 8 + [False] * 1 + [True] * 5
    reference = [False] * 8 + [True] * 1 + [True] * 5
    assert mcnemar(candidate, reference).p_value == pytest.approx(20 / 512)


def test_a_paired_test_needs_the_same_images():
    with pytest.raises(ValueError, match="same images"):
        mcnemar([True, False], [True])
