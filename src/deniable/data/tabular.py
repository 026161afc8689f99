"""Tabular datasets: UCI Adult, German credit, and any CSV file with a header row.

Preprocessing caveat (all three): numeric columns are standardised with the mean and standard
deviation of the **training split**, and one-hot categories are those seen in the training split.
These statistics are computed from training data non-privately; the run's privacy accounting
does not cover them. Publish the model, not the encoder, or replace them with public or
privately estimated statistics when that matters. A test value of a category unseen in training
encodes as all zeros (the count is recorded in the dataset's ``notes``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from deniable.data.dataset import ArrayDataset, Split
from deniable.data.errors import DataError, MissingDataError
from deniable.data.files import find_file, require_dir
from deniable.data.splitting import stratified_split, unit_split
from deniable.data.table import (
    Table,
    codes,
    fit_encoder,
    is_numeric,
    parse_numbers,
    rows_with,
    sorted_categories,
    table_from_records,
)

ADULT_COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
ADULT_CATEGORICAL = (
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
)

GERMAN_COLUMNS = (
    "checking-status",
    "duration",
    "credit-history",
    "purpose",
    "credit-amount",
    "savings",
    "employment-since",
    "installment-rate",
    "personal-status-sex",
    "other-debtors",
    "residence-since",
    "property",
    "age",
    "other-installment-plans",
    "housing",
    "existing-credits",
    "job",
    "people-liable",
    "telephone",
    "foreign-worker",
    "class",
)
GERMAN_NUMERIC = (
    "duration",
    "credit-amount",
    "installment-rate",
    "residence-since",
    "age",
    "existing-credits",
    "people-liable",
)
# personal-status codes of women: A92 divorced/separated/married, A95 single
_GERMAN_FEMALE = ("A92", "A95")


def load_adult(data_dir: Path | str | None) -> Split:
    """UCI Adult (census income) from ``adult.data`` (train) and ``adult.test`` (test).

    Label 1 means income ``>50K``. All 14 attributes are features (6 numeric standardised, 8
    categorical one-hot; ``sex`` and ``race`` included, as in the usual benchmark), and ``sex`` and
    ``race`` are also kept as ``groups`` for fairness evaluation. Rows with a missing value (``?``)
    are dropped: 2,399 of 32,561 train rows and 1,221 of 16,281 test rows in the UCI files, leaving
    30,162 and 15,060 (the counts are recorded in ``notes``). Numeric statistics and categories come
    from the training split, non-privately (see the module docstring).
    """
    root = require_dir(data_dir, "adult", "adult.data")
    train_raw = _read_adult(find_file(root, "adult", ("adult.data",), "adult"))
    test_raw = _read_adult(find_file(root, "adult", ("adult.test",), "adult"))
    notes = []
    parts = []
    for label, raw in (("train", train_raw), ("test", test_raw)):
        missing = rows_with(raw, "?")
        notes.append(
            f"adult: dropped {int(missing.sum())} of {len(raw)} {label} rows with a missing value"
        )
        parts.append(raw.take(~missing))
    return _build_split(
        parts[0],
        parts[1],
        name="adult",
        label_column="income",
        classes=("<=50K", ">50K"),
        class_names=("<=50K", ">50K"),
        features=ADULT_COLUMNS[:-1],
        categorical=ADULT_CATEGORICAL,
        group_columns=("sex", "race"),
        notes=notes,
    )


def load_german(data_dir: Path | str | None, *, seed: int = 0, test_fraction: float = 0.2) -> Split:
    """Statlog German credit (``german.data``, 1,000 rows), with a seeded stratified split.

    Label 0 = good credit risk (class 1 in the file), 1 = bad (class 2). The 7 numeric attributes
    are standardised and the 13 categorical ones one-hot encoded, with training-split statistics
    (non-private, see the module docstring). Groups: ``sex`` (from the personal-status code: A92
    and A95 are female) and ``age`` (``<25`` / ``>=25``, the usual split in fairness studies).
    """
    root = require_dir(data_dir, "german", "german.data")
    path = find_file(root, "german", ("german.data",), "german")
    table = table_from_records(_lines(path, sep=None), GERMAN_COLUMNS, str(path))
    sex = np.where(np.isin(table.column("personal-status-sex"), _GERMAN_FEMALE), "female", "male")
    young = parse_numbers(table, "age") < 25
    table = table.with_column("sex", sex.astype(np.str_))
    table = table.with_column("age-group", np.where(young, "<25", ">=25").astype(np.str_))
    classes = ("1", "2")
    train, test = stratified_split(_label_codes(table, "class", classes), test_fraction, seed)
    features = GERMAN_COLUMNS[:-1]
    return _build_split(
        table.take(train),
        table.take(test),
        name="german",
        label_column="class",
        classes=classes,
        class_names=("good", "bad"),
        features=features,
        categorical=[c for c in features if c not in GERMAN_NUMERIC],
        group_columns=("sex", "age-group"),
        group_labels={"age-group": "age"},
        notes=[],
    )


def load_csv(
    path: Path | str,
    *,
    label_column: str,
    categorical: Sequence[str] | None = None,
    group_columns: Sequence[str] = (),
    key_column: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Split:
    """A comma-separated file with a header row, split into train and test with ``seed``.

    ``label_column``: the class; its distinct values, sorted (numerically if all numbers), become
    classes 0..k-1. ``categorical``: the feature columns to one-hot encode; ``None`` infers them
    (a column is numeric when every non-empty value parses as a number). ``group_columns`` are kept
    aside as ``groups`` and are not features; ``key_column`` (e.g. a user id) gives each row its
    privacy unit, and then the split keeps every unit on one side; without it the split is
    stratified by label. Empty numeric values are errors: fill or drop missing values first.
    Numeric statistics and categories come from the training split (see the module docstring).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"CSV file {path} not found: check the path")
    header, records = _read_csv(path)
    table = table_from_records(records, header, str(path))
    for col in (label_column, *group_columns, *([key_column] if key_column else [])):
        table.column(col)
    aside = {label_column, *group_columns, *([key_column] if key_column else [])}
    features = [c for c in header if c not in aside]
    if not features:
        raise DataError(f"{path} has no feature columns besides the label, group and key columns")
    if categorical is None:
        categorical = [c for c in features if not is_numeric(table.column(c))]
    for col in categorical:
        if col not in features:
            raise DataError(f"categorical column {col!r} is not a feature column of {path}")
    for col in features:
        if col not in categorical:
            parse_numbers(table, col)  # every bad value is reported before splitting
    classes = sorted_categories(table.column(label_column))
    if len(classes) < 2:
        raise DataError(f"{path} label column {label_column!r} has fewer than 2 distinct values")
    keys = None
    if key_column is not None:
        keys = codes(table.column(key_column), sorted_categories(table.column(key_column)))
        train, test = unit_split(keys, test_fraction, seed)
    else:
        train, test = stratified_split(
            _label_codes(table, label_column, classes), test_fraction, seed
        )
    return _build_split(
        table.take(train),
        table.take(test),
        name=path.stem,
        label_column=label_column,
        classes=classes,
        class_names=classes,
        features=features,
        categorical=categorical,
        group_columns=group_columns,
        keys=None if keys is None else (keys[train], keys[test]),
        notes=[],
    )


def _build_split(
    train: Table,
    test: Table,
    *,
    name: str,
    label_column: str,
    classes: Sequence[str],
    class_names: Sequence[str],
    features: Sequence[str],
    categorical: Sequence[str],
    group_columns: Sequence[str],
    notes: list[str],
    group_labels: dict[str, str] | None = None,
    keys: tuple[np.ndarray, np.ndarray] | None = None,
) -> Split:
    """Encode both parts with an encoder fitted on ``train`` and wrap them as a :class:`Split`."""
    encoder = fit_encoder(train, features, categorical)
    group_names = {
        col: sorted_categories(np.concatenate([train.column(col), test.column(col)]))
        for col in group_columns
    }
    rename = group_labels or {}
    notes = [
        *notes,
        f"{name}: numeric columns standardised and categories taken from the training split "
        "(non-private preprocessing statistics)",
    ]
    out = []
    for part_index, part in enumerate((train, test)):
        encoded, unseen = encoder.encode(part)
        part_notes = list(notes)
        if unseen:
            part_notes.append(
                f"{name}: {unseen} values of categories unseen in training encode as zeros"
            )
        out.append(
            ArrayDataset(
                features=encoded,
                labels=_label_codes(part, label_column, classes),
                num_classes=len(classes),
                name=name,
                keys=None if keys is None else keys[part_index],
                groups={
                    rename.get(c, c): codes(part.column(c), group_names[c]) for c in group_columns
                },
                group_names={rename.get(c, c): names for c, names in group_names.items()},
                feature_names=encoder.feature_names,
                class_names=class_names,
                notes=tuple(part_notes),
            )
        )
    return Split(train=out[0], test=out[1])


def _label_codes(table: Table, column: str, classes: Sequence[str]) -> np.ndarray:
    labels = codes(table.column(column), classes)
    bad = np.flatnonzero(labels < 0)
    if bad.size:
        raise DataError(
            f"{table.source} line {table.lines[bad[0]]}: label {table.column(column)[bad[0]]!r} "
            f"is not one of {', '.join(classes)}"
        )
    return labels


def _read_adult(path: Path) -> Table:
    """Adult's comma-separated rows; skips blank lines and ``|`` comment lines, drops the test
    file's trailing period on labels (``>50K.`` → ``>50K``)."""
    table = table_from_records(_lines(path, sep=","), ADULT_COLUMNS, str(path))
    income = np.char.rstrip(table.column("income"), ".")
    return table.with_column("income", income.astype(np.str_))


def _lines(path: Path, *, sep: str | None) -> Iterator[tuple[int, list[str]]]:
    """``(line_number, fields)`` for each non-blank, non-``|`` line, split on ``sep``."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if text and not text.startswith("|"):
                yield number, text.split(sep)


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle)
        header: list[str] | None = None
        records: list[tuple[int, list[str]]] = []
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            if header is None:
                header = [field.strip() for field in row]
            else:
                records.append((reader.line_num, row))
    if header is None:
        raise DataError(f"CSV file {path} is empty; it needs a header row and data rows")
    if len(set(header)) != len(header) or "" in header:
        raise DataError(f"CSV file {path} header has empty or repeated column names: {header}")
    if not records:
        raise DataError(f"CSV file {path} has a header but no data rows")
    return header, records
