"""Accountants: pure functions from privacy events to (ε, δ). No torch here.

Three accountants interpret the same events (:mod:`deniable.events`):

- ``pld``: privacy loss distributions, tight (:mod:`deniable.accounting.pld`);
- ``rdp``: Rényi DP / moments accountant with the improved conversion
  (:mod:`deniable.accounting.rdp`);
- ``basic``: (ε, δ) composition theorems, loose but simple (:mod:`deniable.accounting.basic`).

Use :func:`epsilon` and :func:`delta` here; they dispatch by name. What hyperparameter tuning
costs: :func:`tuning_epsilon` (the best of a random number of runs, Papernot & Steinke 2022) and
:func:`sweep_epsilon` (every run of a fixed grid composed), from
:mod:`deniable.accounting.rdp_tuning`, loaded on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

from deniable.accounting.result import EpsilonResult
from deniable.errors import InvalidParameterError, check_delta, check_positive
from deniable.events import Neighbouring, PrivacyEvent

if TYPE_CHECKING:
    from deniable.accounting.rdp_tuning import sweep_epsilon, tuning_epsilon

ACCOUNTANTS: tuple[str, ...] = ("pld", "rdp", "basic")


def _module(accountant: str) -> ModuleType:
    if accountant not in ACCOUNTANTS:
        raise InvalidParameterError("accountant", accountant, f"one of {', '.join(ACCOUNTANTS)}")
    return import_module(f"deniable.accounting.{accountant}")


def epsilon(
    event: PrivacyEvent,
    delta: float,
    *,
    accountant: str = "pld",
    relation: Neighbouring = Neighbouring.ADD_REMOVE,
) -> EpsilonResult:
    """The smallest ε the chosen accountant can prove for ``event`` at ``delta``."""
    check_delta(delta)
    fn: Callable[..., EpsilonResult] = _module(accountant).epsilon
    return fn(event, delta, relation=relation)


def delta(
    event: PrivacyEvent,
    epsilon: float,
    *,
    accountant: str = "pld",
    relation: Neighbouring = Neighbouring.ADD_REMOVE,
) -> float:
    """The smallest δ the chosen accountant can prove for ``event`` at ``epsilon``."""
    check_positive("epsilon", epsilon)
    fn: Callable[..., float] = _module(accountant).delta
    return fn(event, epsilon, relation=relation)


_LAZY = {"sweep_epsilon": "rdp_tuning", "tuning_epsilon": "rdp_tuning"}


def __getattr__(name: str) -> Any:
    """The tuning helpers, imported on first use (numpy and scipy stay unloaded until then)."""
    if name in _LAZY:
        return getattr(import_module(f"deniable.accounting.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACCOUNTANTS",
    "EpsilonResult",
    "delta",
    "epsilon",
    "sweep_epsilon",
    "tuning_epsilon",
]
