"""The privacy budget ledger: datasets with a total (ε, δ), and the events spent against them.

A request spends by recording its privacy *event*, not an ε number: a dataset's spent ε is the
dataset's accountant (PLD by default, RDP on request) applied to the composition of every
recorded event at the dataset's δ, under its neighbouring relation. Composition is never the sum
of per-request ε's.

Spends are transactions that serialise per dataset (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ...
FOR UPDATE`` on the dataset's row in PostgreSQL), and the ε check happens inside the lock, so
concurrent spenders, threads or processes, can never take a dataset over its budget. A refused
request raises :class:`BudgetExceededError` and records nothing. Every change is committed (and
on SQLite fsynced) before the call returns, so a crash loses no recorded spend.

Two ways to spend, both refusing *before* any output may be released:

- :meth:`Ledger.spend` records the event at once; release the output after it returns.
- :meth:`Ledger.reserve` holds the budget, then :meth:`Ledger.commit` records the spend or
  :meth:`Ledger.release` gives it back. :meth:`Ledger.spending` wraps the two in a ``with``
  block. A reservation counts against the budget until it is committed or released (or
  expires, when the caller gave it an expiry), so a crash between reserving and committing
  over-counts, never under-counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from types import TracebackType

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from deniable import accounting
from deniable.errors import InvalidParameterError, check_delta, check_positive
from deniable.events import ComposedEvent, Neighbouring, PrivacyEvent, event_from_dict
from deniable.ledger.errors import (
    BudgetExceededError,
    DatasetExistsError,
    LedgerBusyError,
    LedgerUnavailableError,
    ReservationError,
    UnknownDatasetError,
)
from deniable.ledger.records import (
    Budget,
    BudgetStatus,
    Reservation,
    SpendRecord,
    SpendResult,
)
from deniable.ledger.store import (
    WRITE_OPTION,
    DatasetRow,
    SpendRow,
    as_utc,
    describe,
    ensure_schema,
    make_engine,
    resolve_url,
)

ACCOUNTANTS: tuple[str, ...] = ("pld", "rdp")
"""Accountants a budget may use: both compose tightly (``basic`` would add ε's up)."""

RESERVED, COMMITTED, RELEASED = "reserved", "committed", "released"
MAX_NAME = 200


def _now() -> datetime:
    return datetime.now(UTC)


def _check_name(dataset: object) -> str:
    ok = (
        isinstance(dataset, str)
        and 0 < len(dataset) <= MAX_NAME
        and dataset.strip() == dataset
        and dataset.isprintable()
    )
    if not ok:
        raise InvalidParameterError(
            "dataset", dataset, f"a printable name of 1 to {MAX_NAME} characters, no outer spaces"
        )
    assert isinstance(dataset, str)
    return dataset


def _check_label(label: object) -> str:
    if not isinstance(label, str):
        raise InvalidParameterError("label", label, "a string")
    return label


def _relation(value: Neighbouring | str) -> Neighbouring:
    try:
        return Neighbouring(value)
    except ValueError:
        raise InvalidParameterError("relation", value, "add_remove or replace_one") from None


def _stored_event(event: object) -> PrivacyEvent:
    """The event as the ledger will read it back; refuse events that do not survive the trip."""
    if not isinstance(event, PrivacyEvent):
        raise InvalidParameterError("event", event, "a PrivacyEvent")
    stored = event_from_dict(event.to_dict())
    if stored != event:
        raise InvalidParameterError("event", event, "an event that survives to_dict()")
    return stored


def composed_epsilon(events: Sequence[PrivacyEvent], budget: Budget) -> float:
    """ε of running all ``events`` on the dataset, by the budget's accountant at its δ."""
    if not events:
        return 0.0
    event = events[0] if len(events) == 1 else ComposedEvent(events)
    result = accounting.epsilon(
        event, budget.delta, accountant=budget.accountant, relation=budget.relation
    )
    return result.epsilon


def _budget(row: DatasetRow) -> Budget:
    return Budget(
        dataset=row.name,
        epsilon=row.epsilon,
        delta=row.delta,
        relation=Neighbouring(row.relation),
        accountant=row.accountant,
        created_at=as_utc(row.created_at),
    )


def _record(row: SpendRow) -> SpendRecord:
    assert row.sequence is not None and row.committed_at is not None
    assert row.cumulative_epsilon is not None
    return SpendRecord(
        id=row.id,
        sequence=row.sequence,
        label=row.label,
        event=event_from_dict(row.event),
        epsilon=row.epsilon,
        cumulative_epsilon=row.cumulative_epsilon,
        reserved_at=as_utc(row.reserved_at),
        committed_at=as_utc(row.committed_at),
    )


def _reservation(row: SpendRow, dataset: str) -> Reservation:
    return Reservation(
        id=row.id,
        dataset=dataset,
        label=row.label,
        epsilon=row.epsilon,
        reserved_at=as_utc(row.reserved_at),
        expires_at=None if row.expires_at is None else as_utc(row.expires_at),
    )


class _Refusal(Exception):  # noqa: N818 (internal signal, never escapes the ledger)
    """Raised inside the lock when a request does not fit; the transaction rolls back and the
    caller turns it into :class:`BudgetExceededError` after the lock is released, so that the
    message's "spent so far" is composed outside the lock."""

    def __init__(
        self,
        budget: Budget,
        counted: list[PrivacyEvent],
        requested: float,
        after: float,
        open_reservations: int,
    ) -> None:
        super().__init__("over budget")
        self.budget = budget
        self.counted = counted
        self.requested = requested
        self.after = after
        self.open_reservations = open_reservations

    def error(self) -> BudgetExceededError:
        budget = self.budget
        return BudgetExceededError(
            budget.dataset,
            spent=composed_epsilon(self.counted, budget),
            requested=self.requested,
            after=self.after,
            total=budget.epsilon,
            delta=budget.delta,
            relation=budget.relation.value,
            accountant=budget.accountant,
            open_reservations=self.open_reservations,
        )


class Spending:
    """What :meth:`Ledger.spending` yields: the reservation, and after the block its result."""

    def __init__(self, reservation: Reservation) -> None:
        self.reservation = reservation
        self._result: SpendResult | None = None

    @property
    def result(self) -> SpendResult:
        """The committed spend; available once the ``with`` block has ended without error."""
        if self._result is None:
            raise ReservationError(
                f"reservation #{self.reservation.id} is committed when its with-block ends; "
                "read .result after the block"
            )
        return self._result


class Ledger:
    """A privacy budget ledger in a SQLite file (default) or a PostgreSQL database.

    ``db`` is a SQLAlchemy URL (``sqlite:///FILE``, ``postgresql://USER@HOST/DB``) or a SQLite
    file path; None means $DENIABLE_LEDGER, else ``ledger.db`` in the user's data directory.
    ``busy_timeout`` bounds how long a spend waits for other spenders' locks (seconds).
    Safe to share between threads; each process opens its own.
    """

    def __init__(self, db: str | None = None, *, busy_timeout: float = 60.0) -> None:
        self.busy_timeout = check_positive("busy_timeout", busy_timeout)
        self.url = resolve_url(db)
        self.where = describe(self.url)
        self._engine = make_engine(self.url, self.busy_timeout)
        try:
            with self._translate():
                ensure_schema(self._engine)
        except BaseException:
            self._engine.dispose()
            raise

    # ------------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the database connections."""
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------- budgets

    def create(
        self,
        dataset: str,
        epsilon: float,
        delta: float,
        *,
        relation: Neighbouring | str = Neighbouring.ADD_REMOVE,
        accountant: str = "pld",
    ) -> Budget:
        """Give ``dataset`` a total budget (ε, δ). A dataset's budget is never replaced."""
        name = _check_name(dataset)
        check_positive("epsilon", epsilon)
        check_delta(delta)
        rel = _relation(relation)
        if accountant not in ACCOUNTANTS:
            raise InvalidParameterError("accountant", accountant, " or ".join(ACCOUNTANTS))
        row = DatasetRow(
            name=name,
            epsilon=float(epsilon),
            delta=float(delta),
            relation=rel.value,
            accountant=accountant,
            created_at=_now(),
        )
        try:
            with self._transaction(write=True) as session:
                if session.scalar(select(DatasetRow.id).where(DatasetRow.name == name)):
                    raise DatasetExistsError(name, self.where)
                session.add(row)
        except IntegrityError:
            raise DatasetExistsError(name, self.where) from None
        return _budget(row)

    def budget(self, dataset: str) -> Budget:
        """The total budget of ``dataset``."""
        name = _check_name(dataset)
        with self._transaction(write=False) as session:
            return _budget(self._dataset(session, name, lock=False))

    def datasets(self) -> list[Budget]:
        """Every dataset's budget, by name."""
        with self._transaction(write=False) as session:
            rows = session.scalars(select(DatasetRow).order_by(DatasetRow.name))
            return [_budget(row) for row in rows]

    def status(self, dataset: str) -> BudgetStatus:
        """Spent and held ε of ``dataset`` now (see :class:`BudgetStatus`)."""
        name = _check_name(dataset)
        with self._transaction(write=False) as session:
            row = self._dataset(session, name, lock=False)
            budget = _budget(row)
            counted = self._counted(session, row.id, _now())
        events = [event_from_dict(r.event) for r in counted]
        committed = [e for r, e in zip(counted, events, strict=True) if r.state == COMMITTED]
        spent = composed_epsilon(committed, budget)
        held = spent if len(committed) == len(events) else composed_epsilon(events, budget)
        return BudgetStatus(
            budget=budget,
            spent_epsilon=spent,
            held_epsilon=held,
            spends=len(committed),
            open_reservations=len(events) - len(committed),
        )

    def history(self, dataset: str) -> list[SpendRecord]:
        """The committed spends of ``dataset`` in commit order."""
        name = _check_name(dataset)
        with self._transaction(write=False) as session:
            row = self._dataset(session, name, lock=False)
            spends = session.scalars(
                select(SpendRow)
                .where(SpendRow.dataset_id == row.id, SpendRow.state == COMMITTED)
                .order_by(SpendRow.sequence)
            )
            return [_record(spend) for spend in spends]

    def open_reservations(self, dataset: str) -> list[Reservation]:
        """Reservations of ``dataset`` that still count against its budget."""
        name = _check_name(dataset)
        with self._transaction(write=False) as session:
            row = self._dataset(session, name, lock=False)
            counted = self._counted(session, row.id, _now())
            return [_reservation(r, name) for r in counted if r.state == RESERVED]

    # ------------------------------------------------------------------------- spending

    def spend(self, dataset: str, event: PrivacyEvent, label: str = "") -> SpendResult:
        """Record ``event`` against ``dataset``'s budget, or raise :class:`BudgetExceededError`
        and record nothing. Release the request's output only after this returns."""
        row, budget = self._request(dataset, event, label, commit=True, expires_in=None)
        return SpendResult(_record(row), budget)

    def reserve(
        self,
        dataset: str,
        event: PrivacyEvent,
        label: str = "",
        *,
        expires_in: float | None = None,
    ) -> Reservation:
        """Hold budget for ``event`` (or raise :class:`BudgetExceededError`), before computing
        or releasing the output; then :meth:`commit` or :meth:`release` it.

        ``expires_in`` (seconds): after it the reservation stops counting, so set it only when
        no output can be released after that time without a commit. By default it never
        expires: a crash leaves it counting (an over-count) until someone releases it.
        """
        if expires_in is not None:
            check_positive("expires_in", expires_in)
        row, budget = self._request(dataset, event, label, commit=False, expires_in=expires_in)
        return _reservation(row, budget.dataset)

    def commit(self, reservation: Reservation | int) -> SpendResult:
        """Record a reserved spend for good. An expired reservation is checked against the
        budget again and may be refused (then release no output)."""
        rid = reservation.id if isinstance(reservation, Reservation) else reservation
        try:
            with self._transaction(write=True) as session:
                dataset_row, row = self._locked_reservation(session, rid)
                if row.state == COMMITTED:
                    raise ReservationError(f"reservation #{rid} is already committed")
                if row.state == RELEASED:
                    raise ReservationError(
                        f"reservation #{rid} was released; reserve again before releasing output"
                    )
                budget = _budget(dataset_row)
                now = _now()
                event = event_from_dict(row.event)
                counted = self._counted(session, dataset_row.id, now)
                others = [r for r in counted if r.id != rid]
                if len(others) == len(counted):  # expired: it stopped counting, so check it again
                    self._check(budget, others, event, row.epsilon)
                committed = [event_from_dict(r.event) for r in others if r.state == COMMITTED]
                row.state = COMMITTED
                row.sequence = self._next_sequence(session, dataset_row.id)
                row.committed_at = now
                row.cumulative_epsilon = composed_epsilon([*committed, event], budget)
        except _Refusal as refusal:
            raise refusal.error() from None
        return SpendResult(_record(row), budget)

    def release(self, reservation: Reservation | int) -> None:
        """Give a reservation's budget back; only if no output of its request was released.
        Releasing twice is harmless; a committed spend can never be released."""
        rid = reservation.id if isinstance(reservation, Reservation) else reservation
        with self._transaction(write=True) as session:
            _, row = self._locked_reservation(session, rid)
            if row.state == COMMITTED:
                raise ReservationError(
                    f"reservation #{rid} is committed; recorded spends are never removed"
                )
            row.state = RELEASED

    @contextmanager
    def spending(
        self,
        dataset: str,
        event: PrivacyEvent,
        label: str = "",
        *,
        expires_in: float | None = None,
    ) -> Iterator[Spending]:
        """Reserve, run the block, then commit; release if the block raises.

        Compute the noisy output inside the block and release it (return, print, save) only
        after the block: an exception inside means nothing left, so the budget is given back;
        a crash inside leaves the reservation counting. The reservation is refused with
        :class:`BudgetExceededError` before the block runs.
        """
        handle = Spending(self.reserve(dataset, event, label, expires_in=expires_in))
        try:
            yield handle
        except BaseException:
            # If the release fails the reservation keeps counting: an over-count, which is safe.
            with suppress(Exception):
                self.release(handle.reservation)
            raise
        handle._result = self.commit(handle.reservation)

    # ------------------------------------------------------------------------- internals

    def _request(
        self,
        dataset: str,
        event: PrivacyEvent,
        label: str,
        *,
        commit: bool,
        expires_in: float | None,
    ) -> tuple[SpendRow, Budget]:
        name = _check_name(dataset)
        label = _check_label(label)
        stored = _stored_event(event)
        budget = self.budget(name)  # a budget never changes, so read it before locking
        own = composed_epsilon([stored], budget)  # slow for long events: outside the lock
        try:
            with self._transaction(write=True) as session:
                dataset_row = self._dataset(session, name, lock=True)
                now = _now()
                counted = self._counted(session, dataset_row.id, now)
                held = self._check(budget, counted, stored, own)
                row = SpendRow(
                    dataset_id=dataset_row.id,
                    label=label,
                    event=stored.to_dict(),
                    epsilon=own,
                    state=RESERVED,
                    reserved_at=now,
                    expires_at=None if expires_in is None else now + timedelta(seconds=expires_in),
                )
                if commit:
                    committed = [r for r in counted if r.state == COMMITTED]
                    if len(committed) < len(counted):
                        events = [event_from_dict(r.event) for r in committed]
                        held = composed_epsilon([*events, stored], budget)
                    row.state = COMMITTED
                    row.sequence = self._next_sequence(session, dataset_row.id)
                    row.committed_at = now
                    row.cumulative_epsilon = held
                session.add(row)
        except _Refusal as refusal:
            raise refusal.error() from None
        return row, budget

    @staticmethod
    def _check(
        budget: Budget, counted: Sequence[SpendRow], event: PrivacyEvent, own: float
    ) -> float:
        """ε of everything counted plus ``event``; raise :class:`_Refusal` if that exceeds the
        budget (also when it is NaN)."""
        events = [event_from_dict(r.event) for r in counted]
        after = composed_epsilon([*events, event], budget)
        if not after <= budget.epsilon:
            raise _Refusal(budget, events, own, after, sum(r.state == RESERVED for r in counted))
        return after

    def _dataset(self, session: Session, name: str, *, lock: bool) -> DatasetRow:
        query = select(DatasetRow).where(DatasetRow.name == name)
        if lock:  # PostgreSQL: row lock; SQLite: already serialised by BEGIN IMMEDIATE
            query = query.with_for_update()
        row = session.scalars(query).one_or_none()
        if row is None:
            raise UnknownDatasetError(name, self.where)
        return row

    def _locked_reservation(self, session: Session, rid: int) -> tuple[DatasetRow, SpendRow]:
        dataset_id = session.scalar(select(SpendRow.dataset_id).where(SpendRow.id == rid))
        if dataset_id is None:
            raise ReservationError(f"no reservation #{rid} in the ledger at {self.where}")
        dataset_row = session.scalars(
            select(DatasetRow).where(DatasetRow.id == dataset_id).with_for_update()
        ).one()
        row = session.scalars(select(SpendRow).where(SpendRow.id == rid)).one()
        return dataset_row, row

    @staticmethod
    def _counted(session: Session, dataset_id: int, now: datetime) -> list[SpendRow]:
        """Committed spends and unexpired reservations, in the order they were made."""
        live = or_(
            SpendRow.state == COMMITTED,
            and_(
                SpendRow.state == RESERVED,
                or_(SpendRow.expires_at.is_(None), SpendRow.expires_at > now),
            ),
        )
        query = select(SpendRow).where(SpendRow.dataset_id == dataset_id, live)
        return list(session.scalars(query.order_by(SpendRow.id)))

    @staticmethod
    def _next_sequence(session: Session, dataset_id: int) -> int:
        last = session.scalar(
            select(func.max(SpendRow.sequence)).where(SpendRow.dataset_id == dataset_id)
        )
        return 1 if last is None else last + 1

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Session]:
        """A session in one transaction, committed on success; ``write`` takes the write lock."""
        with self._translate(), self._engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: write})
            with Session(bind=conn, expire_on_commit=False) as session, session.begin():
                yield session

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """Database failures become one-line ledger errors."""
        try:
            yield
        except OperationalError as exc:
            orig = exc.orig
            message = str(orig if orig is not None else exc).strip().splitlines()[0]
            if "locked" in message or getattr(orig, "sqlstate", None) == "55P03":
                raise LedgerBusyError(
                    f"the ledger at {self.where} stayed locked by other spenders for over "
                    f"{self.busy_timeout:g} s; retry later (nothing was recorded)"
                ) from exc
            raise LedgerUnavailableError(
                f"cannot use the ledger at {self.where}: {message}"
            ) from exc


__all__ = [
    "ACCOUNTANTS",
    "Budget",
    "BudgetExceededError",
    "BudgetStatus",
    "Ledger",
    "Reservation",
    "SpendRecord",
    "SpendResult",
    "Spending",
    "composed_epsilon",
]
