"""Inverse accounting: the noise that reaches a target (ε, δ), and the steps a noise level allows.

Calibration is generic root finding over any accountant (as in dp_accounting): ε(σ) is
non-increasing in σ, so the smallest σ with ε(σ) ≤ target is bracketed by doubling and then
narrowed by bisection in log σ to the requested relative tolerance. The σ returned is always on the
safe side: its ε, recomputed and reported, is at most the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

from deniable import accounting
from deniable.errors import (
    DeniableError,
    check_count,
    check_delta,
    check_positive,
    check_probability,
)
from deniable.events import (
    GaussianEvent,
    Neighbouring,
    PoissonSampledEvent,
    PrivacyEvent,
    SelfComposedEvent,
)

SIGMA_RANGE = (1e-3, 1e4)


@dataclass(frozen=True)
class Calibration:
    """A calibrated DP-SGD setting and the ε it actually gives."""

    noise_multiplier: float
    epsilon: float
    delta: float
    sample_rate: float
    steps: int
    accountant: str
    relation: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def dpsgd_event(noise_multiplier: float, sample_rate: float, steps: int) -> PrivacyEvent:
    """T steps of DP-SGD: Poisson-sampled Gaussian with clipping norm 1 (sensitivity 1)."""
    step = PoissonSampledEvent(sample_rate, GaussianEvent(noise_multiplier))
    return SelfComposedEvent(step, steps)


def smallest_noise(
    make_event: Callable[[float], PrivacyEvent],
    target_epsilon: float,
    delta: float,
    *,
    accountant: str = "pld",
    relation: Neighbouring = Neighbouring.ADD_REMOVE,
    rtol: float = 1e-5,
) -> tuple[float, float]:
    """The smallest noise parameter s (to relative ``rtol``) with ε(make_event(s)) ≤ target.

    Returns (s, ε at s). Raises :class:`DeniableError` when no s in SIGMA_RANGE reaches it.
    """
    check_positive("target_epsilon", target_epsilon)
    check_delta(delta)

    def eps(s: float) -> float:
        return accountant_epsilon(make_event(s), delta, accountant, relation)

    hi = 1.0
    while eps(hi) > target_epsilon:
        hi *= 2
        if hi > SIGMA_RANGE[1]:
            raise DeniableError(
                f"no noise multiplier up to {SIGMA_RANGE[1]:g} reaches epsilon {target_epsilon}; "
                "raise the target epsilon or delta, or take fewer steps"
            )
    lo = hi / 2
    while eps(lo) <= target_epsilon:
        hi, lo = lo, lo / 2
        if lo < SIGMA_RANGE[0]:
            return hi, eps(hi)
    while hi / lo - 1 > rtol:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if eps(mid) <= target_epsilon else (mid, hi)
    return hi, eps(hi)


def accountant_epsilon(
    event: PrivacyEvent, delta: float, accountant: str, relation: Neighbouring
) -> float:
    """ε of ``event`` by the named accountant."""
    return accounting.epsilon(event, delta, accountant=accountant, relation=relation).epsilon


def noise_multiplier(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    *,
    accountant: str = "pld",
    relation: Neighbouring = Neighbouring.ADD_REMOVE,
) -> Calibration:
    """The smallest DP-SGD noise multiplier σ reaching (target ε, δ) for rate q and T steps."""
    check_probability("sample_rate", sample_rate)
    check_count("steps", steps)
    sigma, eps = smallest_noise(
        lambda s: dpsgd_event(s, sample_rate, steps),
        target_epsilon,
        delta,
        accountant=accountant,
        relation=relation,
    )
    return Calibration(sigma, eps, delta, sample_rate, steps, accountant, relation.value)


def max_steps(
    noise_multiplier: float,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    *,
    accountant: str = "pld",
    relation: Neighbouring = Neighbouring.ADD_REMOVE,
    limit: int = 10**7,
) -> Calibration:
    """The largest number of DP-SGD steps T with ε ≤ target at noise σ and rate q."""
    check_positive("noise_multiplier", noise_multiplier)
    check_positive("target_epsilon", target_epsilon)
    check_delta(delta)
    check_probability("sample_rate", sample_rate)

    def eps(t: int) -> float:
        return accountant_epsilon(
            dpsgd_event(noise_multiplier, sample_rate, t), delta, accountant, relation
        )

    if eps(1) > target_epsilon:
        raise DeniableError(
            f"even one step exceeds epsilon {target_epsilon} at noise multiplier "
            f"{noise_multiplier}; raise the noise multiplier or the target epsilon"
        )
    lo, hi = 1, 2
    while eps(hi) <= target_epsilon:
        lo, hi = hi, hi * 2
        if hi > limit:
            return Calibration(
                noise_multiplier, eps(lo), delta, sample_rate, lo, accountant, relation.value
            )
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if eps(mid) <= target_epsilon else (lo, mid)
    return Calibration(
        noise_multiplier, eps(lo), delta, sample_rate, lo, accountant, relation.value
    )


def delta_warning(delta: float, dataset_size: int | None) -> str | None:
    """A warning when δ ≥ 1/n: such a δ allows releasing one whole record in the clear."""
    if dataset_size is None:
        return None
    n = check_count("dataset_size", dataset_size)
    if delta >= 1.0 / n:
        return (
            f"warning: delta={delta:g} is >= 1/n = {1.0 / n:g} for a dataset of {n} units; "
            "such a delta permits leaking a whole record: use delta < 1/n (e.g. 1/(10 n))"
        )
    return None
