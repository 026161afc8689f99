"""PATE's noisy aggregators of teacher votes, each returning its privacy event.

Sensitivity (add/remove one privacy unit): the unit lives in exactly one teacher's partition
(:mod:`~deniable.placements.pate.partition`), so at most that teacher's vote changes, from class a
to class b: n_a drops by 1 and n_b rises by 1. The histogram moves by 2 in L1 and √2 in L2, and
max_j n_j by at most 1. Under replace-one two teachers may change, twice each (the accountants'
default replace-one sensitivity, 2Δ).

- :class:`LNMax` (Papernot et al. 2017, "Semi-supervised knowledge transfer for deep learning
  from private training data", ICLR, §3.1): argmax_j n_j + Lap(b). Laplace noise on an L1
  sensitivity-2 histogram, so each query is 2/b-DP (their (2γ, 0) with γ = 1/b); the argmax is
  post-processing. Event per query: ``LaplaceEvent(scale=b, sensitivity=2, dimension=k)``.
- :class:`GNMax` (Papernot et al. 2018, "Scalable private learning with PATE", ICLR, §4.1,
  Prop. 8): argmax_j n_j + N(0, σ²). The Gaussian mechanism on an L2 sensitivity-√2 histogram:
  RDP α·(√2)²/(2σ²) = α/σ². Event per query: ``GaussianEvent(sigma=σ, sensitivity=√2)``.
- :class:`ConfidentGNMax` (Papernot et al. 2018, Alg. 1): answer only when
  max_j n_j + N(0, σ₁²) ≥ T, then with GNMax(σ₂). The check is the Gaussian mechanism on
  max_j n_j, sensitivity 1 (the paper's threshold cost λ/(2σ₁²); also
  ``compute_rdp_data_independent_threshold`` in the authors' code): event
  ``GaussianEvent(sigma=σ₁, sensitivity=1)`` per query checked.

The ``event`` of an :class:`Aggregation` is the a-priori, data-independent one, composed
adaptively over all queries. For Confident-GNMax it charges every query's threshold check and
``max_answered`` GNMax answers (at most that many are given; by default every query may be
answered): charging only the answers that happened would make the budget depend on the data.
The smaller data-dependent costs are in :mod:`deniable.accounting.pate_rdp` (not for publication).

Noise is floating-point (:func:`~deniable.mechanisms.gaussian_unsafe_float`,
:func:`~deniable.mechanisms.laplace_unsafe_float`); only the argmax is released.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from deniable.accounting.pate_rdp import DataDependentRdp, confident_gnmax_rdp, gnmax_rdp, lnmax_rdp
from deniable.accounting.rdp import DEFAULT_ORDERS, Orders
from deniable.errors import InvalidParameterError, check_count, check_positive
from deniable.events import (
    ComposedEvent,
    GaussianEvent,
    LaplaceEvent,
    Neighbouring,
    NoOpEvent,
    PrivacyEvent,
    SelfComposedEvent,
)
from deniable.mechanisms import (
    RandomSource,
    gaussian_unsafe_float,
    laplace_scale,
    laplace_unsafe_float,
)
from deniable.mechanisms._inputs import source
from deniable.placements.guarantee import Guarantee, PrivacyClaim, claim

SQRT2 = math.sqrt(2.0)
UNANSWERED = -1

Detail = float | int | str


@dataclass(frozen=True, eq=False)
class Aggregation:
    """Noisy labels for the queries (``UNANSWERED`` = −1 where the aggregator declined), the
    ``answered`` mask, the ``checked`` mask (queries the aggregator looked at: all of them but
    for Confident-GNMax after ``max_answered`` answers) and the data-independent ``event`` of the
    whole run."""

    labels: NDArray[np.int64]
    answered: NDArray[np.bool_]
    checked: NDArray[np.bool_]
    event: PrivacyEvent
    secure: bool
    mechanism: str
    details: dict[str, Detail] = field(default_factory=dict)

    @property
    def answered_count(self) -> int:
        return int(self.answered.sum())

    def epsilon(
        self,
        delta: float,
        *,
        accountant: str = "pld",
        relation: Neighbouring = Neighbouring.ADD_REMOVE,
        unit: str = "privacy unit (one teacher partition)",
    ) -> PrivacyClaim:
        """The accountant's ε for ``event``: central DP of the private (teachers') data."""
        return claim(
            self.event,
            delta,
            guarantee=Guarantee.CENTRAL_DP,
            unit=unit,
            accountant=accountant,
            relation=relation,
        )


@dataclass(frozen=True)
class LNMax:
    """Laplace noisy max with noise scale ``scale`` = b (PATE 2017's 1/γ): 2/b-DP per query."""

    scale: float

    def __post_init__(self) -> None:
        check_positive("scale", self.scale)

    @property
    def epsilon_per_query(self) -> float:
        return 2.0 / self.scale

    def query_event(self, num_classes: int) -> PrivacyEvent:
        # the scale exactly as laplace_unsafe_float computes it from ε = 2/b
        scale = laplace_scale(epsilon=self.epsilon_per_query, sensitivity=2.0)
        return LaplaceEvent(scale=scale, sensitivity=2.0, dimension=num_classes)

    def aggregate(self, votes: NDArray[np.int64], rng: RandomSource | None = None) -> Aggregation:
        v = _votes(votes)
        src = source(rng)
        labels = np.empty(v.shape[0], dtype=np.int64)
        expected = self.query_event(v.shape[1])
        for i, row in enumerate(v):
            release = laplace_unsafe_float(
                row, epsilon=self.epsilon_per_query, sensitivity=2.0, rng=src
            )
            _check_same(release.event, expected)
            labels[i] = int(np.argmax(release.value))
        return Aggregation(
            labels=labels,
            answered=np.ones(v.shape[0], dtype=bool),
            checked=np.ones(v.shape[0], dtype=bool),
            event=_repeat(expected, v.shape[0]),
            secure=src.is_secure,
            mechanism="lnmax",
            details={"scale": self.scale, "queries": int(v.shape[0])},
        )

    def data_dependent_rdp(
        self, votes: NDArray[np.int64], aggregation: Aggregation, orders: Orders = DEFAULT_ORDERS
    ) -> DataDependentRdp:
        """Papernot et al. 2017, Thm. 3 on the actual votes. Not for publication."""
        return lnmax_rdp(_votes(votes), self.scale, orders)


@dataclass(frozen=True)
class GNMax:
    """Gaussian noisy max with noise σ = ``sigma``: α/σ²-RDP per query."""

    sigma: float

    def __post_init__(self) -> None:
        check_positive("sigma", self.sigma)

    def query_event(self, num_classes: int) -> PrivacyEvent:
        return GaussianEvent(sigma=self.sigma, sensitivity=SQRT2)

    def aggregate(self, votes: NDArray[np.int64], rng: RandomSource | None = None) -> Aggregation:
        v = _votes(votes)
        src = source(rng)
        labels = np.empty(v.shape[0], dtype=np.int64)
        expected = self.query_event(v.shape[1])
        for i, row in enumerate(v):
            labels[i] = _gnmax_one(row, self.sigma, src, expected)
        return Aggregation(
            labels=labels,
            answered=np.ones(v.shape[0], dtype=bool),
            checked=np.ones(v.shape[0], dtype=bool),
            event=_repeat(expected, v.shape[0]),
            secure=src.is_secure,
            mechanism="gnmax",
            details={"sigma": self.sigma, "queries": int(v.shape[0])},
        )

    def data_dependent_rdp(
        self, votes: NDArray[np.int64], aggregation: Aggregation, orders: Orders = DEFAULT_ORDERS
    ) -> DataDependentRdp:
        """Papernot et al. 2018, Thm. 6 + Prop. 7 on the actual votes. Not for publication."""
        return gnmax_rdp(_votes(votes), self.sigma, orders)


@dataclass(frozen=True)
class ConfidentGNMax:
    """Confident-GNMax: answer when max_j n_j + N(0, ``sigma_threshold``²) ≥ ``threshold``,
    with GNMax(``sigma``); at most ``max_answered`` answers (None: every query may be answered),
    after which the remaining queries are neither checked nor answered."""

    threshold: float
    sigma_threshold: float
    sigma: float
    max_answered: int | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.threshold):
            raise InvalidParameterError("threshold", self.threshold, "a finite number")
        check_positive("sigma_threshold", self.sigma_threshold)
        check_positive("sigma", self.sigma)
        if self.max_answered is not None:
            check_count("max_answered", self.max_answered, minimum=1)

    def threshold_event(self) -> PrivacyEvent:
        return GaussianEvent(sigma=self.sigma_threshold, sensitivity=1.0)

    def query_event(self, num_classes: int) -> PrivacyEvent:
        return GaussianEvent(sigma=self.sigma, sensitivity=SQRT2)

    def run_event(self, queries: int, num_classes: int) -> PrivacyEvent:
        """The a-priori event of ``queries`` queries: every threshold check, and
        min(``max_answered``, ``queries``) GNMax answers."""
        q = check_count("queries", queries)
        cap = q if self.max_answered is None else min(self.max_answered, q)
        parts = [_repeat(self.threshold_event(), q)]
        if cap:
            parts.append(_repeat(self.query_event(num_classes), cap))
        return ComposedEvent(parts)

    def aggregate(self, votes: NDArray[np.int64], rng: RandomSource | None = None) -> Aggregation:
        v = _votes(votes)
        src = source(rng)
        q = v.shape[0]
        cap = q if self.max_answered is None else min(self.max_answered, q)
        labels = np.full(q, UNANSWERED, dtype=np.int64)
        answered = np.zeros(q, dtype=bool)
        checked = np.zeros(q, dtype=bool)
        thr_expected, gn_expected = self.threshold_event(), self.query_event(v.shape[1])
        for i, row in enumerate(v):
            if int(answered.sum()) >= cap:
                break
            check = gaussian_unsafe_float(
                np.array([row.max()]), sigma=self.sigma_threshold, sensitivity=1.0, rng=src
            )
            _check_same(check.event, thr_expected)
            checked[i] = True
            if check.value[0] >= self.threshold:
                answered[i] = True
                labels[i] = _gnmax_one(row, self.sigma, src, gn_expected)
        return Aggregation(
            labels=labels,
            answered=answered,
            checked=checked,
            event=self.run_event(q, v.shape[1]),
            secure=src.is_secure,
            mechanism="confident_gnmax",
            details={
                "threshold": self.threshold,
                "sigma_threshold": self.sigma_threshold,
                "sigma": self.sigma,
                "queries": int(q),
                "queries_checked": int(checked.sum()),
                "answered": int(answered.sum()),
                "max_answered": int(cap),
            },
        )

    def data_dependent_rdp(
        self, votes: NDArray[np.int64], aggregation: Aggregation, orders: Orders = DEFAULT_ORDERS
    ) -> DataDependentRdp:
        """Papernot et al. 2018 data-dependent cost of the realised run: threshold checks of the
        queries checked, GNMax of those answered. Not for publication."""
        v = _votes(votes)
        checked = aggregation.checked
        return confident_gnmax_rdp(
            v[checked],
            aggregation.answered[checked],
            threshold=self.threshold,
            sigma_threshold=self.sigma_threshold,
            sigma=self.sigma,
            orders=orders,
        )


Aggregator = LNMax | GNMax | ConfidentGNMax


def _gnmax_one(
    row: NDArray[np.int64], sigma: float, src: RandomSource, expected: PrivacyEvent
) -> int:
    release = gaussian_unsafe_float(row, sigma=sigma, sensitivity=SQRT2, rng=src)
    _check_same(release.event, expected)
    return int(np.argmax(release.value))


def _repeat(event: PrivacyEvent, count: int) -> PrivacyEvent:
    if count == 0:
        return NoOpEvent()
    return event if count == 1 else SelfComposedEvent(event, count)


def _check_same(actual: PrivacyEvent, expected: PrivacyEvent) -> None:
    if actual != expected:  # the mechanism did something other than what is accounted
        raise AssertionError(f"mechanism emitted {actual!r}, accounted {expected!r}")


def _votes(votes: NDArray[np.int64]) -> NDArray[np.int64]:
    v = np.asarray(votes)
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 2 or v.dtype.kind not in "iu":
        raise InvalidParameterError(
            "votes", getattr(v, "shape", v), "an integer (queries >= 1, classes >= 2) histogram"
        )
    if np.any(v < 0):
        raise InvalidParameterError("votes", int(v.min()), "counts >= 0")
    return v.astype(np.int64)
