"""The typed result every mechanism returns: the output together with what was done."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from deniable.events import PrivacyEvent

T = TypeVar("T", covariant=True)

Detail = float | int | str


@dataclass(frozen=True)
class Release(Generic[T]):
    """A mechanism's output ``value`` with the privacy ``event`` describing exactly what it did.

    ``secure`` is True when every random bit came from the OS CSPRNG
    (:meth:`RandomSource.secure`); False for a seeded, reproducible source, whose releases must
    not be published. ``mechanism`` names the function that produced it; ``details`` holds its
    calibration (nominal and effective ε, grid width, keep probability, ...).

    Account the event, never the nominal ε: ``deniable.accounting.epsilon(release.event, delta)``.
    """

    value: T
    event: PrivacyEvent
    secure: bool
    mechanism: str
    details: dict[str, Detail] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description (arrays become nested lists)."""
        value: object = self.value
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        return {
            "value": value,
            "event": self.event.to_dict(),
            "secure": self.secure,
            "mechanism": self.mechanism,
            "details": dict(self.details),
        }
