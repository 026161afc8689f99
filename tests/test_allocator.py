"""Keeping freed memory in glibc's heap: what it changes, and when the command line leaves it."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from deniable import allocator, cli
from deniable.fleet import run_shares

GLIBC = platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's")

_SCRIPT = """
import sys
from deniable import allocator
if sys.argv[1] == "keep":
    assert allocator.keep_freed_memory() and allocator.applied()
print(allocator.rss_returned_on_free(24))
"""


def _rss_returned(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip())


@needs_glibc
def test_freed_blocks_stay_in_the_heap_only_when_asked() -> None:
    assert _rss_returned("default") > 20  # glibc unmaps the 24 MiB block at once
    assert _rss_returned("keep") < 4  # kept for the next step's allocations


@needs_glibc
def test_worker_processes_copy_the_parent_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    task = allocator.rss_returned_on_free
    monkeypatch.setattr(allocator, "_applied", False)
    assert run_shares(task, [24], backend="processes")[0] > 20
    monkeypatch.setattr(allocator, "_applied", True)  # as after keep_freed_memory() here
    assert run_shares(task, [24], backend="processes")[0] < 4


@pytest.mark.parametrize(
    "environ",
    [
        {"DENIABLE_MALLOC": "system"},
        {"DENIABLE_MALLOC": "SYSTEM"},
        {"MALLOC_MMAP_THRESHOLD_": "1048576"},
        {"MALLOC_TRIM_THRESHOLD_": "0"},
        {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
    ],
)
def test_the_command_line_leaves_a_chosen_allocator_alone(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(True) or True)
    assert allocator.tune_for_command_line(environ) is False and calls == []
    assert allocator.tune_for_command_line({"PATH": "/bin"}) is True and calls == [True]


def test_the_command_line_tunes_the_allocator_first(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[None] = []
    monkeypatch.setattr(allocator, "tune_for_command_line", lambda: calls.append(None) or True)
    cli.main(["version"])
    assert calls == [None] and capsys.readouterr().out.strip()
