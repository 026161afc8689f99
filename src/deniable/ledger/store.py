"""Where the ledger lives: URL resolution, the table schema, and engines whose write
transactions take the lock that serialises spends.

- SQLite (the default, a file under the user's data directory): WAL journal, ``synchronous =
  FULL`` (every commit is fsynced before it returns), a busy timeout, and write transactions that
  start with ``BEGIN IMMEDIATE`` so two spenders can never both read the same "spent so far".
  SQLAlchemy's documented recipe: pysqlite's own BEGIN handling is turned off and the engine's
  ``begin`` event emits BEGIN itself.
- PostgreSQL (``postgresql://...``, driver psycopg 3): write transactions lock the dataset's row
  with ``SELECT ... FOR UPDATE`` (see :mod:`deniable.ledger.ledger`); ``lock_timeout`` bounds
  the wait like SQLite's busy timeout.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from deniable.errors import InvalidParameterError
from deniable.ledger.errors import LedgerUnavailableError

ENV_VAR = "DENIABLE_LEDGER"
"""Environment variable holding the ledger's database URL (or SQLite file path)."""

WRITE_OPTION = "deniable_write"
"""Connection execution option: True for transactions that must hold the write lock."""

_SCHEMA_LOCK_KEY = 0x64656E6961626C65  # "deniable": a PostgreSQL advisory lock for create_all


# ----------------------------------------------------------------------------- schema


class Base(DeclarativeBase):
    pass


class DatasetRow(Base):
    """One dataset's budget: (ε, δ) under a neighbouring relation, accounted by one accountant."""

    __tablename__ = "deniable_ledger_datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    relation: Mapped[str] = mapped_column(String(20))
    accountant: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SpendRow(Base):
    """One request against a dataset's budget: its event (``PrivacyEvent.to_dict()``), its own ε
    at the dataset's δ, and its state: ``reserved`` (counts against the budget until committed,
    released or expired), ``committed`` (recorded for good, numbered by ``sequence``) or
    ``released`` (never counted; kept for the audit trail)."""

    __tablename__ = "deniable_ledger_spends"
    __table_args__ = (UniqueConstraint("dataset_id", "sequence"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("deniable_ledger_datasets.id"), index=True)
    label: Mapped[str] = mapped_column(Text)
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    epsilon: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(12))
    reserved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sequence: Mapped[int | None] = mapped_column(Integer)
    committed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cumulative_epsilon: Mapped[float | None] = mapped_column(Float)


def as_utc(value: datetime) -> datetime:
    """Everything the ledger stores is UTC; SQLite hands datetimes back naive."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ----------------------------------------------------------------------------- URLs


def default_path() -> Path:
    """``ledger.db`` in the user's data directory (as platformdirs would place it)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "deniable" / "ledger.db"


def resolve_url(db: str | None = None) -> URL:
    """The ledger's database: ``db``, else $DENIABLE_LEDGER, else the default SQLite file.

    A value without ``://`` is a SQLite file path. ``postgresql://`` and ``postgres://`` use
    psycopg 3. Only SQLite files and PostgreSQL are supported: the spend lock is specific to each.
    """
    value = db or os.environ.get(ENV_VAR) or str(default_path())
    if "://" not in value:
        return URL.create("sqlite", database=str(Path(value).expanduser().resolve()))
    allowed = "a SQLite file path, sqlite:///FILE or postgresql://USER@HOST/DB"
    try:
        url = make_url(value)
    except ArgumentError:
        raise InvalidParameterError("--db", value, allowed) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
            raise InvalidParameterError("--db", value, "a SQLite *file* (sqlite:///FILE)")
        return url
    if backend == "postgresql":
        return url
    raise InvalidParameterError("--db", url.render_as_string(hide_password=True), allowed)


def describe(url: URL) -> str:
    """The URL for messages, without its password."""
    return url.render_as_string(hide_password=True)


# ----------------------------------------------------------------------------- engines


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION, True)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")


def make_engine(url: URL, busy_timeout: float) -> Engine:
    """An engine for ``url`` whose write transactions serialise (see the module docstring)."""
    where = describe(url)
    try:
        if url.get_backend_name() == "sqlite":
            assert url.database is not None
            try:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LedgerUnavailableError(f"cannot create the folder of {where}: {exc}") from exc
            engine = create_engine(url, connect_args={"timeout": busy_timeout})
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        milliseconds = max(1, round(busy_timeout * 1000))
        return create_engine(
            url,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": max(1, round(busy_timeout)),
                "options": f"-c lock_timeout={milliseconds}",
            },
        )
    except ImportError as exc:
        raise LedgerUnavailableError(
            f"no database driver for {where} ({exc.name}); for PostgreSQL: "
            "pip install 'psycopg[binary]'"
        ) from exc


def ensure_schema(engine: Engine) -> None:
    """Create the ledger's tables if they are missing, safely against concurrent creators."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: False})
        tables = (DatasetRow.__tablename__, SpendRow.__tablename__)
        if all(inspect(conn).has_table(name) for name in tables):
            return
    with engine.connect() as conn, conn.begin():  # SQLite: BEGIN IMMEDIATE, so one creator
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        Base.metadata.create_all(conn)
