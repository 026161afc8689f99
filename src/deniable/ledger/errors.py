"""The ledger's errors: each a :class:`DeniableError` whose one line names what to change."""

from __future__ import annotations

from deniable.errors import DeniableError


class LedgerError(DeniableError):
    """Base class of the ledger's errors."""


class UnknownDatasetError(LedgerError):
    """No budget is recorded under this dataset name."""

    def __init__(self, dataset: str, where: str) -> None:
        self.dataset = dataset
        super().__init__(
            f"no budget for dataset {dataset!r} in the ledger at {where}; create it first with "
            f"`deniable ledger create {dataset} --epsilon E --delta D` (or check --db)"
        )


class DatasetExistsError(LedgerError):
    """A budget is already recorded under this dataset name; budgets are never reset."""

    def __init__(self, dataset: str, where: str) -> None:
        self.dataset = dataset
        super().__init__(
            f"dataset {dataset!r} already has a budget in the ledger at {where}; budgets are "
            "never reset or replaced (that would forget spent privacy): use another name"
        )


class BudgetExceededError(LedgerError):
    """A spend was refused because it would take the dataset over its budget; nothing was
    recorded and no output may be released."""

    def __init__(
        self,
        dataset: str,
        *,
        spent: float,
        requested: float,
        after: float,
        total: float,
        delta: float,
        relation: str,
        accountant: str,
        open_reservations: int,
    ) -> None:
        self.dataset = dataset
        self.spent = spent
        self.requested = requested
        self.after = after
        self.total = total
        held = f" (incl. {open_reservations} open reservations)" if open_reservations else ""
        super().__init__(
            f"budget of dataset {dataset!r} exceeded: spent ε = {spent:.4g}{held}, this request "
            f"alone ε = {requested:.4g}, together ε = {after:.4g} > total ε = {total:g} "
            f"(δ = {delta:g}, {relation}, {accountant}); nothing was recorded: add noise, "
            "take fewer steps or query less"
        )


class ReservationError(LedgerError):
    """A reservation cannot be committed or released in its current state."""


class LedgerBusyError(LedgerError):
    """The ledger database stayed locked by another spender longer than the busy timeout."""


class LedgerUnavailableError(LedgerError):
    """The ledger database cannot be opened or used (bad URL, server down, missing driver)."""
