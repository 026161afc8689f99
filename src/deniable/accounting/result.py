"""The typed answer every accountant returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from deniable.events import Neighbouring


@dataclass(frozen=True)
class EpsilonResult:
    """An (ε, δ) guarantee, the accountant that computed it and the neighbouring relation.

    ``details`` holds accountant-specific facts (e.g. the optimal RDP order, the PLD grid
    width and the error bound of the discretisation).
    """

    epsilon: float
    delta: float
    accountant: str
    relation: Neighbouring = Neighbouring.ADD_REMOVE
    details: dict[str, float | int | str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["relation"] = self.relation.value
        return out
