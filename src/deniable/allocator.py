"""Keep freed memory in the C heap during CPU training (glibc).

glibc's malloc serves a large block (above its mmap threshold, 128 KiB to start with) by a fresh
``mmap`` and returns it to the system as soon as it is freed, and it trims the top of the heap
once more than its trim threshold is free. A training step allocates and frees the same large
activations and gradients every step, so each step page-faults them in again: on a 2-core
AMD EPYC, the Papernot MNIST CNN's DP-SGD step took 26–32 ms (median of 20) with glibc's
defaults and 23–24 ms after :func:`keep_freed_memory`, its non-private step 17–19 against
14 ms, and medians came within 5 % of the fastest step (``benchmarks/RESULTS.md``, sixth run).
Peak RSS then stays at the process's high-water mark, which a training process reaches anyway.

The ``deniable`` command calls :func:`keep_freed_memory` at start unless ``DENIABLE_MALLOC=system``
is set, or the user already tuned the allocator (``MALLOC_MMAP_THRESHOLD_`` or
``MALLOC_TRIM_THRESHOLD_`` in the environment, or another allocator such as jemalloc or tcmalloc
in ``LD_PRELOAD``). Library users may call it themselves; the library never changes
process-wide state on its own, but the worker processes it spawns (:mod:`deniable.fleet`) copy
the parent's choice (:func:`applied`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc refuses more (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_applied = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap threshold to 32 MiB and its trim threshold to 2 GiB for this process,
    so freed blocks up to 32 MiB are reused instead of returned to the system. Returns whether
    both took: False where the C library has no ``mallopt`` (not glibc; nothing is changed) or
    refuses one."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    global _applied
    _applied = _applied or done
    return done


def applied() -> bool:
    """Whether :func:`keep_freed_memory` took effect in this process."""
    return _applied


def keep_freed_memory_if(parent_applied: bool) -> None:
    """A worker process's initializer: the parent's choice (:func:`applied`) for this process."""
    if parent_applied:
        keep_freed_memory()


def rss_returned_on_free(mib: int) -> float:
    """MiB of resident memory this process gives back when a freshly touched ``mib`` MiB block
    is freed (Linux, ``/proc/self/statm``): about ``mib`` with glibc's defaults, about 0 after
    :func:`keep_freed_memory` (for blocks up to 32 MiB). A check, for the tests."""

    def resident() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    block = bytearray(mib * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    before = resident()
    del block
    return before - resident()


def tune_for_command_line(environ: dict[str, str] | None = None) -> bool:
    """:func:`keep_freed_memory` unless the environment says not to (see the module doc);
    True when it was applied."""
    env = os.environ if environ is None else environ
    if env.get("DENIABLE_MALLOC", "").lower() == "system":
        return False
    if any(name in env for name in _USER_SETTINGS) or "malloc" in env.get("LD_PRELOAD", ""):
        return False
    return keep_freed_memory()
