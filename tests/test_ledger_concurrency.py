"""The ledger under concurrent spenders and crashes, on a real SQLite file and, when PostgreSQL's
binaries are installed, on a throwaway PostgreSQL server.

- Processes (multiprocessing, spawn) and threads race to spend many small events against a
  budget with room for only some: exactly that many are recorded, each one a spender saw
  succeed, and spent ε stays within the budget.
- A spender is SIGKILLed right after its commit, while holding the write lock before its commit,
  or while holding a reservation: every spend it saw recorded is there, the one it died in is
  either wholly there or wholly absent, a reservation it held still counts, and the ledger is
  consistent and usable afterwards.
"""

from __future__ import annotations

import glob
import multiprocessing as mp
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from deniable import accounting
from deniable.events import ComposedEvent, GaussianEvent, NoOpEvent, PrivacyEvent
from deniable.ledger import BudgetExceededError, Ledger

DELTA = 1e-5
EVENT = GaussianEvent(sigma=5.0)  # alone: ε ≈ 0.73; k of them: ε grows like √k
SPAWN = mp.get_context("spawn")
WAIT = 120.0  # seconds: generous bounds on waits that normally take one or two


def eps_of(count: int) -> float:
    events: list[PrivacyEvent] = [EVENT] * count
    return accounting.epsilon(ComposedEvent(events), DELTA).epsilon


def room_for(count: int) -> float:
    """A budget with room for ``count`` EVENTs and not one more."""
    return (eps_of(count) + eps_of(count + 1)) / 2


def check_consistent(ledger: Ledger, dataset: str) -> None:
    """Sequences 1..n, every cumulative ε the composition of the spends before it, spent ε
    within the budget and equal to the last cumulative ε."""
    status = ledger.status(dataset)
    history = ledger.history(dataset)
    assert [r.sequence for r in history] == list(range(1, len(history) + 1))
    events = [r.event for r in history]
    for i, record in enumerate(history):
        expected = accounting.epsilon(ComposedEvent(events[: i + 1]), DELTA).epsilon
        assert record.cumulative_epsilon == pytest.approx(expected, rel=1e-9)
    assert status.spends == len(history)
    if history:
        assert status.spent_epsilon == pytest.approx(history[-1].cumulative_epsilon, rel=1e-9)
    assert status.held_epsilon <= status.budget.epsilon


# ----------------------------------------------------------------------------- PostgreSQL


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path))

    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version)
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on a Unix socket; skipped only without its binaries.

    initdb refuses to run as root, so as root the server runs as ``nobody`` in a fresh folder
    under the system temp dir (pytest's tmp_path sits in a root-only folder). The socket path
    must stay short (~100 bytes), which a mkdtemp folder guarantees.
    """
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL not installed: no initdb/pg_ctl on PATH or in /usr/lib/postgresql")
    nobody: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("running as root and no user 'nobody' to run initdb/postgres as")
    base = Path(tempfile.mkdtemp(prefix="deniable-pg-"))
    as_user: dict[str, Any] = {}
    if nobody is not None:
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
        as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    data, port = base / "data", _free_port()

    def pg(*args: str, check: bool = True) -> None:
        done = subprocess.run(
            args, cwd=base, env=env, capture_output=True, text=True, timeout=WAIT, **as_user
        )
        if check and done.returncode != 0:
            log = base / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"{args[0]} failed: {done.stderr.strip()} {tail}")

    try:
        pg(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8",
           "--locale=C")  # fmt: skip
        options = f"-c listen_addresses='' -k {base} -p {port} -c fsync=off -c max_connections=40"
        pg(pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60", "-o",
           options, "start")  # fmt: skip
        yield f"postgresql+psycopg://postgres@/postgres?host={base}&port={port}"
    finally:
        if (data / "postmaster.pid").exists():
            pg(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url = request.getfixturevalue("postgres_url")
    assert isinstance(url, str)
    return url


def new_dataset(url: str, budget: float) -> str:
    name = f"d-{uuid.uuid4().hex[:10]}"  # PostgreSQL's server is shared by the module's tests
    with Ledger(url) as ledger:
        ledger.create(name, budget, DELTA)
    return name


# ----------------------------------------------------------------------------- concurrent spends


def _spend_worker(url: str, dataset: str, attempts: int, start: Any, out: Any) -> None:
    """Child process: open the ledger, wait for the start signal, try to spend ``attempts``
    EVENTs; report (ok, refused) or the error."""
    try:
        with Ledger(url) as ledger:
            out.put(("ready", os.getpid()))
            start.wait(WAIT)
            ok = refused = 0
            for i in range(attempts):
                try:
                    ledger.spend(dataset, EVENT, f"pid {os.getpid()} try {i}")
                    ok += 1
                except BudgetExceededError:
                    refused += 1
        out.put(("done", (ok, refused)))
    except BaseException as exc:  # report, so the parent fails with the reason, never hangs
        out.put(("error", repr(exc)))


def test_processes_never_overspend(ledger_url: str) -> None:
    room, workers, attempts = 7, 4, 5
    dataset = new_dataset(ledger_url, room_for(room))
    start, out = SPAWN.Event(), SPAWN.Queue()
    procs = [
        SPAWN.Process(target=_spend_worker, args=(ledger_url, dataset, attempts, start, out))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        messages = [out.get(timeout=WAIT) for _ in procs]
        assert all(kind == "ready" for kind, _ in messages), messages
        start.set()  # all spenders open and waiting: now they race
        results = [out.get(timeout=WAIT) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=WAIT)
    assert all(kind == "done" for kind, _ in results), results
    assert all(p.exitcode == 0 for p in procs)
    ok = sum(r[1][0] for r in results)
    refused = sum(r[1][1] for r in results)
    with Ledger(ledger_url) as ledger:
        status = ledger.status(dataset)
        assert ok == room == status.spends == len(ledger.history(dataset))
        assert refused == workers * attempts - room
        assert status.spent_epsilon == pytest.approx(eps_of(room), rel=1e-9)
        assert status.spent_epsilon <= status.budget.epsilon
        check_consistent(ledger, dataset)


def test_threads_never_overspend(ledger_url: str) -> None:
    room, threads, attempts = 6, 6, 4
    dataset = new_dataset(ledger_url, room_for(room))
    barrier = threading.Barrier(threads)

    def spender(_: int) -> int:
        barrier.wait(WAIT)
        ok = 0
        for _ in range(attempts):
            try:
                ledger.spend(dataset, EVENT, threading.current_thread().name)
                ok += 1
            except BudgetExceededError:
                pass
        return ok

    with Ledger(ledger_url) as ledger, ThreadPoolExecutor(threads) as pool:  # one shared ledger
        ok = sum(pool.map(spender, range(threads)))
        status = ledger.status(dataset)
        assert ok == room == status.spends
        assert status.spent_epsilon == pytest.approx(eps_of(room), rel=1e-9)
        check_consistent(ledger, dataset)


# ----------------------------------------------------------------------------- crashes


def _die_on_write(hook: str) -> None:
    """SIGKILL this process at ``hook`` of the next session that writes."""

    def after_flush(session: Session, _context: Any) -> None:
        session.info["wrote"] = True

    def before_commit(session: Session) -> None:
        if session.new or session.dirty:  # holds the write lock, nothing committed yet
            os.kill(os.getpid(), signal.SIGKILL)

    def after_commit(session: Session) -> None:
        if session.info.get("wrote"):  # committed, and spend() has not returned
            os.kill(os.getpid(), signal.SIGKILL)

    event.listen(Session, "after_flush", after_flush)
    event.listen(Session, hook, before_commit if hook == "before_commit" else after_commit)


def _crash_worker(url: str, dataset: str, mode: str, pipe: Connection) -> None:
    """Child process: three spends (each reported once recorded), then die in the fourth
    request as ``mode`` says; a pipe, unlike a queue, has sent each report before it returns."""
    with Ledger(url) as ledger:
        for i in range(3):
            result = ledger.spend(dataset, EVENT, f"spend {i}")
            pipe.send(("spent", result.record.id))
        if mode == "reservation":
            reservation = ledger.reserve(dataset, EVENT, "held when killed")
            pipe.send(("reserved", reservation.id))
            time.sleep(WAIT)  # the parent kills us here
        else:
            _die_on_write(mode)
            ledger.spend(dataset, EVENT, "killed")
        pipe.send(("survived", mode))


@pytest.mark.parametrize("mode", ["after_commit", "before_commit", "reservation"])
def test_sigkill_loses_no_recorded_spend(ledger_url: str, mode: str) -> None:
    dataset = new_dataset(ledger_url, room_for(4))  # 3 spends + 1 more fit; a 5th does not
    receiver, sender = SPAWN.Pipe(duplex=False)
    child = SPAWN.Process(target=_crash_worker, args=(ledger_url, dataset, mode, sender))
    child.start()
    sender.close()
    reports: list[tuple[str, Any]] = []
    try:
        while len(reports) < 4 and receiver.poll(WAIT):
            try:
                reports.append(receiver.recv())
            except EOFError:  # the child died
                break
            if reports[-1][0] == "reserved":
                os.kill(child.pid or 0, signal.SIGKILL)
    finally:
        child.join(timeout=WAIT)
    assert child.exitcode == -signal.SIGKILL, reports
    spent_ids = [value for kind, value in reports if kind == "spent"]
    assert len(spent_ids) == 3 and "survived" not in [kind for kind, _ in reports]

    with Ledger(ledger_url, busy_timeout=20) as ledger:  # a lock left behind would time out
        history = ledger.history(dataset)
        assert [r.id for r in history[:3]] == spent_ids  # everything it saw recorded is there
        status = ledger.status(dataset)
        if mode == "after_commit":  # committed before it died: recorded
            assert [r.label for r in history] == ["spend 0", "spend 1", "spend 2", "killed"]
        else:  # died before its commit, or holding a reservation: not a recorded spend
            assert len(history) == 3
        counted = 3 + (mode != "before_commit")
        assert status.spends + status.open_reservations == counted
        assert status.held_epsilon == pytest.approx(eps_of(counted), rel=1e-9)
        check_consistent(ledger, dataset)
        if counted == 4:  # the budget is full, the reservation included
            with pytest.raises(BudgetExceededError):
                ledger.spend(dataset, EVENT, "after the crash")
        if mode == "reservation":
            (held,) = ledger.open_reservations(dataset)
            assert held.label == "held when killed"
            ledger.release(held)  # no output of the dead run was released
        # the ledger is usable: no lock was left behind
        fits: PrivacyEvent = NoOpEvent() if mode == "after_commit" else EVENT
        ledger.spend(dataset, fits, "after the crash")
        assert ledger.status(dataset).spends == 4 + (mode == "after_commit")
        check_consistent(ledger, dataset)
    if ledger_url.startswith("sqlite"):
        path = ledger_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
