"""The typed answer of every empirical lower bound, and how to set it against the accountant's ε."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from deniable.errors import InvalidParameterError
from deniable.events import Neighbouring


@dataclass(frozen=True)
class LowerBound:
    """With probability ≥ ``confidence`` the audited mechanism is *not* (ε', ``delta``)-DP for any
    ε' < ``epsilon`` (under ``relation``) — provided the method's assumptions hold (``details``
    states them; e.g. the GDP route assumes a Gaussian trade-off curve).

    ``threshold`` is the score threshold (score ≥ threshold ⇒ "member") the bound was read at,
    or ``None`` when the method has none. ``details`` holds the counts and error-rate bounds that
    produced it, so the number can be re-derived by hand.
    """

    epsilon: float
    delta: float
    confidence: float
    method: str
    threshold: float | None = None
    relation: Neighbouring = Neighbouring.ADD_REMOVE
    details: dict[str, float | int | str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict (the relation as its string value)."""
        out = asdict(self)
        out["relation"] = self.relation.value
        return out


def compare(upper_epsilon: float, lower: LowerBound) -> dict[str, object]:
    """Put the accountant's ε (an upper bound, at the same δ) beside an empirical lower bound.

    ``consistent`` is False when the lower bound exceeds the upper one: either the implementation
    or the accounting is wrong, or a (1 − confidence)-probability failure of the test happened —
    rerun with fresh randomness before concluding. ``ratio`` = lower / upper tells how tight the
    audit is (1 = the accountant's bound is attained).
    """
    if isinstance(upper_epsilon, bool) or not isinstance(upper_epsilon, int | float):
        raise InvalidParameterError("upper_epsilon", upper_epsilon, "a number >= 0")
    if math.isnan(upper_epsilon) or upper_epsilon < 0:
        raise InvalidParameterError("upper_epsilon", upper_epsilon, "a number >= 0")
    upper = float(upper_epsilon)
    tight = 1.0 if lower.epsilon == 0 else math.inf
    ratio = lower.epsilon / upper if upper > 0 else tight  # 0 for an infinite upper bound
    return {
        "upper_epsilon": upper,
        "lower_epsilon": lower.epsilon,
        "delta": lower.delta,
        "confidence": lower.confidence,
        "method": lower.method,
        "relation": lower.relation.value,
        "gap": upper - lower.epsilon,
        "ratio": ratio,
        "consistent": lower.epsilon <= upper,
    }
