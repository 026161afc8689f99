"""benchmarks/throughput_table.py: the RESULTS.md tables from a throughput JSON."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput_table.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("throughput_table", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_ratios_and_failed_modes() -> None:
    result = {
        "rows": [
            {"model": "m", "mode": "nonprivate", "examples_per_s": 200.0, "peak_rss_mb": 400.0},
            {"model": "m", "mode": "deniable", "examples_per_s": 150.0, "peak_rss_mb": 500.0},
            {"model": "m", "mode": "opacus_hooks", "error": "RuntimeError: out of memory"},
            {"model": "m", "mode": "opacus_ghost", "examples_per_s": 50.0, "peak_rss_mb": 9.5},
        ]
    }
    lines = _module().tables(result).splitlines()
    assert lines[2] == "| m, examples/s | 200 | 150 | OOM | 50.0 |"
    assert lines[4] == "| m, peak live MB | — | — | OOM | — |"
    assert lines[-1] == "| m (book-keeping) | 0.75× | 1.25× | — | OOM | 3.00× |"
