"""What a difference of one image means: intervals and paired tests over one split's images.

The splits are small (144 valid, 72 test images), so one image moves top-1 by 0.7 to 1.4
points. A model is called better only when it wins on the same images by more than chance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import Field

from tasks.core.records import Record

LEVEL = 0.95
RESAMPLES = 2000


class Interval(Record):
    """A share of images and its bootstrap interval."""

    value: float
    low: float
    high: float
    n: int = Field(ge=0, description="Images the share is over.")
    level: float = LEVEL

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


class PairedTest(Record):
    """An exact McNemar test of two models on the same images."""

    candidate_only: int = Field(ge=0, description="Images only the candidate gets right.")
    reference_only: int = Field(ge=0, description="Images only the reference gets right.")
    p_value: float = Field(ge=0, le=1, description="Two-sided exact binomial p.")

    def better(self, alpha: float) -> bool:
        """Whether the candidate wins beyond chance at level ``alpha``."""
        return self.candidate_only > self.reference_only and self.p_value < alpha


def bootstrap_interval(
    correct: Sequence[bool], level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """The share of ``correct`` images with a percentile bootstrap interval over images.

    Args:
        correct: One flag per image.
        level: Coverage of the interval.
        resamples: Bootstrap resamples (seeded: the same images give the same interval).
        seed: Random seed.

    Returns:
        The share and its interval; a NaN interval when there are no images.
    """
    flags = np.asarray(correct, dtype=bool)
    if flags.size == 0:
        return Interval(value=math.nan, low=math.nan, high=math.nan, n=0, level=level)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, flags.size, size=(resamples, flags.size))
    shares = flags[draws].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(shares, [tail, 100 - tail])
    return Interval(value=float(flags.mean()), low=float(low), high=float(high), n=int(flags.size))


def mcnemar(candidate: Sequence[bool], reference: Sequence[bool]) -> PairedTest:
    """Exact McNemar test: do two models' per-image results on the same images differ?

    Args:
        candidate: Per-image correctness of the candidate.
        reference: Per-image correctness of the reference, on the same images in the same order.

    Raises:
        ValueError: If the two lists are not over the same number of images.
    """
    if len(candidate) != len(reference):
        raise ValueError(
            f"paired test needs the same images: {len(candidate)} vs {len(reference)} results"
        )
    b = sum(1 for c, r in zip(candidate, reference, strict=True) if c and not r)
    c = sum(1 for c_, r in zip(candidate, reference, strict=True) if r and not c_)
    n, k = b + c, min(b, c)
    # Under the null each discordant image is a fair coin: P(X <= k) for X ~ Bin(n, 1/2), doubled.
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n if n else 1.0
    return PairedTest(candidate_only=b, reference_only=c, p_value=min(1.0, 2 * tail))
