"""What kind of guarantee a placement gives, and the typed claim every placement reports.

Noise can sit in different places, and the guarantees are not interchangeable:

- ``central-dp``: the released object (a student model, weights) is (ε, δ)-DP with respect to
  adding or removing one privacy unit (an example, or all examples of one key) of the training set.
- ``label-dp``: only the labels are private; neighbours differ in the label of one example, the
  features are public (Chaudhuri & Hsu 2011; Ghazi et al. 2021). Never comparable with or
  composable into a central-DP ε.
- ``local-dp``: each record's report is DP with respect to that record's own value (any two
  values it could take); the unit is one record (or one forward-pass input for a noise layer).

A :class:`PrivacyClaim` carries the guarantee and its unit next to the accountant's answer, so a
report can never print a label-DP or local-DP ε as if it protected whole training examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from deniable import accounting
from deniable.accounting.result import EpsilonResult
from deniable.events import Neighbouring, PrivacyEvent


class Guarantee(StrEnum):
    """The kind of DP guarantee (see the module docstring)."""

    CENTRAL_DP = "central-dp"
    LABEL_DP = "label-dp"
    LOCAL_DP = "local-dp"


@dataclass(frozen=True)
class PrivacyClaim:
    """An accountant's (ε, δ) for an event, with the kind of guarantee and its unit."""

    guarantee: Guarantee
    unit: str
    result: EpsilonResult

    @property
    def epsilon(self) -> float:
        return self.result.epsilon

    @property
    def delta(self) -> float:
        return self.result.delta

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: the accountant's result plus ``guarantee`` and ``unit``."""
        return {"guarantee": self.guarantee.value, "unit": self.unit, **self.result.to_dict()}


def claim(
    event: PrivacyEvent,
    delta: float,
    *,
    guarantee: Guarantee,
    unit: str,
    accountant: str = "pld",
    relation: Neighbouring = Neighbouring.ADD_REMOVE,
) -> PrivacyClaim:
    """Account ``event`` with :func:`deniable.accounting.epsilon` and label the answer."""
    result = accounting.epsilon(event, delta, accountant=accountant, relation=relation)
    return PrivacyClaim(Guarantee(guarantee), unit, result)
