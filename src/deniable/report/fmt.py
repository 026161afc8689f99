"""Number formatting for the report: one function per kind of number, so a value reads the same
in every table, plot label and headline.

>>> eps(2.9999885), eps(0.0004), eps(float("inf")), delta(1e-05), percent(0.90251)
('3.000', '0.0004', '∞', '1e-05', '90.3%')
>>> number(0.178025), number(256), number(None), number(True)
('0.178', '256', '—', 'yes')
"""

from __future__ import annotations

import math
import numbers

MISSING = "—"


def eps(value: object) -> str:
    """An ε: three decimals, or three significant digits when below 0.01; ∞ for infinity."""
    x = _real(value)
    if x is None:
        return MISSING
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0 or abs(x) >= 0.01:
        return f"{x:.3f}"
    return f"{x:.3g}"


def delta(value: object) -> str:
    """A δ (or any probability that is usually tiny): three significant digits."""
    x = _real(value)
    return MISSING if x is None else f"{x:.3g}"


def percent(value: object, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage."""
    x = _real(value)
    return MISSING if x is None else f"{100 * x:.{digits}f}%"


def number(value: object) -> str:
    """Any value from a result or config: numbers to four significant digits, bools as yes/no."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    x = _real(value)
    if x is not None:
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        return f"{x:.4g}" if x != int(x) or abs(x) >= 1e6 else str(int(x))
    return str(value)


def fpr_level(value: object) -> str:
    """An FPR level key (``0.01``, ``"0.001"``, ``0.0``) as a percentage: 1%, 0.1%, 0%."""
    x = _real(value)
    if x is None:
        return str(value)
    return f"{100 * x:g}%"


def _real(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def as_float(value: object) -> float | None:
    """``value`` as a float when it is a real number (or a numeric string), else ``None``."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return _real(value)
