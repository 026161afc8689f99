"""The privacy budget ledger: a dataset's total (ε, δ) and the privacy events spent against it.

Example::

    from deniable.accounting.calibrate import dpsgd_event
    from deniable.ledger import Ledger

    with Ledger() as ledger:  # $DENIABLE_LEDGER, else ~/.local/share/deniable/ledger.db
        ledger.create("patients", epsilon=8.0, delta=1e-5)
        with ledger.spending("patients", dpsgd_event(1.1, 0.01, 1000), "run 1") as spend:
            model = train(...)  # refused before this line if the budget cannot afford it
        print(spend.result.spent_epsilon)  # release the model only now

See :mod:`deniable.ledger.ledger` for the guarantees (composition, locking, crash safety) and
:mod:`deniable.ledger.cli` for ``deniable ledger``.
"""

from __future__ import annotations

from deniable.ledger.errors import (
    BudgetExceededError,
    DatasetExistsError,
    LedgerBusyError,
    LedgerError,
    LedgerUnavailableError,
    ReservationError,
    UnknownDatasetError,
)
from deniable.ledger.ledger import ACCOUNTANTS, Ledger, Spending, composed_epsilon
from deniable.ledger.records import (
    Budget,
    BudgetStatus,
    Reservation,
    SpendRecord,
    SpendResult,
)
from deniable.ledger.store import ENV_VAR, default_path, resolve_url

__all__ = [
    "ACCOUNTANTS",
    "ENV_VAR",
    "Budget",
    "BudgetExceededError",
    "BudgetStatus",
    "DatasetExistsError",
    "Ledger",
    "LedgerBusyError",
    "LedgerError",
    "LedgerUnavailableError",
    "Reservation",
    "ReservationError",
    "SpendRecord",
    "SpendResult",
    "Spending",
    "UnknownDatasetError",
    "composed_epsilon",
    "default_path",
    "resolve_url",
]
