"""The privacy spent by a training run: the events that actually happened, run-length encoded.

The tracker never computes ε from settings; it composes the recorded events with an accountant
(:mod:`deniable.accounting`). Its state is plain data (events as dicts) so checkpoints carry it
and a resumed run continues the same ε curve.
"""

from __future__ import annotations

from dataclasses import dataclass

from deniable import accounting
from deniable.accounting.result import EpsilonResult
from deniable.events import (
    ComposedEvent,
    Neighbouring,
    NoOpEvent,
    PrivacyEvent,
    SelfComposedEvent,
    event_from_dict,
)


@dataclass
class _Run:
    event: PrivacyEvent
    count: int


class PrivacyTracker:
    """Records events (consecutive equal events are merged) and reports ε for a δ."""

    def __init__(self, relation: Neighbouring = Neighbouring.ADD_REMOVE, unit: str = "example"):
        self.relation = relation
        self.unit = unit
        self._runs: list[_Run] = []

    def record(self, event: PrivacyEvent, count: int = 1) -> None:
        if self._runs and self._runs[-1].event == event:
            self._runs[-1].count += count
        else:
            self._runs.append(_Run(event, count))

    @property
    def steps(self) -> int:
        return sum(run.count for run in self._runs)

    def event(self) -> PrivacyEvent:
        """Everything recorded so far as one event."""
        parts = [
            SelfComposedEvent(r.event, r.count) if r.count > 1 else r.event for r in self._runs
        ]
        if not parts:
            return NoOpEvent()
        return parts[0] if len(parts) == 1 else ComposedEvent(parts)

    def epsilon(self, delta: float, accountant: str = "pld") -> EpsilonResult:
        return accounting.epsilon(
            self.event(), delta, accountant=accountant, relation=self.relation
        )

    def state_dict(self) -> dict[str, object]:
        return {
            "relation": self.relation.value,
            "unit": self.unit,
            "runs": [{"event": r.event.to_dict(), "count": r.count} for r in self._runs],
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        relation = state["relation"]
        unit = state["unit"]
        runs = state["runs"]
        assert isinstance(relation, str) and isinstance(unit, str) and isinstance(runs, list)
        self.relation = Neighbouring(relation)
        self.unit = unit
        self._runs = [_Run(event_from_dict(r["event"]), int(r["count"])) for r in runs]
