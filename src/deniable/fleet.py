"""Independent shares of work on worker processes or Ray tasks (shadow-model fleets for audits).

``run_shares(task, shares, backend=...)`` calls ``task(share)`` for every share in a worker of its
own and returns the results in the order of ``shares``:

- ``"processes"``: spawned processes on this machine (:mod:`concurrent.futures`), one per share;
- ``"ray"``: one Ray task per share, one CPU each (``pip install 'deniable[ray]'``). A Ray that is
  already initialised is used as it is (``ray.init(address="auto")`` before the call joins a
  cluster, whose machines need deniable installed); otherwise a local Ray with one CPU per share
  is started here and shut down afterwards.

The backend changes where the work runs, not what it computes: every task gets the same share
and the same arguments, so on one machine both backends give the same bits. ``task`` must be
picklable (a module-level function or a :func:`functools.partial` of one); with Ray it travels
once, through the object store. An exception raised by a task reaches the caller as itself (Ray's
wrapper, whose text is a remote traceback, is removed), so a
:class:`~deniable.errors.DeniableError` stays one line.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
from collections.abc import Callable, Sequence, Sized
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Literal, TypeVar, cast

from deniable import allocator
from deniable.errors import DeniableError, InvalidParameterError

Backend = Literal["processes", "ray"]
BACKENDS: tuple[Backend, ...] = ("processes", "ray")

S = TypeVar("S")
R = TypeVar("R")


def check_backend(backend: str, name: str = "backend") -> Backend:
    """``backend`` if it is a known backend that can run here, else a one-line error."""
    if backend not in BACKENDS:
        raise InvalidParameterError(name, backend, "'processes' or 'ray'")
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise DeniableError(f"{name} 'ray' needs Ray: pip install 'deniable[ray]'")
    return cast(Backend, backend)


def run_shares(
    task: Callable[[S], R],
    shares: Sequence[S],
    *,
    backend: Backend,
    done: Callable[[int], None] | None = None,
) -> list[R]:
    """``[task(share) for share in shares]``, each share in a worker of its own; ``done(i)`` is
    called here as share ``i`` finishes (in the order they finish)."""
    check_backend(backend)
    if not shares:
        return []
    run = _on_ray if backend == "ray" else _in_processes
    results = run(task, shares, done or (lambda i: None))
    return [results[i] for i in range(len(shares))]


def items_done(
    shares: Sequence[Sized], progress: Callable[[int, int], None] | None
) -> Callable[[int], None]:
    """A ``done`` callback for :func:`run_shares` when each share is a list of items: calls
    ``progress(items finished so far, total items)`` as shares finish."""
    total = sum(len(share) for share in shares)
    finished = 0

    def done(index: int) -> None:
        nonlocal finished
        finished += len(shares[index])
        if progress is not None:
            progress(finished, total)

    return done


def _in_processes(
    task: Callable[[S], R], shares: Sequence[S], done: Callable[[int], None]
) -> dict[int, R]:
    results: dict[int, R] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=len(shares),
        mp_context=context,
        initializer=allocator.keep_freed_memory_if,  # workers copy the parent's allocator
        initargs=(allocator.applied(),),
    ) as pool:
        futures = {pool.submit(task, share): i for i, share in enumerate(shares)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            done(futures[future])
    return results


def _call(task: Callable[[S], R], share: S) -> R:
    return task(share)


def _on_ray(
    task: Callable[[S], R], shares: Sequence[S], done: Callable[[int], None]
) -> dict[int, R]:
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=len(shares), include_dashboard=False, logging_level=logging.WARNING)
    pending: dict[object, int] = {}
    try:
        remote: Any = ray.remote(num_cpus=1)(_call)
        shipped = ray.put(task)
        pending = {remote.remote(shipped, share): i for i, share in enumerate(shares)}
        results: dict[int, R] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            try:
                results[index] = ray.get(ready[0])
            except ray.exceptions.RayTaskError as error:
                cause = getattr(error, "cause", None)
                if isinstance(cause, Exception):
                    raise cause from None
                raise
            done(index)
        return results
    finally:
        for ref in pending:
            ray.cancel(ref)
        if started:
            ray.shutdown()
