"""``deniable ledger``: create budgets, spend events, show where budgets stand.

A typer sub-app; ``deniable.cli`` registers it with ``app.add_typer(app, name="ledger")``.
Errors are :class:`DeniableError` s, which the main entry point prints as one line on stderr
(exit 2). ``--json`` prints one JSON object; every ε in it comes with its δ, relation and
accountant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deniable.accounting.calibrate import dpsgd_event
from deniable.errors import DeniableError, check_count, check_positive, check_probability
from deniable.events import PrivacyEvent, event_from_dict
from deniable.ledger.ledger import Ledger
from deniable.ledger.records import Budget, BudgetStatus, SpendResult
from deniable.ledger.store import ENV_VAR

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Privacy budget ledger: per-dataset (ε, δ) budgets that refuse to be overspent.",
)
console = Console()


@app.callback(invoke_without_command=True)
def _help_without_command(ctx: typer.Context) -> None:
    """Without a command: print the help and exit 0 (``no_args_is_help`` would exit 2)."""
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())
        raise typer.Exit(0)


DatasetArg = Annotated[str, typer.Argument(help="Dataset name.")]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar=ENV_VAR,
        help="Ledger database: SQLite file, sqlite:///FILE or postgresql://USER@HOST/DB "
        "(default: ledger.db in the user's data directory).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _privacy(budget: Budget) -> str:
    return f"δ = {budget.delta:g}, {budget.relation.value}, {budget.accountant}"


@app.command()
def create(
    dataset: DatasetArg,
    epsilon: Annotated[float, typer.Option("--epsilon", help="Total ε of the budget, > 0.")],
    delta: Annotated[float, typer.Option("--delta", help="δ of the budget, in (0, 1).")],
    relation: Annotated[
        str, typer.Option("--relation", help="Neighbouring relation: add_remove or replace_one.")
    ] = "add_remove",
    accountant: Annotated[
        str, typer.Option("--accountant", help="pld (tight, default) or rdp.")
    ] = "pld",
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give a dataset a total privacy budget (ε, δ); budgets are never replaced."""
    with Ledger(db) as ledger:
        budget = ledger.create(dataset, epsilon, delta, relation=relation, accountant=accountant)
    if as_json:
        print(json.dumps(budget.to_dict()))
        return
    console.print(
        f"dataset {budget.dataset!r}: budget ε = {budget.epsilon:g} ({_privacy(budget)}) "
        f"in {ledger.where}"
    )


def _event_from_file(path: Path) -> PrivacyEvent:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise DeniableError(f"--event-json {path}: cannot read it ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeniableError(
            f"--event-json {path}: not JSON ({exc.msg} at line {exc.lineno}); give the "
            "output of PrivacyEvent.to_dict()"
        ) from None
    if not isinstance(data, dict):
        raise DeniableError(f"--event-json {path}: must hold one JSON object (an event)")
    try:
        return event_from_dict(data)
    except DeniableError as exc:
        raise DeniableError(f"--event-json {path}: {exc}") from None


def _request_event(
    event_json: Path | None,
    sample_rate: float | None,
    noise_multiplier: float | None,
    steps: int | None,
) -> PrivacyEvent:
    flags = {
        "--sample-rate": sample_rate,
        "--noise-multiplier": noise_multiplier,
        "--steps": steps,
    }
    given = [name for name, value in flags.items() if value is not None]
    if event_json is not None:
        if given:
            raise DeniableError(f"give --event-json or {', '.join(flags)}, not both")
        return _event_from_file(event_json)
    missing = [name for name in flags if name not in given]
    if missing:
        raise DeniableError(
            f"missing {', '.join(missing)} (or give --event-json FILE with the event)"
        )
    assert sample_rate is not None and noise_multiplier is not None and steps is not None
    check_probability("--sample-rate", sample_rate)
    check_positive("--noise-multiplier", noise_multiplier)
    check_count("--steps", steps)
    return dpsgd_event(noise_multiplier, sample_rate, steps)


@app.command()
def spend(
    dataset: DatasetArg,
    event_json: Annotated[
        Path | None,
        typer.Option("--event-json", help="File with the event's to_dict() JSON ('-': stdin)."),
    ] = None,
    sample_rate: Annotated[
        float | None, typer.Option("--sample-rate", help="DP-SGD: Poisson sampling rate q.")
    ] = None,
    noise_multiplier: Annotated[
        float | None, typer.Option("--noise-multiplier", help="DP-SGD: σ / clipping norm.")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="DP-SGD: steps T.")] = None,
    label: Annotated[str, typer.Option("--label", help="What this spend was for.")] = "",
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a privacy event against a dataset's budget, or refuse it (nothing recorded)."""
    event = _request_event(event_json, sample_rate, noise_multiplier, steps)
    with Ledger(db) as ledger:
        result = ledger.spend(dataset, event, label)
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    _print_spend(result)


def _print_spend(result: SpendResult) -> None:
    record, budget = result.record, result.budget
    console.print(
        f"recorded spend #{record.sequence} {record.label!r} on {budget.dataset!r}: "
        f"ε = {record.epsilon:.4f} alone; spent ε = {result.spent_epsilon:.4f} of "
        f"{budget.epsilon:g} ({_privacy(budget)})"
    )


@app.command()
def show(dataset: DatasetArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Total, spent and remaining ε of a dataset, and its number of spends."""
    with Ledger(db) as ledger:
        status = ledger.status(dataset)
        reservations = ledger.open_reservations(dataset) if status.open_reservations else []
    if as_json:
        out = status.to_dict()
        out["reservations"] = [r.to_dict() for r in reservations]
        print(json.dumps(out))
        return
    _print_status(status)
    for r in reservations:
        expiry = "never expires" if r.expires_at is None else f"expires {r.expires_at:%c}"
        console.print(
            f"open reservation #{r.id} {r.label!r}: ε = {r.epsilon:.4f}, "
            f"reserved {r.reserved_at:%Y-%m-%d %H:%M:%S} UTC, {expiry}"
        )


def _print_status(status: BudgetStatus) -> None:
    budget = status.budget
    table = Table(title=f"privacy budget of {budget.dataset!r} ({_privacy(budget)})")
    table.add_column("total ε", justify="right")
    table.add_column("spent ε", justify="right")
    table.add_column("remaining ε", justify="right")
    table.add_column("spends", justify="right")
    table.add_column("open reservations", justify="right")
    table.add_row(
        f"{budget.epsilon:g}",
        f"{status.spent_epsilon:.4f}",
        f"{status.remaining_epsilon:.4f}",
        str(status.spends),
        f"{status.open_reservations} (ε held {status.held_epsilon:.4f})"
        if status.open_reservations
        else "0",
    )
    console.print(table)


@app.command()
def history(dataset: DatasetArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Each spend of a dataset: time, label, its own ε and the cumulative (composed) ε."""
    with Ledger(db) as ledger:
        budget = ledger.budget(dataset)
        records = ledger.history(dataset)
    if as_json:
        print(json.dumps({**budget.to_dict(), "spends": [r.to_dict() for r in records]}))
        return
    table = Table(
        title=f"spends on {budget.dataset!r} (budget ε = {budget.epsilon:g}, {_privacy(budget)})"
    )
    for column in ("#", "time (UTC)", "label", "ε", "cumulative ε"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for r in records:
        table.add_row(
            str(r.sequence),
            f"{r.committed_at:%Y-%m-%d %H:%M:%S}",
            r.label,
            f"{r.epsilon:.4f}",
            f"{r.cumulative_epsilon:.4f}",
        )
    console.print(table)


@app.command(name="list")
def list_cmd(db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Every dataset in the ledger with its budget."""
    with Ledger(db) as ledger:
        budgets = ledger.datasets()
        where = ledger.where
    if as_json:
        print(json.dumps({"ledger": where, "datasets": [b.to_dict() for b in budgets]}))
        return
    table = Table(title=f"budgets in {where}")
    for column in ("dataset", "ε", "δ", "relation", "accountant"):
        table.add_column(column)
    for b in budgets:
        table.add_row(b.dataset, f"{b.epsilon:g}", f"{b.delta:g}", b.relation.value, b.accountant)
    console.print(table)


@app.command()
def release(
    reservation: Annotated[int, typer.Argument(help="Reservation id (see `show`).")],
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give back an open reservation (e.g. a crashed run's) whose output was never released."""
    with Ledger(db) as ledger:
        ledger.release(reservation)
    if as_json:
        print(json.dumps({"released": reservation}))
        return
    console.print(f"released reservation #{reservation}")
