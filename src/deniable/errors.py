"""Errors a user can cause, each with one line that names what to change.

The CLI prints ``str(error)`` on stderr and exits non-zero; no traceback. Library callers catch
:class:`DeniableError` (a ``ValueError``) or one of its subclasses.
"""

from __future__ import annotations

import math
import numbers


class DeniableError(ValueError):
    """Base class: a problem with the caller's input, stated in one line."""


class InvalidParameterError(DeniableError):
    """A parameter is outside its allowed range; the message names the parameter and the range."""

    def __init__(self, name: str, value: object, allowed: str) -> None:
        self.name = name
        self.value = value
        self.allowed = allowed
        super().__init__(f"{name} must be {allowed}, got {value!r}")

    def __reduce__(self) -> tuple[type[InvalidParameterError], tuple[str, object, str]]:
        # Rebuilt from its own arguments, so it crosses process boundaries (worker pools, Ray)
        # intact; the default (the class called with the message alone) fails to unpickle.
        return type(self), (self.name, self.value, self.allowed)


class UnsupportedEventError(DeniableError):
    """An accountant cannot interpret (part of) a privacy event; the message names the part."""


class UnsupportedModuleError(DeniableError):
    """A model has a module DP training cannot handle safely; the message names it and says why."""


class GhostUnsupportedError(UnsupportedModuleError):
    """A trainable module has no ghost-norm rule; use per-sample gradients (vmap) for this model."""


def check_positive(name: str, value: float) -> float:
    """Return ``value`` if it is a finite number > 0, else raise :class:`InvalidParameterError`."""
    if not _is_finite(value) or value <= 0:
        raise InvalidParameterError(name, value, "a finite number > 0")
    return float(value)


def check_probability(name: str, value: float, *, closed_left: bool = False) -> float:
    """Check ``value`` in (0, 1] (sample rates) or [0, 1] when ``closed_left``."""
    ok = _is_finite(value) and (0 <= value <= 1 if closed_left else 0 < value <= 1)
    if not ok:
        raise InvalidParameterError(name, value, "in [0, 1]" if closed_left else "in (0, 1]")
    return float(value)


def check_delta(value: float, name: str = "delta") -> float:
    """Check a δ in the open interval (0, 1)."""
    if not _is_finite(value) or not 0 < value < 1:
        raise InvalidParameterError(name, value, "in the open interval (0, 1)")
    return float(value)


def check_count(name: str, value: int, minimum: int = 1) -> int:
    """Check an integer count >= ``minimum`` (steps, compositions, dataset sizes)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InvalidParameterError(name, value, f"an integer >= {minimum}")
    return int(value)


def _is_finite(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(float(value))
