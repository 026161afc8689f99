"""Label DP: only the labels are private (Chaudhuri & Hsu 2011; Ghazi, Golowich, Kumar,
Manurangsi & Zhang 2021, "Deep learning with label differential privacy", NeurIPS).

Neighbouring relation: two datasets with the same features that differ in the label of one
example. The guarantee is ``label-dp`` (:class:`~deniable.placements.guarantee.Guarantee`): it says
nothing about the features, and its ε must never be reported as, or composed with, an
example-level ε.

- :func:`randomize_labels`: k-ary randomized response on every label
  (:func:`deniable.mechanisms.randomized_response`), ε-label-DP.
- :func:`rr_with_prior`: RR restricted to the top-k classes of a prior (Ghazi et al. 2021,
  Alg. 2). k is chosen per example to maximise the probability of reporting the true label under
  the prior, Σ_{top k} p_i · e^ε/(e^ε + k − 1), a function of the prior only. With the true label
  in the set, it is k-ary RR over the set; outside it, a uniform draw from the set. The uniform
  distribution is the average of the k RR distributions, so by the joint quasi-convexity of the
  Rényi divergence (van Erven & Harremoës 2014, Thm. 13) every pair of labels is at most as far
  apart as under k-ary RR: ``RandomizedResponseEvent(ε, k)``, and ε-label-DP. k = 1 reports the
  prior's top class and reveals nothing.

Each example's label is randomized once and independently, so for neighbours differing in one
label only that one report changes distribution (parallel composition): the event of a whole
release is the worst single report's, RR with the smallest k ≥ 2 used (k-ary RR's Rényi
divergences decrease with k at fixed ε).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from deniable.errors import InvalidParameterError, check_count, check_positive
from deniable.events import Neighbouring, NoOpEvent, PrivacyEvent, RandomizedResponseEvent
from deniable.mechanisms import RandomSource, randomized_response
from deniable.mechanisms._inputs import source
from deniable.placements.guarantee import Guarantee, PrivacyClaim, claim

Detail = float | int | str
LABEL_UNIT = "label of one example (features public)"


@dataclass(frozen=True, eq=False)
class LabelRelease:
    """Randomized labels with the event of one example's report (the whole release's, by
    parallel composition). ``guarantee`` is always ``label-dp``."""

    labels: NDArray[np.int64]
    event: PrivacyEvent
    secure: bool
    mechanism: str
    guarantee: Guarantee = Guarantee.LABEL_DP
    details: dict[str, Detail] = field(default_factory=dict)

    def epsilon(self, delta: float, *, accountant: str = "pld") -> PrivacyClaim:
        """Label-DP ε at ``delta`` (relation: replace one example's label)."""
        return claim(
            self.event,
            delta,
            guarantee=self.guarantee,
            unit=LABEL_UNIT,
            accountant=accountant,
            relation=Neighbouring.REPLACE_ONE,
        )


def randomize_labels(
    labels: ArrayLike, *, num_classes: int, epsilon: float, rng: RandomSource | None = None
) -> LabelRelease:
    """k-ary randomized response on every label: keep it with probability e^ε/(e^ε + k − 1)."""
    y = _labels(labels, num_classes)
    release = randomized_response(y, epsilon=epsilon, num_buckets=num_classes, rng=rng)
    return LabelRelease(
        labels=np.asarray(release.value, dtype=np.int64),
        event=release.event,
        secure=release.secure,
        mechanism="randomized_response",
        details=dict(release.details),
    )


def best_top_k(priors: ArrayLike, epsilon: float) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """For each prior row: the classes sorted by decreasing prior (ties by index) and the k that
    maximises Σ_{top k} p_i · e^ε/(e^ε + k − 1) (the smallest such k on ties)."""
    p = _priors(priors)
    eps = check_positive("epsilon", epsilon)
    order = np.argsort(-p, axis=1, kind="stable")
    mass = np.cumsum(np.take_along_axis(p, order, axis=1), axis=1)
    ks = np.arange(1, p.shape[1] + 1, dtype=float)
    keep = 1.0 / (1.0 + (ks - 1.0) * math.exp(-eps))  # e^ε/(e^ε + k − 1)
    k = np.argmax(mass * keep, axis=1) + 1
    return order.astype(np.int64), k.astype(np.int64)


def rr_with_prior(
    labels: ArrayLike,
    priors: ArrayLike,
    *,
    epsilon: float,
    rng: RandomSource | None = None,
) -> LabelRelease:
    """RRWithPrior (Ghazi et al. 2021, Alg. 2) on each label with its row of ``priors``.

    The priors must not depend on these labels (e.g. a model trained on other examples'
    randomized labels). Event: ``RandomizedResponseEvent(ε, k_min)`` for the smallest k ≥ 2 used
    (``NoOpEvent`` when every k is 1); ``details`` count the examples per k.
    """
    eps = check_positive("epsilon", epsilon)
    p = _priors(priors)
    y = _labels(labels, p.shape[1])
    if y.shape[0] != p.shape[0]:
        raise InvalidParameterError("priors", p.shape, f"one row per label ({y.shape[0]} rows)")
    src = source(rng)
    order, k = best_top_k(p, eps)
    out = order[:, 0].copy()  # k = 1: the prior's top class
    events: list[RandomizedResponseEvent] = []
    details: dict[str, Detail] = {"epsilon": eps, "count": int(y.shape[0])}
    for size in np.unique(k):
        size = int(size)
        details[f"examples_with_k_{size}"] = int(np.sum(k == size))
        if size == 1:
            continue
        rows = np.flatnonzero(k == size)
        group_event = RandomizedResponseEvent(epsilon=eps, num_buckets=size)
        events.append(group_event)  # every label of the group, inside the set or not
        top = order[rows, :size]
        hit = top == y[rows, None]
        inside = hit.any(axis=1)
        if inside.any():
            positions = np.argmax(hit[inside], axis=1)
            release = randomized_response(positions, epsilon=eps, num_buckets=size, rng=src)
            if release.event != group_event:
                raise AssertionError(f"mechanism emitted {release.event!r}, not {group_event!r}")
            out[rows[inside]] = top[inside, release.value]
        if (~inside).any():
            picks = src.integers_below_array(size, int((~inside).sum()))
            out[rows[~inside]] = top[~inside, picks]
    event: PrivacyEvent = min(events, key=lambda e: e.num_buckets) if events else NoOpEvent()
    return LabelRelease(
        labels=out.astype(np.int64),
        event=event,
        secure=src.is_secure,
        mechanism="rr_with_prior",
        details=details,
    )


def _labels(labels: ArrayLike, num_classes: int) -> NDArray[np.int64]:
    k = check_count("num_classes", num_classes, minimum=2)
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0 or y.dtype.kind not in "iu":
        raise InvalidParameterError("labels", getattr(y, "shape", y), "a 1-d integer array")
    if y.min() < 0 or y.max() >= k:
        raise InvalidParameterError("labels", int(y.max()), f"in 0..{k - 1}")
    return y.astype(np.int64)


def _priors(priors: ArrayLike) -> NDArray[np.float64]:
    p = np.asarray(priors, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2 or p.shape[0] < 1:
        raise InvalidParameterError("priors", p.shape, "a (examples, classes >= 2) array")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p.sum(axis=1) <= 0):
        raise InvalidParameterError("priors", "rows", "finite, >= 0, with a positive sum")
    return p / p.sum(axis=1, keepdims=True)
