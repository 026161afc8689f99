"""What the ledger hands back: typed, frozen records with JSON-ready ``to_dict``.

Every ε here is at the dataset's δ, under its neighbouring relation, by its accountant; each
record carries those so no ε is ever reported without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from deniable.events import Neighbouring, PrivacyEvent


@dataclass(frozen=True)
class Budget:
    """A dataset's total budget: ``epsilon`` at ``delta`` under ``relation``, by ``accountant``."""

    dataset: str
    epsilon: float
    delta: float
    relation: Neighbouring
    accountant: str
    created_at: datetime

    def to_dict(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "relation": self.relation.value,
            "accountant": self.accountant,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class BudgetStatus:
    """Where a budget stands.

    ``spent_epsilon`` composes the committed spends; ``held_epsilon`` also composes the open
    reservations, which count against the budget until committed or released: it is what the
    next request is checked against. ``remaining_epsilon`` = total − held is for reading only:
    ε does not add up, so a request of that size may still be refused.
    """

    budget: Budget
    spent_epsilon: float
    held_epsilon: float
    spends: int
    open_reservations: int

    @property
    def remaining_epsilon(self) -> float:
        return max(0.0, self.budget.epsilon - self.held_epsilon)

    def to_dict(self) -> dict[str, object]:
        return {
            **self.budget.to_dict(),
            "total_epsilon": self.budget.epsilon,
            "spent_epsilon": self.spent_epsilon,
            "held_epsilon": self.held_epsilon,
            "remaining_epsilon": self.remaining_epsilon,
            "spends": self.spends,
            "open_reservations": self.open_reservations,
        }


@dataclass(frozen=True)
class SpendRecord:
    """One committed spend: ``epsilon`` is its own ε, ``cumulative_epsilon`` the composition of
    every committed spend up to and including it (in commit order, ``sequence`` 1, 2, ...)."""

    id: int
    sequence: int
    label: str
    event: PrivacyEvent
    epsilon: float
    cumulative_epsilon: float
    reserved_at: datetime
    committed_at: datetime

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "sequence": self.sequence,
            "label": self.label,
            "time": self.committed_at.isoformat(),
            "reserved_at": self.reserved_at.isoformat(),
            "epsilon": self.epsilon,
            "cumulative_epsilon": self.cumulative_epsilon,
            "event": self.event.to_dict(),
        }


@dataclass(frozen=True)
class SpendResult:
    """A recorded spend and where its dataset's budget stands right after it."""

    record: SpendRecord
    budget: Budget

    @property
    def spent_epsilon(self) -> float:
        """ε of all committed spends on the dataset, this one included."""
        return self.record.cumulative_epsilon

    @property
    def remaining_epsilon(self) -> float:
        return max(0.0, self.budget.epsilon - self.record.cumulative_epsilon)

    def to_dict(self) -> dict[str, object]:
        return {
            "dataset": self.budget.dataset,
            **self.record.to_dict(),
            "spent_epsilon": self.spent_epsilon,
            "total_epsilon": self.budget.epsilon,
            "remaining_epsilon": self.remaining_epsilon,
            "delta": self.budget.delta,
            "relation": self.budget.relation.value,
            "accountant": self.budget.accountant,
        }


@dataclass(frozen=True)
class Reservation:
    """Budget held for a request whose output is not released yet.

    ``epsilon`` is the request's own ε. The reservation counts against the budget until
    :meth:`Ledger.commit` or :meth:`Ledger.release`, or until ``expires_at`` when one was set.
    """

    id: int
    dataset: str
    label: str
    epsilon: float
    reserved_at: datetime
    expires_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "dataset": self.dataset,
            "label": self.label,
            "epsilon": self.epsilon,
            "reserved_at": self.reserved_at.isoformat(),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
        }
