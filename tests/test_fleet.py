"""deniable.fleet: shares of work on spawned processes or Ray tasks (Ray tests skipped without
Ray, the deniable[ray] extra). The task is a partial of check_count: it returns its share, or
raises InvalidParameterError, in a worker that imports no test module."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from deniable.errors import DeniableError, InvalidParameterError, check_count
from deniable.fleet import check_backend, run_shares

TASK = partial(check_count, "share")


@pytest.fixture
def ray_running() -> Iterator[Any]:
    """A Ray the caller initialised (two CPUs); shut down after the test."""
    ray = pytest.importorskip("ray", reason="Ray (deniable[ray]) is not installed")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def test_processes_return_results_in_share_order_and_report_each_share() -> None:
    finished: list[int] = []
    assert run_shares(TASK, [3, 1, 2], backend="processes", done=finished.append) == [3, 1, 2]
    assert sorted(finished) == [0, 1, 2]
    assert run_shares(TASK, [], backend="processes") == []


def test_ray_starts_a_local_ray_and_shuts_it_down() -> None:
    ray = pytest.importorskip("ray", reason="Ray (deniable[ray]) is not installed")
    assert not ray.is_initialized()
    finished: list[int] = []
    assert run_shares(TASK, [3, 1, 2], backend="ray", done=finished.append) == [3, 1, 2]
    assert sorted(finished) == [0, 1, 2]
    assert not ray.is_initialized()


@pytest.mark.parametrize("backend", ["processes", "ray"])
def test_a_task_error_reaches_the_caller_as_the_same_one_line_error(
    backend: str, request: pytest.FixtureRequest
) -> None:
    ray = request.getfixturevalue("ray_running") if backend == "ray" else None
    with pytest.raises(InvalidParameterError) as info:
        run_shares(TASK, [1, 0, 5], backend=backend)  # type: ignore[arg-type]
    assert str(info.value) == "share must be an integer >= 1, got 0"
    if ray is not None:
        assert ray.is_initialized()  # the caller's Ray is left running


def test_invalid_parameter_errors_survive_pickling() -> None:
    error = InvalidParameterError("workers", 0, "an integer >= 1")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is InvalidParameterError and str(again) == str(error)
    assert (again.name, again.value, again.allowed) == ("workers", 0, "an integer >= 1")


def test_backend_names_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_backend("processes") == "processes"
    with pytest.raises(InvalidParameterError, match="--backend must be 'processes' or 'ray'"):
        check_backend("threads", "--backend")
    monkeypatch.setattr("deniable.fleet.importlib.util.find_spec", lambda name: None)
    with pytest.raises(DeniableError) as info:
        check_backend("ray")
    assert str(info.value) == "backend 'ray' needs Ray: pip install 'deniable[ray]'"
