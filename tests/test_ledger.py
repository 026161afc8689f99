"""The budget ledger's library API, on a real SQLite file: budgets, spends, composition (not
addition) of the recorded events, refusals that record nothing, reservations, URLs."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from scipy import optimize, special

from deniable import accounting
from deniable.accounting.calibrate import dpsgd_event
from deniable.errors import DeniableError, InvalidParameterError
from deniable.events import (
    ComposedEvent,
    GaussianEvent,
    LaplaceEvent,
    Neighbouring,
    NonPrivateEvent,
    NoOpEvent,
    PrivacyEvent,
    SelfComposedEvent,
)
from deniable.ledger import (
    BudgetExceededError,
    DatasetExistsError,
    Ledger,
    ReservationError,
    UnknownDatasetError,
    default_path,
    resolve_url,
)

DELTA = 1e-5
GAUSS = GaussianEvent(sigma=5.0)  # alone: ε ≈ 0.73 at δ = 1e-5


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def ledger(db: str) -> Iterator[Ledger]:
    with Ledger(db) as opened:
        yield opened


def pld(events: list[PrivacyEvent], relation: Neighbouring = Neighbouring.ADD_REMOVE) -> float:
    return accounting.epsilon(ComposedEvent(events), DELTA, relation=relation).epsilon


def exact_gaussian_epsilon(mu: float, delta: float) -> float:
    """Oracle: ε of a Gaussian mechanism with sensitivity/σ = mu, from Balle & Wang (2018)
    Thm. 8, δ(ε) = Φ(μ/2 − ε/μ) − e^ε Φ(−μ/2 − ε/μ); k composed Gaussians are one with √k·μ."""

    def excess(eps: float) -> float:
        return (
            float(special.ndtr(mu / 2 - eps / mu))
            - math.exp(eps) * float(special.ndtr(-mu / 2 - eps / mu))
            - delta
        )

    return float(optimize.brentq(excess, 0.0, 100.0, xtol=1e-12))


def test_create_spend_show_history(ledger: Ledger) -> None:
    budget = ledger.create("patients", 8.0, DELTA)
    assert (budget.dataset, budget.epsilon, budget.delta) == ("patients", 8.0, DELTA)
    assert budget.relation is Neighbouring.ADD_REMOVE and budget.accountant == "pld"
    events: list[PrivacyEvent] = [
        dpsgd_event(1.1, 0.01, 200),
        LaplaceEvent(scale=2.0),
        GAUSS,
    ]
    results = [ledger.spend("patients", e, f"query {i}") for i, e in enumerate(events)]

    status = ledger.status("patients")
    assert status.spends == 3 and status.open_reservations == 0
    assert status.spent_epsilon == pytest.approx(pld(events), rel=1e-9)
    assert status.held_epsilon == status.spent_epsilon
    assert status.remaining_epsilon == pytest.approx(8.0 - status.spent_epsilon)
    alone = [accounting.epsilon(e, DELTA).epsilon for e in events]
    assert status.spent_epsilon < sum(alone)  # composition, not addition

    history = ledger.history("patients")
    assert [r.sequence for r in history] == [1, 2, 3]
    assert [r.label for r in history] == ["query 0", "query 1", "query 2"]
    assert [r.event for r in history] == events  # stored as JSON, read back as the same events
    for i, record in enumerate(history):
        assert record.epsilon == pytest.approx(alone[i], rel=1e-9)
        assert record.cumulative_epsilon == pytest.approx(pld(events[: i + 1]), rel=1e-9)
        assert record.committed_at >= record.reserved_at
        assert results[i].record == record
        assert results[i].spent_epsilon == record.cumulative_epsilon
    assert history[-1].cumulative_epsilon == pytest.approx(status.spent_epsilon, rel=1e-9)
    as_json = results[-1].to_dict()
    assert as_json["delta"] == DELTA and as_json["relation"] == "add_remove"
    assert as_json["accountant"] == "pld" and as_json["event"] == GAUSS.to_dict()


def test_spent_epsilon_matches_the_exact_gaussian_composition(ledger: Ledger) -> None:
    ledger.create("d", 10.0, DELTA)
    k = 12
    for i in range(k):
        ledger.spend("d", GAUSS, f"count {i}")
    spent = ledger.status("d").spent_epsilon
    exact = exact_gaussian_epsilon(math.sqrt(k) / GAUSS.sigma, DELTA)
    assert exact <= spent <= exact * 1.01  # PLD: a tight upper bound
    assert spent < 0.5 * k * exact_gaussian_epsilon(1 / GAUSS.sigma, DELTA)  # far below the sum


@pytest.mark.parametrize(
    ("accountant", "relation"),
    [("rdp", Neighbouring.ADD_REMOVE), ("pld", Neighbouring.REPLACE_ONE)],
)
def test_budget_uses_its_accountant_and_relation(
    ledger: Ledger, accountant: str, relation: Neighbouring
) -> None:
    ledger.create("d", 20.0, DELTA, relation=relation.value, accountant=accountant)
    if relation is Neighbouring.ADD_REMOVE:
        training: PrivacyEvent = dpsgd_event(1.0, 0.02, 100)
    else:  # replace-one: sensitivities double (PLD has no rule for fixed-size sampling)
        training = SelfComposedEvent(GaussianEvent(20.0), 10)
    events: list[PrivacyEvent] = [training, GAUSS]
    for event in events:
        ledger.spend("d", event)
    expected = accounting.epsilon(
        ComposedEvent(events), DELTA, accountant=accountant, relation=relation
    ).epsilon
    status = ledger.status("d")
    assert status.spent_epsilon == pytest.approx(expected, rel=1e-9)
    assert status.budget.relation is relation and status.budget.accountant == accountant
    if relation is Neighbouring.REPLACE_ONE:
        assert status.spent_epsilon > pld(events)  # add/remove would under-count


def test_overspend_is_refused_and_records_nothing(ledger: Ledger) -> None:
    total = (pld([GAUSS] * 2) + pld([GAUSS] * 3)) / 2  # room for two, not three
    ledger.create("d", total, DELTA)
    ledger.spend("d", GAUSS, "first")
    ledger.spend("d", GAUSS, "second")
    before = ledger.status("d")
    with pytest.raises(BudgetExceededError) as refused:
        ledger.spend("d", GAUSS, "third")
    message = str(refused.value)
    assert "\n" not in message and "'d'" in message
    assert "spent ε = " in message and "total ε = " in message
    assert refused.value.spent == pytest.approx(pld([GAUSS] * 2))
    assert refused.value.requested == pytest.approx(accounting.epsilon(GAUSS, DELTA).epsilon)
    assert refused.value.after == pytest.approx(pld([GAUSS] * 3))
    assert refused.value.total == total
    assert ledger.status("d") == before
    assert [r.label for r in ledger.history("d")] == ["first", "second"]
    with pytest.raises(BudgetExceededError):
        ledger.reserve("d", GAUSS, "third, reserved")
    assert ledger.status("d") == before
    # what still fits is still accepted
    assert ledger.spend("d", NoOpEvent(), "nothing private").record.sequence == 3


def test_single_request_over_the_whole_budget_and_non_private_events(ledger: Ledger) -> None:
    ledger.create("d", 0.5, DELTA)
    with pytest.raises(BudgetExceededError):
        ledger.spend("d", GAUSS)
    with pytest.raises(BudgetExceededError, match="inf"):
        ledger.spend("d", NonPrivateEvent())
    assert ledger.history("d") == []


def test_event_the_accountant_cannot_handle_records_nothing(ledger: Ledger) -> None:
    from deniable.events import DiscreteGaussianEvent

    ledger.create("d", 5.0, DELTA)
    with pytest.raises(DeniableError, match="rdp"):
        ledger.spend("d", DiscreteGaussianEvent(sigma=3.0, dimension=4))
    assert ledger.status("d").spends == 0


def test_spends_survive_reopening_and_sqlite_is_durable(db: str, tmp_path: Path) -> None:
    with Ledger(db) as first:
        first.create("d", 5.0, DELTA)
        first.spend("d", GAUSS, "kept")
    with Ledger(db) as second:
        assert [r.label for r in second.history("d")] == ["kept"]
        with second._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL: fsync
    with sqlite3.connect(tmp_path / "ledger.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reservation_counts_until_released(ledger: Ledger) -> None:
    total = (pld([GAUSS] * 2) + pld([GAUSS] * 3)) / 2
    ledger.create("d", total, DELTA)
    ledger.spend("d", GAUSS, "spent")
    held = ledger.reserve("d", GAUSS, "held")
    assert held.epsilon == pytest.approx(accounting.epsilon(GAUSS, DELTA).epsilon)
    status = ledger.status("d")
    assert (status.spends, status.open_reservations) == (1, 1)
    assert status.held_epsilon == pytest.approx(pld([GAUSS] * 2))
    assert status.spent_epsilon == pytest.approx(pld([GAUSS]))
    assert ledger.open_reservations("d") == [held]
    with pytest.raises(BudgetExceededError, match="1 open reservations"):
        ledger.spend("d", GAUSS, "blocked by the reservation")
    ledger.release(held)
    ledger.release(held)  # twice is harmless
    assert ledger.status("d").open_reservations == 0
    with pytest.raises(ReservationError, match="released"):
        ledger.commit(held)
    ledger.spend("d", GAUSS, "fits again")
    with pytest.raises(ReservationError, match="no reservation #999"):
        ledger.commit(999)


def test_commits_number_spends_in_commit_order(ledger: Ledger) -> None:
    ledger.create("d", 10.0, DELTA)
    laplace = LaplaceEvent(scale=4.0)
    first = ledger.reserve("d", GAUSS, "reserved first")
    second = ledger.reserve("d", laplace, "reserved second")
    committed = ledger.commit(second)
    assert committed.record.sequence == 1
    assert committed.spent_epsilon == pytest.approx(pld([laplace]))  # committed ones only
    again = ledger.commit(first.id)
    assert again.record.sequence == 2
    assert again.spent_epsilon == pytest.approx(pld([laplace, GAUSS]))
    with pytest.raises(ReservationError, match="already committed"):
        ledger.commit(first)
    with pytest.raises(ReservationError, match="never removed"):
        ledger.release(first)
    assert [r.label for r in ledger.history("d")] == ["reserved second", "reserved first"]


def test_expired_reservation_stops_counting_and_is_checked_again(ledger: Ledger) -> None:
    total = (pld([GAUSS] * 2) + pld([GAUSS] * 3)) / 2
    ledger.create("d", total, DELTA)
    late = ledger.reserve("d", GAUSS, "expires", expires_in=0.05)
    fits = ledger.reserve("d", GAUSS, "expires too", expires_in=0.05)
    assert late.expires_at is not None and ledger.status("d").open_reservations == 2
    time.sleep(0.1)
    assert ledger.status("d").open_reservations == 0
    ledger.spend("d", GAUSS)
    assert ledger.commit(fits).spent_epsilon == pytest.approx(pld([GAUSS] * 2))
    with pytest.raises(BudgetExceededError):
        ledger.commit(late)  # the budget went to others meanwhile
    assert ledger.status("d").spends == 2


def test_spending_block_commits_or_releases(ledger: Ledger) -> None:
    ledger.create("d", 3.0, DELTA)
    with ledger.spending("d", GAUSS, "in a block") as spending:
        assert ledger.status("d").open_reservations == 1
        with pytest.raises(ReservationError):
            _ = spending.result
    assert spending.result.record.label == "in a block"
    assert spending.result.record.sequence == 1

    with pytest.raises(RuntimeError), ledger.spending("d", GAUSS, "fails"):
        raise RuntimeError("no output left the block")
    status = ledger.status("d")
    assert (status.spends, status.open_reservations) == (1, 0)

    ran = False
    with pytest.raises(BudgetExceededError), ledger.spending("d", NonPrivateEvent()):
        ran = True
    assert not ran


@pytest.mark.parametrize(
    ("epsilon", "delta"),
    [(0.0, 1e-5), (-1.0, 1e-5), (math.nan, 1e-5), (math.inf, 1e-5), (1.0, 0.0), (1.0, 1.0)],
)
def test_bad_budgets_are_refused(ledger: Ledger, epsilon: float, delta: float) -> None:
    with pytest.raises(InvalidParameterError) as error:
        ledger.create("d", epsilon, delta)
    assert "\n" not in str(error.value)
    assert ledger.datasets() == []


def test_one_line_errors(ledger: Ledger) -> None:
    ledger.create("d", 1.0, DELTA)
    failures: list[tuple[type[DeniableError], Callable[[], object]]] = [
        (DatasetExistsError, lambda: ledger.create("d", 2.0, DELTA)),
        (UnknownDatasetError, lambda: ledger.spend("missing", GAUSS)),
        (UnknownDatasetError, lambda: ledger.status("missing")),
        (InvalidParameterError, lambda: ledger.create("e", 1.0, DELTA, relation="swap")),
        (InvalidParameterError, lambda: ledger.create("e", 1.0, DELTA, accountant="basic")),
        (InvalidParameterError, lambda: ledger.create("", 1.0, DELTA)),
        (InvalidParameterError, lambda: ledger.spend("d", 0.5)),  # type: ignore[arg-type]  # not an event
        (InvalidParameterError, lambda: ledger.reserve("d", GAUSS, expires_in=-1)),
    ]
    for kind, call in failures:
        with pytest.raises(kind) as error:
            call()
        assert "\n" not in str(error.value)
    assert [b.dataset for b in ledger.datasets()] == ["d"]
    assert ledger.budget("d").epsilon == 1.0  # never replaced


def test_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sub" / "x.db"
    assert resolve_url(str(path)).database == str(path)
    monkeypatch.setenv("DENIABLE_LEDGER", str(path))
    assert resolve_url(None).database == str(path)
    monkeypatch.delenv("DENIABLE_LEDGER")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_path() == tmp_path / "data" / "deniable" / "ledger.db"
    assert resolve_url(None).database == str(tmp_path / "data" / "deniable" / "ledger.db")
    pg = resolve_url("postgres://me:secret@db.example/budgets")
    assert pg.drivername == "postgresql+psycopg" and pg.database == "budgets"
    for bad in ("sqlite://", "sqlite:///:memory:", "mysql://me@host/db", "::nonsense://"):
        with pytest.raises(InvalidParameterError):
            resolve_url(bad)
    with Ledger(str(path)) as made:  # creates the folder and the tables
        assert made.datasets() == []
    assert path.exists()
