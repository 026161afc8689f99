"""Joining a torch.distributed process group, with the checks a private run needs first.

Every worker of a DP-SGD run must agree on the world size and on everything the privacy claim
depends on (sample rate, noise, clipping, seed, dataset): a worker with a different world size
would shard the batch differently, and one with a different seed would draw a different batch,
so the accountant's q would be wrong. torch's own rendezvous does not catch this (rank 0 with
``world_size=2`` happily starts with a rank that believes ``world_size=3``), so :func:`join`
first runs a handshake over a :class:`torch.distributed.TCPStore`: every rank posts its world
size, rank 0 checks every claim and posts a verdict, and only then is the gloo group created.
Each failure is a one-line :class:`~deniable.errors.DeniableError` that names the offending rank
and the variable to change.

The same code serves ``torchrun`` (whose agent hosts the store on ``MASTER_PORT``; we connect as
clients) and plain launches (rank 0 hosts the store), see :meth:`Rendezvous.from_env`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType

import torch
import torch.distributed as dist

from deniable.errors import DeniableError, InvalidParameterError, check_count, check_positive

_PREFIX = "deniable"


@dataclass(frozen=True)
class Rendezvous:
    """Where and as whom a worker joins: its ``rank`` among ``world_size`` workers, and the
    address of rank 0's store. ``timeout_s`` bounds the handshake and every collective: a worker
    that waits longer for a peer fails instead of hanging."""

    rank: int
    world_size: int
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    timeout_s: float = 60.0
    agent_store: bool = False

    def __post_init__(self) -> None:
        check_count("world_size", self.world_size)
        if (
            isinstance(self.rank, bool)
            or not isinstance(self.rank, int)
            or not 0 <= self.rank < self.world_size
        ):
            raise InvalidParameterError(
                "rank",
                self.rank,
                f"an integer in [0, {self.world_size}) for world_size {self.world_size}",
            )
        if isinstance(self.master_port, bool) or not 1 <= int(self.master_port) <= 65535:
            raise InvalidParameterError("master_port", self.master_port, "a port in [1, 65535]")
        check_positive("timeout_s", self.timeout_s)

    @staticmethod
    def from_env(environ: Mapping[str, str] | None = None, timeout_s: float = 60.0) -> Rendezvous:
        """The rendezvous torchrun describes: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT.

        Under torchrun (``TORCHELASTIC_USE_AGENT_STORE=True``) the agent already hosts the store,
        so every rank connects to it as a client.
        """
        env = os.environ if environ is None else environ
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_PORT") if k not in env]
        if missing:
            raise DeniableError(
                f"{', '.join(missing)} not set: launch with torchrun, or set RANK, WORLD_SIZE, "
                "MASTER_ADDR and MASTER_PORT for every worker"
            )
        values = {k: _env_int(env, k) for k in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
        return Rendezvous(
            rank=values["RANK"],
            world_size=values["WORLD_SIZE"],
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=values["MASTER_PORT"],
            timeout_s=timeout_s,
            agent_store=env.get("TORCHELASTIC_USE_AGENT_STORE", "") == "True",
        )


def _env_int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise DeniableError(f"{key} must be an integer, got {env[key]!r}") from None


class Group:
    """A joined gloo process group (this worker's ``rank`` of ``world_size``).

    Use as a context manager, or call :meth:`close`, so the group is destroyed on every exit.
    """

    def __init__(self, rendezvous: Rendezvous, store: dist.Store) -> None:
        self.rendezvous = rendezvous
        self.store = store

    @property
    def rank(self) -> int:
        return self.rendezvous.rank

    @property
    def world_size(self) -> int:
        return self.rendezvous.world_size

    @property
    def is_leader(self) -> bool:
        """Rank 0: draws the noise and keeps the authoritative privacy record."""
        return self.rendezvous.rank == 0

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def __enter__(self) -> Group:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None and dist.is_initialized():
            # Leave together: a rank that tears down gloo while a peer still talks to it can
            # abort in C++ ("terminate called without an active exception", seen under load).
            dist.barrier()
        self.close()


def join(rendezvous: Rendezvous) -> Group:
    """Handshake with the other ranks (world size, duplicate ranks), then create the gloo group.

    Raises :class:`DeniableError` when the ranks disagree, a rank is taken twice, the port is
    taken, or a rank does not arrive within ``timeout_s``.
    """
    if dist.is_initialized():
        raise DeniableError("a torch.distributed process group already exists in this process")
    timeout = timedelta(seconds=rendezvous.timeout_s)
    store = _open_store(rendezvous, timeout)
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    prefixed = dist.PrefixStore(f"{_PREFIX}/{restart}", store)
    _handshake(prefixed, rendezvous, timeout)
    dist.init_process_group(
        "gloo",
        store=dist.PrefixStore("pg", prefixed),
        rank=rendezvous.rank,
        world_size=rendezvous.world_size,
        timeout=timeout,
    )
    return Group(rendezvous, prefixed)


def _open_store(rdv: Rendezvous, timeout: timedelta) -> dist.Store:
    host = rdv.master_addr
    master = rdv.rank == 0 and not rdv.agent_store
    try:
        return dist.TCPStore(
            host,
            rdv.master_port,
            world_size=None,
            is_master=master,
            timeout=timeout,
            wait_for_workers=False,
        )
    except (RuntimeError, OSError) as error:
        if master:
            raise DeniableError(
                f"rank 0 cannot listen on {host}:{rdv.master_port} (another rank 0 or another "
                f"job holds it?); choose another MASTER_PORT: {_first_line(error)}"
            ) from None
        raise DeniableError(
            f"rank {rdv.rank} could not reach rank 0 at {host}:{rdv.master_port} within "
            f"{rdv.timeout_s:g}s; check MASTER_ADDR/MASTER_PORT and that rank 0 is running"
        ) from None


def _handshake(store: dist.Store, rdv: Rendezvous, timeout: timedelta) -> None:
    rank, size = rdv.rank, rdv.world_size
    if store.add(f"seen/{rank}", 1) > 1:
        raise DeniableError(f"rank {rank} was started twice; give every worker its own RANK")
    store.set(f"claim/{rank}", json.dumps({"world_size": size}))
    if rank == 0:
        verdict, joined = _leader_verdict(store, size, timeout, rdv.timeout_s)
        store.set("verdict", json.dumps(verdict))
        _await_acks(store, joined, rdv.timeout_s)  # rank 0 hosts the store: keep it up
    else:
        try:
            claim = json.loads(_get(store, "claim/0", timeout, "rank 0", rdv.timeout_s))
            if claim["world_size"] != size:
                raise DeniableError(
                    f"rank {rank} has WORLD_SIZE={size} but rank 0 has "
                    f"WORLD_SIZE={claim['world_size']}; start every worker with the same WORLD_SIZE"
                )
            verdict = json.loads(_get(store, "verdict", timeout, "rank 0", rdv.timeout_s))
        finally:
            with contextlib.suppress(RuntimeError, OSError):
                store.add("acks", 1)
    if not verdict["ok"]:
        raise DeniableError(str(verdict["error"]))


def _leader_verdict(
    store: dist.Store, size: int, timeout: timedelta, timeout_s: float
) -> tuple[dict[str, object], int]:
    """Rank 0's judgement of the other ranks' claims, and how many of them arrived."""
    for other in range(1, size):
        try:
            claim = json.loads(_get(store, f"claim/{other}", timeout, f"rank {other}", timeout_s))
        except DeniableError as error:
            return {"ok": False, "error": str(error)}, other - 1
        if claim["world_size"] != size:
            message = (
                f"rank {other} has WORLD_SIZE={claim['world_size']} but rank 0 has "
                f"WORLD_SIZE={size}; start every worker with the same WORLD_SIZE"
            )
            return {"ok": False, "error": message}, other
    return {"ok": True}, size - 1


def _await_acks(store: dist.Store, joined: int, timeout_s: float) -> None:
    """Wait until the ``joined`` other ranks have read the verdict (or ``timeout_s`` passed), so
    that rank 0 stopping on a bad verdict does not cut them off before they read it."""
    deadline = time.monotonic() + timeout_s
    while store.add("acks", 0) < joined and time.monotonic() < deadline:
        time.sleep(0.005)


def _get(store: dist.Store, key: str, timeout: timedelta, who: str, timeout_s: float) -> str:
    start = time.monotonic()
    try:
        store.wait([key], timeout)
        return store.get(key).decode()
    except (RuntimeError, OSError):
        if time.monotonic() - start < 0.9 * timeout_s:
            raise DeniableError(
                f"lost contact with rank 0 while waiting for {who} (rank 0 stopped early; its "
                "error says why)"
            ) from None
        raise DeniableError(
            f"{who} did not join within {timeout_s:g}s; start every rank of the run (RANK "
            "0..WORLD_SIZE-1) with the same WORLD_SIZE, MASTER_ADDR and MASTER_PORT"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (for tests and local launches)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def agree(group: Group, facts: Mapping[str, object]) -> None:
    """Check that every rank holds the same ``facts`` (JSON-ready); else raise on every rank.

    Collective: every rank must call it. The error names the first rank and fact that differ.
    """
    gathered: list[object] = [None] * group.world_size
    dist.all_gather_object(gathered, dict(facts))
    reference = gathered[0]
    assert isinstance(reference, dict)
    for other, theirs in enumerate(gathered):
        assert isinstance(theirs, dict)
        for key in sorted(set(reference) | set(theirs)):
            if reference.get(key) != theirs.get(key):
                raise DeniableError(
                    f"rank {other} has {key}={theirs.get(key)!r} but rank 0 has "
                    f"{reference.get(key)!r}; every rank must use the same settings and data"
                )


def shared_seed(group: Group, seed: int | None) -> int:
    """``seed``, or (when None) a seed rank 0 draws from the OS CSPRNG and sends to every rank.

    Collective. Used for the batch sampler, which every rank must run identically.
    """
    value = torch.tensor(
        [seed if seed is not None else int.from_bytes(os.urandom(7), "little")],
        dtype=torch.int64,
    )
    dist.broadcast(value, src=0)
    return int(value.item())
