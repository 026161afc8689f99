"""Keeping freed memory in glibc's heap: what it changes, and when the command line leaves it."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from deniable import allocator, cli

GLIBC = platform.libc_ver()[0] == "glibc"

# 24 MiB allocated, touched and freed; prints how much RSS fell when it was freed (MiB).
_SCRIPT = """
import sys
from deniable.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
block = bytearray(24 * 2**20)
for i in range(0, len(block), 4096):
    block[i] = 1
before = rss()
del block
print(before - rss())
"""


def _rss_returned(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's")
def test_freed_blocks_stay_in_the_heap_only_when_asked() -> None:
    assert _rss_returned("default") > 20  # glibc unmaps the 24 MiB block at once
    assert _rss_returned("keep") < 4  # kept for the next step's allocations


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
