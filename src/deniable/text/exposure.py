"""Exposure of a secret from log-perplexity scores (numpy and scipy only: no models here).

Carlini et al. 2019 ("The Secret Sharer", §4): for a canary format with randomness space R and a
secret s ∈ R, rank every candidate r ∈ R by the model's log-perplexity of the full canary,
``Px(r) = −log₂ Pr(canary filled with r)``; then

    exposure(s) = log₂|R| − log₂ rank(s),

between 0 (the secret is the least likely candidate) and log₂|R| (the most likely). A secret
the model has not seen has expected exposure about 1 bit; exposure near log₂|R| means the secret
can be extracted by search.

- :func:`exact_exposure`: the rank among all other candidates' scores (enumeration).
- :func:`skew_normal_exposure`: for |R| too large to enumerate (§4.3), fit a skew-normal
  distribution to the scores of a uniform random sample of candidates and extrapolate:
  rank(s)/|R| ≈ CDF(Px(s)), so exposure ≈ −log₂ CDF(Px(s)), capped to [0, log₂|R|].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from deniable.errors import DeniableError, check_count

EXACT = "exact"
SKEW_NORMAL = "skew-normal"


@dataclass(frozen=True)
class Exposure:
    """A secret's exposure (bits) and rank among |R| candidates, and how they were computed.

    ``rank`` is 1 for the most likely candidate; ties count half (midrank), so a model that
    scores every candidate alike gives rank (|R|+1)/2 and exposure ≈ 1 bit, not log₂|R|. For
    the skew-normal estimate ``rank`` is |R|·CDF(Px(secret)) (at least 1).
    """

    exposure: float
    rank: float
    space_size: int
    method: str
    secret_log_perplexity: float
    candidates_scored: int

    @property
    def max_exposure(self) -> float:
        return math.log2(self.space_size)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def rank_of(secret_score: float, other_scores: np.ndarray) -> float:
    """1 + the number of other candidates with lower log-perplexity (ties count half)."""
    others = np.asarray(other_scores, dtype=np.float64)
    if not np.isfinite(secret_score) or not np.all(np.isfinite(others)):
        raise DeniableError("log-perplexities must be finite; the model produced NaN or inf")
    lower = int(np.count_nonzero(others < secret_score))
    ties = int(np.count_nonzero(others == secret_score))
    return 1.0 + lower + ties / 2


def exposure_from_rank(rank: float, space_size: int) -> float:
    """log₂|R| − log₂ rank."""
    check_count("space_size", space_size)
    if not 1 <= rank <= space_size:
        raise DeniableError(f"rank must be in [1, {space_size}], got {rank}")
    return math.log2(space_size) - math.log2(rank)


def exact_exposure(secret_score: float, other_scores: np.ndarray) -> Exposure:
    """Exposure from the scores of the secret and of every other candidate (|R| − 1 of them)."""
    others = np.asarray(other_scores, dtype=np.float64).ravel()
    space = others.size + 1
    rank = rank_of(secret_score, others)
    return Exposure(exposure_from_rank(rank, space), rank, space, EXACT, float(secret_score), space)


def skew_normal_exposure(
    secret_score: float, sample_scores: np.ndarray, space_size: int
) -> Exposure:
    """Exposure extrapolated from a skew-normal fit to sampled candidates' scores (module doc).

    The fit is by maximum likelihood (``scipy.stats.skewnorm.fit``); the log-CDF keeps the far
    tail finite where the CDF underflows.
    """
    sample = np.asarray(sample_scores, dtype=np.float64).ravel()
    check_count("space_size", space_size, 2)
    if sample.size < 10:
        raise DeniableError(f"need at least 10 sampled candidates to fit, got {sample.size}")
    if not np.isfinite(secret_score) or not np.all(np.isfinite(sample)):
        raise DeniableError("log-perplexities must be finite; the model produced NaN or inf")
    if np.ptp(sample) == 0:
        # Every sampled candidate scores the same: no spread to extrapolate from.
        rank = (
            (space_size + 1) / 2
            if secret_score == sample[0]
            else (1.0 if secret_score < sample[0] else float(space_size))
        )
        exposure = exposure_from_rank(rank, space_size)
    else:
        shape, loc, scale = stats.skewnorm.fit(sample)
        log_cdf = float(stats.skewnorm.logcdf(secret_score, shape, loc, scale))
        exposure = min(math.log2(space_size), max(0.0, -log_cdf / math.log(2)))
        rank = max(1.0, space_size * 2.0 ** (-exposure))
    return Exposure(exposure, rank, space_size, SKEW_NORMAL, float(secret_score), int(sample.size))
