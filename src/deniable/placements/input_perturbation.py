"""Input perturbation: local DP on each record's features before any training (Warner 1965;
Duchi, Jordan & Wainwright 2013; Dwork & Roth 2014, §3).

Each record (row) is reported independently, so the guarantee is ``local-dp``: for any two values
x, x' the record could take, the distributions of its report differ by at most e^ε (plus δ for the
Gaussian). The unit is the record; whatever is computed from the reports (a model trained on them)
is post-processing. A person with several records gets the composition of their records' events.

- :func:`laplace_features`: clamp each feature j to [low_j, high_j], add Laplace(b) to each. Two
  clamped records differ by at most Δ₁ = Σ_j (high_j − low_j) in L1, so a record's report is
  Δ₁/b-DP. Event per record: ``LaplaceEvent(scale=b, sensitivity=Δ₁, replace_one_sensitivity=Δ₁,
  dimension=d)`` (the same Δ₁ under either relation: it is the box's diameter).
- :func:`gaussian_features`: clamp as above, add N(0, σ²); L2 diameter Δ₂ = ‖high − low‖₂, event
  ``GaussianEvent(σ, Δ₂, replace_one_sensitivity=Δ₂)``; σ from (ε, δ) by the analytic Gaussian
  (Balle & Wang 2018).
- :func:`randomize_categories`: k_j-ary randomized response on each categorical column j with
  ε_j; a record's event is the composition over its columns, ``ComposedEvent`` of
  ``RandomizedResponseEvent(ε_j, k_j)``.

The noisy features are floating point (:func:`~deniable.mechanisms.laplace_unsafe_float`,
:func:`~deniable.mechanisms.gaussian_unsafe_float`), not protected against the low-order-bit
attack of Mironov (2012); round the reports to a coarse grid before publishing them bit-exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from deniable.errors import InvalidParameterError, check_delta, check_positive
from deniable.events import ComposedEvent, GaussianEvent, LaplaceEvent, Neighbouring, PrivacyEvent
from deniable.mechanisms import (
    RandomSource,
    analytic_sigma,
    gaussian_unsafe_float,
    laplace_scale,
    laplace_unsafe_float,
    randomized_response,
)
from deniable.mechanisms._inputs import float_values, source
from deniable.placements.guarantee import Guarantee, PrivacyClaim, claim

Detail = float | int | str
RECORD_UNIT = "one record (row), local"


@dataclass(frozen=True, eq=False)
class LocalRelease:
    """Perturbed records with the event of one record's report (local DP)."""

    value: NDArray[np.float64] | NDArray[np.int64]
    event: PrivacyEvent
    secure: bool
    mechanism: str
    guarantee: Guarantee = Guarantee.LOCAL_DP
    details: dict[str, Detail] = field(default_factory=dict)

    def epsilon(self, delta: float, *, accountant: str = "pld") -> PrivacyClaim:
        """Per-record local-DP ε (relation: the record takes another value)."""
        return claim(
            self.event,
            delta,
            guarantee=self.guarantee,
            unit=RECORD_UNIT,
            accountant=accountant,
            relation=Neighbouring.REPLACE_ONE,
        )


def clamp_features(
    features: ArrayLike, low: float | ArrayLike, high: float | ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(records clamped to [low, high] per feature, as (n, d); low and high as (d,))."""
    x = float_values("features", features)
    if x.ndim < 2:
        raise InvalidParameterError("features", x.shape, "(records, *feature_shape)")
    flat = x.reshape(x.shape[0], -1)
    d = flat.shape[1]
    lo = np.broadcast_to(float_values("low", low), (d,)).astype(float)
    hi = np.broadcast_to(float_values("high", high), (d,)).astype(float)
    if np.any(hi <= lo):
        raise InvalidParameterError("high", "some feature", "> low for every feature")
    return np.clip(flat, lo, hi), lo, hi


def laplace_features(
    features: ArrayLike,
    *,
    low: float | ArrayLike,
    high: float | ArrayLike,
    epsilon: float,
    rng: RandomSource | None = None,
) -> LocalRelease:
    """Clamp to [low, high] and add Laplace(Δ₁/ε) to every feature: ε-local-DP per record."""
    eps = check_positive("epsilon", epsilon)
    x = float_values("features", features)
    clamped, lo, hi = clamp_features(x, low, high)
    diameter = float(np.sum(hi - lo))
    release = laplace_unsafe_float(
        clamped, epsilon=eps, sensitivity=diameter, replace_one_sensitivity=diameter, rng=rng
    )
    event = LaplaceEvent(
        scale=laplace_scale(epsilon=eps, sensitivity=diameter),
        sensitivity=diameter,
        replace_one_sensitivity=diameter,
        dimension=clamped.shape[1],
    )
    return LocalRelease(
        value=release.value.reshape(x.shape),
        event=event,
        secure=release.secure,
        mechanism="laplace_features",
        details={"epsilon": eps, "l1_diameter": diameter, "scale": event.scale},
    )


def gaussian_features(
    features: ArrayLike,
    *,
    low: float | ArrayLike,
    high: float | ArrayLike,
    epsilon: float,
    delta: float,
    rng: RandomSource | None = None,
) -> LocalRelease:
    """Clamp to [low, high] and add N(0, σ²) with σ the analytic Gaussian's for (ε, δ) and L2
    diameter Δ₂ = ‖high − low‖₂: (ε, δ)-local-DP per record."""
    eps = check_positive("epsilon", epsilon)
    dlt = check_delta(delta)
    x = float_values("features", features)
    clamped, lo, hi = clamp_features(x, low, high)
    diameter = float(np.linalg.norm(hi - lo))
    sigma = analytic_sigma(epsilon=eps, delta=dlt, sensitivity=diameter)
    release = gaussian_unsafe_float(
        clamped, sigma=sigma, sensitivity=diameter, replace_one_sensitivity=diameter, rng=rng
    )
    event = GaussianEvent(sigma=sigma, sensitivity=diameter, replace_one_sensitivity=diameter)
    return LocalRelease(
        value=release.value.reshape(x.shape),
        event=event,
        secure=release.secure,
        mechanism="gaussian_features",
        details={"epsilon": eps, "delta": dlt, "l2_diameter": diameter, "sigma": sigma},
    )


def randomize_categories(
    codes: ArrayLike,
    *,
    num_categories: Sequence[int],
    epsilon: Sequence[float] | float,
    rng: RandomSource | None = None,
) -> LocalRelease:
    """k_j-ary randomized response on column j of integer ``codes`` (records × columns) with
    ε_j (one ε for all columns, or one per column); a record's report composes its columns."""
    c = np.asarray(codes)
    if c.ndim != 2 or c.shape[0] < 1 or c.dtype.kind not in "iu":
        raise InvalidParameterError("codes", getattr(c, "shape", c), "(records, columns) integers")
    m = c.shape[1]
    ks = list(num_categories)
    eps = [float(epsilon)] * m if isinstance(epsilon, int | float) else [float(e) for e in epsilon]
    if len(ks) != m or len(eps) != m:
        raise InvalidParameterError("num_categories/epsilon", (len(ks), len(eps)), f"{m} entries")
    src = source(rng)
    out = np.empty_like(c, dtype=np.int64)
    events: list[PrivacyEvent] = []
    for j in range(m):
        release = randomized_response(c[:, j], epsilon=eps[j], num_buckets=ks[j], rng=src)
        out[:, j] = release.value
        events.append(release.event)
    return LocalRelease(
        value=out,
        event=events[0] if m == 1 else ComposedEvent(events),
        secure=src.is_secure,
        mechanism="randomize_categories",
        details={"columns": m, "epsilon_sum": float(sum(eps))},
    )
