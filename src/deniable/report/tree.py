"""Any JSON-like value as a tree of display nodes, for sections whose shape the report does not
know in advance (the "beyond privacy" results, the full config).

A mapping becomes a key/value table, a list of mappings a table with one column per key, a list
of scalars one comma-separated line, a scalar its formatted text. The template renders the nodes
recursively; all text is escaped there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from deniable.report import fmt

MAX_DEPTH = 6
MAX_ROWS = 200

Kind = Literal["scalar", "mapping", "records"]


@dataclass(frozen=True)
class Node:
    """``scalar``: ``text``; ``mapping``: ``items`` (label, node); ``records``: ``columns`` and
    ``rows`` (one node per cell). ``note`` tells what was left out, if anything."""

    kind: Kind
    text: str = ""
    items: list[tuple[str, Node]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[Node]] = field(default_factory=list)
    note: str = ""


def to_node(value: object, depth: int = 0) -> Node:
    """The display tree of ``value`` (dicts, lists, tuples, scalars; anything else via str)."""
    if depth >= MAX_DEPTH and isinstance(value, Mapping | list | tuple):
        return Node("scalar", text=_short(repr(value)))
    if isinstance(value, Mapping):
        items = [(str(k), to_node(v, depth + 1)) for k, v in value.items()]
        return Node("mapping", items=items, note="" if items else "(empty)")
    if isinstance(value, list | tuple):
        return _sequence(value, depth)
    return Node("scalar", text=fmt.number(value))


def _sequence(values: Sequence[object], depth: int) -> Node:
    if values and all(isinstance(v, Mapping) for v in values):
        columns: list[str] = []
        for row in values:
            assert isinstance(row, Mapping)
            columns.extend(str(k) for k in row if str(k) not in columns)
        shown = values[:MAX_ROWS]
        rows = []
        for row in shown:
            assert isinstance(row, Mapping)
            by_name = {str(k): v for k, v in row.items()}
            rows.append([to_node(by_name.get(c), depth + 1) for c in columns])
        note = f"first {MAX_ROWS} of {len(values)} rows" if len(values) > MAX_ROWS else ""
        return Node("records", columns=columns, rows=rows, note=note)
    if any(isinstance(v, Mapping | list | tuple) for v in values):
        items = [(f"[{i}]", to_node(v, depth + 1)) for i, v in enumerate(values[:MAX_ROWS])]
        note = f"first {MAX_ROWS} of {len(values)} items" if len(values) > MAX_ROWS else ""
        return Node("mapping", items=items, note=note)
    text = ", ".join(fmt.number(v) for v in values[:MAX_ROWS])
    if len(values) > MAX_ROWS:
        text += f", … ({len(values)} in all)"
    return Node("scalar", text=text or "(empty)")


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def toml_lines(config: Mapping[str, object]) -> list[str]:
    """``config``'s set keys as TOML lines (``None`` values, which TOML cannot hold, omitted), so
    the run can be repeated with ``deniable run --config FILE``."""
    lines = []
    for key, value in config.items():
        literal = _toml_value(value)
        if literal is not None:
            lines.append(f"{key} = {literal}")
    return lines


def _toml_value(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        parts = [_toml_value(v) for v in value]
        return "[" + ", ".join(p for p in parts if p is not None) + "]"
    return json.dumps(str(value), ensure_ascii=False)
