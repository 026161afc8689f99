"""Privacy events: what a mechanism did, as plain frozen data. No math, no torch.

A mechanism (or the trainer) returns an event with its output; an accountant
(:mod:`deniable.accounting`) interprets the event. Events are checked on construction, so an event
that exists is well-formed. The neighbouring relation is not part of an event: it is chosen when
the event is accounted (add/remove-one by default, see :class:`Neighbouring`).

Sensitivities are stated for the add/remove-one relation (the bound on one unit's contribution,
e.g. the clipping norm C for a sum of clipped gradients). Under replace-one the same sum moves by
up to 2C, which is what the accountants use unless the event states its own
``replace_one_sensitivity`` (e.g. a mean over a fixed public count m, sensitivity 1/m).

Modelled on dp_accounting's ``DpEvent`` family (Google), which this mirrors in spirit.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from deniable.errors import (
    InvalidParameterError,
    check_count,
    check_positive,
    check_probability,
)


class Neighbouring(StrEnum):
    """Which datasets count as neighbours.

    ``ADD_REMOVE``: D' = D with one unit added or removed (the default; Poisson sampling's
    natural relation). ``REPLACE_ONE``: D' = D with one unit's record replaced (fixed-size
    datasets; sampling without replacement).
    """

    ADD_REMOVE = "add_remove"
    REPLACE_ONE = "replace_one"


class PrivacyEvent:
    """Base class of all events."""

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description of the event (type name and fields, recursively)."""
        out: dict[str, object] = {"type": type(self).__name__}
        for key, value in vars(self).items():
            if isinstance(value, PrivacyEvent):
                out[key] = value.to_dict()
            elif isinstance(value, tuple):
                out[key] = [v.to_dict() if isinstance(v, PrivacyEvent) else v for v in value]
            else:
                out[key] = value
        return out


def _replace_sensitivity(sensitivity: float, replace_one: float | None) -> float | None:
    if replace_one is None:
        return None
    return check_positive("replace_one_sensitivity", replace_one)


@dataclass(frozen=True)
class NoOpEvent(PrivacyEvent):
    """Nothing data-dependent was released."""


@dataclass(frozen=True)
class NonPrivateEvent(PrivacyEvent):
    """Something was released without a privacy guarantee: ε is infinite."""


@dataclass(frozen=True)
class GaussianEvent(PrivacyEvent):
    """Added N(0, sigma²) noise to each coordinate of a query with L2 sensitivity ``sensitivity``.

    ``sensitivity`` is for add/remove-one; replace-one uses ``replace_one_sensitivity`` or, when
    it is None, 2·sensitivity (a sum of contributions each bounded by C moves by up to 2C).
    """

    sigma: float
    sensitivity: float = 1.0
    replace_one_sensitivity: float | None = None

    def __post_init__(self) -> None:
        check_positive("sigma", self.sigma)
        check_positive("sensitivity", self.sensitivity)
        _replace_sensitivity(self.sensitivity, self.replace_one_sensitivity)

    def noise_multiplier(self, relation: Neighbouring = Neighbouring.ADD_REMOVE) -> float:
        """σ divided by the sensitivity under ``relation``."""
        return self.sigma / sensitivity_under(self, relation)


@dataclass(frozen=True)
class DiscreteGaussianEvent(PrivacyEvent):
    """Added discrete Gaussian noise N_Z(0, sigma²) (Canonne, Kamath & Steinke 2020) to each of
    ``dimension`` coordinates of an integer query with L2 sensitivity ``sensitivity``.

    Unlike the continuous Gaussian, the discrete one is not rotation invariant: for
    ``dimension`` > 1 only its ½(Δ/σ)²-zCDP bound is known to hold, and accountants that model
    the one-dimensional distribution exactly must not use it.
    """

    sigma: float
    sensitivity: float = 1.0
    replace_one_sensitivity: float | None = None
    dimension: int = 1

    def __post_init__(self) -> None:
        check_positive("sigma", self.sigma)
        check_positive("sensitivity", self.sensitivity)
        _replace_sensitivity(self.sensitivity, self.replace_one_sensitivity)
        check_count("dimension", self.dimension)


@dataclass(frozen=True)
class LaplaceEvent(PrivacyEvent):
    """Added Laplace(0, scale) noise to each of ``dimension`` coordinates of a query with L1
    sensitivity ``sensitivity``.

    This is ε-DP with ε = sensitivity/scale (Dwork et al. 2006). For ``dimension`` > 1 the
    accountants use only this pure-DP bound.
    """

    scale: float
    sensitivity: float = 1.0
    replace_one_sensitivity: float | None = None
    dimension: int = 1

    def __post_init__(self) -> None:
        check_positive("scale", self.scale)
        check_positive("sensitivity", self.sensitivity)
        _replace_sensitivity(self.sensitivity, self.replace_one_sensitivity)
        check_count("dimension", self.dimension)


@dataclass(frozen=True)
class DiscreteLaplaceEvent(PrivacyEvent):
    """Added discrete Laplace noise, P(x) ∝ exp(-|x|/scale) on the integers, to each of
    ``dimension`` coordinates of an integer query with L1 sensitivity ``sensitivity``:
    ε = sensitivity/scale. For ``dimension`` > 1 the accountants use only this pure-DP bound."""

    scale: float
    sensitivity: float = 1.0
    replace_one_sensitivity: float | None = None
    dimension: int = 1

    def __post_init__(self) -> None:
        check_positive("scale", self.scale)
        check_positive("sensitivity", self.sensitivity)
        _replace_sensitivity(self.sensitivity, self.replace_one_sensitivity)
        check_count("dimension", self.dimension)


@dataclass(frozen=True)
class RandomizedResponseEvent(PrivacyEvent):
    """k-ary randomized response: keep the true value with probability e^ε/(e^ε + k − 1),
    else report one of the other k − 1 values uniformly (Warner 1965; Kairouz et al. 2016).

    ε-DP with respect to changing one individual's value; the same bound is used under
    add/remove, where the individual's report is what is added or removed.
    """

    epsilon: float
    num_buckets: int = 2

    def __post_init__(self) -> None:
        check_positive("epsilon", self.epsilon)
        check_count("num_buckets", self.num_buckets, minimum=2)


@dataclass(frozen=True)
class PureDpEvent(PrivacyEvent):
    """A mechanism proved ε-DP by its construction, e.g. the exponential mechanism with
    utility sensitivity Δu sampling ∝ exp(ε·u/(2Δu)). The producing mechanism computes
    ``epsilon``."""

    epsilon: float

    def __post_init__(self) -> None:
        check_positive("epsilon", self.epsilon)


@dataclass(frozen=True)
class PoissonSampledEvent(PrivacyEvent):
    """Ran ``event`` on a subsample that holds each unit independently with probability
    ``sample_rate`` (Poisson sampling). Amplification is stated for add/remove-one."""

    sample_rate: float
    event: PrivacyEvent

    def __post_init__(self) -> None:
        check_probability("sample_rate", self.sample_rate)
        _check_event("event", self.event)


@dataclass(frozen=True)
class SampledWithoutReplacementEvent(PrivacyEvent):
    """Ran ``event`` on a uniformly random subset of exactly ``sample_size`` of the
    ``source_size`` units (fixed-size batches; shuffling). Amplification is stated for
    replace-one (Wang, Balle & Kasiviswanathan 2019)."""

    source_size: int
    sample_size: int
    event: PrivacyEvent

    def __post_init__(self) -> None:
        check_count("source_size", self.source_size)
        check_count("sample_size", self.sample_size)
        if self.sample_size > self.source_size:
            raise InvalidParameterError(
                "sample_size", self.sample_size, f"<= source_size ({self.source_size})"
            )
        _check_event("event", self.event)


@dataclass(frozen=True)
class ComposedEvent(PrivacyEvent):
    """Ran each event in ``events`` (adaptively, in order) on the same dataset."""

    events: tuple[PrivacyEvent, ...]

    def __init__(self, events: Sequence[PrivacyEvent]) -> None:
        object.__setattr__(self, "events", tuple(events))
        for i, event in enumerate(self.events):
            _check_event(f"events[{i}]", event)


@dataclass(frozen=True)
class SelfComposedEvent(PrivacyEvent):
    """Ran ``event`` ``count`` times (adaptively) on the same dataset, e.g. T steps of DP-SGD."""

    event: PrivacyEvent
    count: int

    def __post_init__(self) -> None:
        _check_event("event", self.event)
        check_count("count", self.count)


@dataclass(frozen=True)
class RepeatAndSelectEvent(PrivacyEvent):
    """Ran ``event`` K times on the same dataset, K random, and released only the best run
    (hyperparameter tuning by random search; Papernot & Steinke 2022, ICLR).

    K is Poisson with mean ``mean_repetitions`` when ``shape`` is None (``"poisson"`` and
    ``math.inf``, dp-accounting's spelling, mean the same and are stored as None; K = 0 releases
    nothing), else truncated negative binomial with shape η = ``shape`` ≥ 0 and mean
    ``mean_repetitions`` (η = 0 logarithmic, η = 1 geometric; K ≥ 1). ``mean_repetitions`` ≥ 1.
    Mirrors dp-accounting's ``RepeatAndSelectDpEvent(event, mean, shape)``.

    "Best" must be judged by a score that is part of each run's private output (e.g. accuracy on
    public data, or a noisy score accounted in ``event``); the other runs' outputs stay secret.
    ``event`` bounds every run: when candidates differ, the most expensive one.
    """

    event: PrivacyEvent
    mean_repetitions: float
    shape: float | str | None = None  # stored as a float η, or None for Poisson

    def __post_init__(self) -> None:
        _check_event("event", self.event)
        mean = self.mean_repetitions
        if not _is_real(mean) or not math.isfinite(mean) or mean < 1:
            raise InvalidParameterError("mean_repetitions", mean, "a finite number >= 1")
        object.__setattr__(self, "shape", _repetition_shape(self.shape))


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _repetition_shape(shape: object) -> float | None:
    """None for Poisson ("poisson", inf), else the truncated negative binomial's η as a float."""
    if shape is None or shape == "poisson":
        return None
    if _is_real(shape):
        value = float(shape)  # type: ignore[arg-type]
        if value == math.inf:
            return None
        if math.isfinite(value) and value >= 0:
            return value
    raise InvalidParameterError(
        "shape", shape, 'None or "poisson", or a finite number >= 0 (negative binomial η)'
    )


def sensitivity_under(
    event: GaussianEvent | DiscreteGaussianEvent | LaplaceEvent | DiscreteLaplaceEvent,
    relation: Neighbouring,
) -> float:
    """The event's sensitivity under ``relation`` (see the module docstring)."""
    if relation is Neighbouring.ADD_REMOVE:
        return event.sensitivity
    if event.replace_one_sensitivity is not None:
        return event.replace_one_sensitivity
    return 2.0 * event.sensitivity


def _check_event(name: str, value: object) -> None:
    if not isinstance(value, PrivacyEvent):
        raise InvalidParameterError(name, value, "a PrivacyEvent")


def event_from_dict(data: dict[str, object]) -> PrivacyEvent:
    """Rebuild an event from :meth:`PrivacyEvent.to_dict` output (checkpoints, ledgers).

    Unknown types or fields raise :class:`InvalidParameterError`, so a corrupted record can
    never silently become a different (weaker) event.
    """
    kinds: dict[str, type[PrivacyEvent]] = {cls.__name__: cls for cls in _EVENT_TYPES}
    name = data.get("type")
    if not isinstance(name, str) or name not in kinds:
        raise InvalidParameterError("event type", name, f"one of {', '.join(sorted(kinds))}")
    fields = {k: v for k, v in data.items() if k != "type"}
    if name == "ComposedEvent":
        inner = fields.get("events")
        if not isinstance(inner, list):
            raise InvalidParameterError("ComposedEvent.events", inner, "a list of events")
        return ComposedEvent([event_from_dict(e) for e in inner])
    if isinstance(fields.get("event"), dict):
        fields["event"] = event_from_dict(fields["event"])  # type: ignore[arg-type]
    try:
        return kinds[name](**fields)
    except TypeError as exc:
        raise InvalidParameterError(f"{name} fields", sorted(fields), "the event's fields") from exc


_EVENT_TYPES: tuple[type[PrivacyEvent], ...] = (
    NoOpEvent,
    NonPrivateEvent,
    GaussianEvent,
    DiscreteGaussianEvent,
    LaplaceEvent,
    DiscreteLaplaceEvent,
    RandomizedResponseEvent,
    PureDpEvent,
    PoissonSampledEvent,
    SampledWithoutReplacementEvent,
    ComposedEvent,
    SelfComposedEvent,
    RepeatAndSelectEvent,
)
