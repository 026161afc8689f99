"""String tables and their encoding into features: standardised numbers and one-hot categories.

A :class:`Table` holds the raw text of a delimited file, column by column, with the source line of
every row so that errors can point at it. :func:`fit_encoder` learns the encoding from the training
rows only (means, standard deviations, category lists) and :meth:`TableEncoder.encode` applies it to
any rows. Those statistics are computed from the training data **without** privacy protection: a
documented caveat of every tabular loader (the DP guarantee of training covers the model's use of
the encoded data, not the published encoder).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from deniable.data.errors import DataError

Strings = NDArray[np.str_]


@dataclass(frozen=True, eq=False)
class Table:
    """Text columns of equal length; ``lines[i]`` is row i's 1-based line in ``source``."""

    source: str
    columns: Mapping[str, Strings]
    lines: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.lines.shape[0])

    def take(self, indices: ArrayLike) -> Table:
        """The rows at ``indices`` (positions or a boolean mask)."""
        idx = np.asarray(indices)
        return Table(
            source=self.source,
            columns={name: values[idx] for name, values in self.columns.items()},
            lines=self.lines[idx],
        )

    def with_column(self, name: str, values: Strings) -> Table:
        """This table with one more (derived) column."""
        return Table(self.source, {**self.columns, name: values}, self.lines)

    def column(self, name: str) -> Strings:
        """One column; an unknown name raises :class:`DataError` listing the known ones."""
        if name not in self.columns:
            known = ", ".join(self.columns)
            raise DataError(f"{self.source} has no column {name!r}; its columns are: {known}")
        return self.columns[name]


def table_from_records(
    records: Iterable[tuple[int, Sequence[str]]], names: Sequence[str], source: str
) -> Table:
    """A :class:`Table` from ``(line_number, fields)`` records, each with ``len(names)`` fields."""
    rows: list[Sequence[str]] = []
    lines: list[int] = []
    for line, fields in records:
        if len(fields) != len(names):
            raise DataError(f"{source} line {line} has {len(fields)} fields, expected {len(names)}")
        rows.append([f.strip() for f in fields])
        lines.append(line)
    if not rows:
        raise DataError(f"{source} has no data rows")
    text = np.array(rows, dtype=np.str_)
    return Table(
        source=source,
        columns={name: text[:, j] for j, name in enumerate(names)},
        lines=np.asarray(lines, dtype=np.int64),
    )


def rows_with(table: Table, marker: str) -> NDArray[np.bool_]:
    """A mask of the rows where any column equals ``marker`` (e.g. ``'?'`` for missing)."""
    mask = np.zeros(len(table), dtype=np.bool_)
    for values in table.columns.values():
        mask |= values == marker
    return mask


def parse_numbers(table: Table, name: str) -> NDArray[np.float64]:
    """A column parsed as finite floats; the first bad value raises naming its line."""
    values = table.column(name)
    try:
        parsed = values.astype(np.float64)
    except ValueError:
        parsed = None
    if parsed is not None and np.isfinite(parsed).all():
        return parsed
    for row, text in enumerate(values):
        if str(text) == "":
            raise DataError(
                f"{table.source} line {table.lines[row]} column {name!r} is empty; "
                "fill or drop missing values first"
            )
        if not _is_finite_number(str(text)):
            raise DataError(
                f"{table.source} line {table.lines[row]} column {name!r}: {str(text)!r} is not a "
                "finite number; fix the value, drop the row, or mark the column categorical"
            )
    raise AssertionError("unreachable: astype failed but every value parsed")  # pragma: no cover


def is_numeric(values: Strings) -> bool:
    """True when every non-empty value parses as a float (empty values are missing; ``nan`` and
    ``inf`` count as numbers here so that :func:`parse_numbers` reports them)."""
    present = values[values != ""]
    try:
        present.astype(np.float64)
    except ValueError:
        return False
    return True


def codes(values: Strings, categories: Sequence[str]) -> NDArray[np.int64]:
    """Each value's position in ``categories``, or -1 where it is not one of them."""
    cats = np.asarray(categories, dtype=np.str_)
    if cats.size == 0:
        return np.full(len(values), -1, dtype=np.int64)
    order = np.argsort(cats, kind="stable")
    pos = np.clip(np.searchsorted(cats[order], values), 0, len(cats) - 1)
    found = cats[order][pos] == values
    return np.where(found, order[pos], -1).astype(np.int64)


def sorted_categories(values: Strings) -> list[str]:
    """Distinct values, sorted numerically when all are numbers, else lexicographically."""
    distinct = np.unique(values)
    if "" not in distinct and is_numeric(distinct) and np.isfinite(distinct.astype(float)).all():
        distinct = distinct[np.argsort(distinct.astype(np.float64), kind="stable")]
    return [str(v) for v in distinct]


@dataclass(frozen=True, eq=False)
class TableEncoder:
    """How to turn text columns into features, learned from the training rows.

    ``columns`` in output order; numeric columns become ``(x - mean) / std`` (std 0 → 1),
    categorical ones a one-hot block over ``categories[column]``; a category never seen in training
    encodes as all zeros.
    """

    columns: tuple[str, ...]
    means: Mapping[str, float] = field(default_factory=dict)
    stds: Mapping[str, float] = field(default_factory=dict)
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        """``column`` for numeric columns, ``column=category`` for each one-hot feature."""
        names: list[str] = []
        for col in self.columns:
            if col in self.categories:
                names.extend(f"{col}={cat}" for cat in self.categories[col])
            else:
                names.append(col)
        return names

    def encode(self, table: Table) -> tuple[NDArray[np.float32], int]:
        """``(features, unseen)``: the encoded rows and how many category values were unseen."""
        blocks: list[NDArray[np.float32]] = []
        unseen = 0
        for col in self.columns:
            if col in self.categories:
                idx = codes(table.column(col), self.categories[col])
                unseen += int((idx < 0).sum())
                onehot = np.zeros((len(table), len(self.categories[col])), dtype=np.float32)
                hit = np.flatnonzero(idx >= 0)
                onehot[hit, idx[hit]] = 1.0
                blocks.append(onehot)
            else:
                scaled = (parse_numbers(table, col) - self.means[col]) / self.stds[col]
                blocks.append(scaled.astype(np.float32)[:, None])
        return np.concatenate(blocks, axis=1), unseen


def fit_encoder(train: Table, columns: Sequence[str], categorical: Iterable[str]) -> TableEncoder:
    """Learn a :class:`TableEncoder` from ``train``: every column not in ``categorical`` is numeric.

    Uses training-data statistics without privacy (see the module docstring).
    """
    cats = set(categorical)
    means: dict[str, float] = {}
    stds: dict[str, float] = {}
    categories: dict[str, tuple[str, ...]] = {}
    for col in columns:
        if col in cats:
            categories[col] = tuple(sorted_categories(train.column(col)))
        else:
            values = parse_numbers(train, col)
            std = float(values.std())
            means[col] = float(values.mean())
            stds[col] = std if std > 0 else 1.0
    return TableEncoder(tuple(columns), means, stds, categories)


def _is_finite_number(text: str) -> bool:
    try:
        return bool(np.isfinite(float(text)))
    except ValueError:
        return False
