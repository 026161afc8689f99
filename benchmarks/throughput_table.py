"""Markdown tables (as in RESULTS.md) from a ``throughput.py`` JSON file.

    .venv/bin/python benchmarks/throughput_table.py benchmarks/results_throughput5_256.json

First table: examples/s, peak RSS and peak live MB per model and mode (a failed mode shows
"OOM" when its error names memory, else "error"); second: ratios of each deniable mode to
non-private and to Opacus's two modes ("—" where a mode did not run).
"""

from __future__ import annotations

import json
import sys
from typing import Any

LABELS = {
    "deniable": "book-keeping",
    "deniable_two_pass": "two-pass",
    "deniable_compiled": "compiled",
}


def cell(row: dict[str, Any] | None, key: str) -> str:
    if row is None:
        return "—"
    if "error" in row:
        return "OOM" if "memory" in row["error"].lower() else "error"
    if key not in row:
        return "—"
    value = float(row[key])
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def ratio(rows: dict[str, dict[str, Any]], mode: str, other: str, key: str) -> str:
    ours, theirs = rows.get(mode), rows.get(other)
    if theirs is not None and "error" in theirs:
        return cell(theirs, key)
    if ours is None or theirs is None or key not in ours or key not in theirs:
        return "—"
    return f"{ours[key] / theirs[key]:.2f}×"


def tables(result: dict[str, Any]) -> str:
    rows = result["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    lines = ["| model | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for model in models:
        by_mode = {r["mode"]: r for r in rows if r["model"] == model}
        for key, label in (
            ("examples_per_s", "examples/s"),
            ("peak_rss_mb", "peak RSS MB"),
            ("peak_live_mb", "peak live MB"),
        ):
            cells = [cell(by_mode.get(mode), key) for mode in modes]
            lines.append(f"| {model}, {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| model (mode) | speed vs non-private | RSS vs non-private | live vs non-private "
        "| speed vs Opacus hooks | speed vs Opacus ghost |",
        "|---|---|---|---|---|---|",
    ]
    for model in models:
        by_mode = {r["mode"]: r for r in rows if r["model"] == model}
        for mode, label in LABELS.items():
            if mode not in by_mode or "error" in by_mode[mode]:
                continue
            cells = [
                ratio(by_mode, mode, "nonprivate", "examples_per_s"),
                ratio(by_mode, mode, "nonprivate", "peak_rss_mb"),
                ratio(by_mode, mode, "nonprivate", "peak_live_mb"),
                ratio(by_mode, mode, "opacus_hooks", "examples_per_s"),
                ratio(by_mode, mode, "opacus_ghost", "examples_per_s"),
            ]
            lines.append(f"| {model} ({label}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: throughput_table.py RESULT.json (a throughput.py output)")
    try:
        with open(sys.argv[1], encoding="utf-8") as handle:
            result = json.load(handle)
        print(tables(result))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        sys.exit(f"throughput_table.py: cannot read {sys.argv[1]} as throughput.py output: {error}")


if __name__ == "__main__":
    main()
