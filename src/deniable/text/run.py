"""A secret-sharer run folder: the (r, σ, unit) grid, its table and its plots, written together.

``deniable secrets`` calls :func:`secret_sharer_run`; the folder it fills (``runs/<id>/``) holds
``secrets.json`` (the setup and one row per run, with ε where DP was used) and the figures the
issue asks for: exposure against the number of insertions (one plot per σ > 0, non-private runs
as stars) and against σ (one plot per r), each only when that axis has more than one value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from deniable.text.experiments import (
    ExposureTable,
    SecretSharerRow,
    SecretSharerSetup,
    exposure_grid,
    plot_exposure,
)


def secret_sharer_run(
    setup: SecretSharerSetup,
    run_dir: Path,
    *,
    repeats: Sequence[int],
    noise_multipliers: Sequence[float],
    units: Sequence[str],
    progress: Callable[[SecretSharerRow], None] | None = None,
) -> dict[str, object]:
    """Run the grid, write ``secrets.json`` and the plots into ``run_dir``; return the JSON."""
    table = exposure_grid(
        setup,
        repeats=repeats,
        noise_multipliers=noise_multipliers,
        units=units,
        progress=progress,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    plots = [str(p) for p in _plots(table, run_dir)]
    document: dict[str, object] = {
        "setup": {
            "template": setup.canary.template,
            "model": setup.model,
            "steps": setup.steps,
            "batch_size": setup.batch_size,
            "max_grad_norm": setup.max_grad_norm,
            "delta": setup.delta,
            "seed": setup.seed,
            "text_characters": len(setup.text),
        },
        "rows": table.to_dicts(),
        "plots": plots,
        "run_dir": str(run_dir),
    }
    (run_dir / "secrets.json").write_text(json.dumps(document, indent=2))
    return document


def _plots(table: ExposureTable, run_dir: Path) -> list[Path]:
    rows = table.rows
    plain = [r for r in rows if r.noise_multiplier == 0]
    out = []
    repeats = sorted({r.repeats for r in rows})
    sigmas = sorted({r.noise_multiplier for r in rows if r.noise_multiplier > 0})
    if len(repeats) > 1:
        for sigma in sigmas or [0.0]:
            chosen = [r for r in rows if r.noise_multiplier == sigma] + (plain if sigma else [])
            name = f"exposure_vs_insertions_sigma{sigma:g}.png"
            out.append(_plot(table, chosen, run_dir, "repeats", name))
    if len(sigmas) + bool(plain) > 1:
        for r in repeats:
            chosen = [row for row in rows if row.repeats == r]
            name = f"exposure_vs_sigma_r{r}.png"
            out.append(_plot(table, chosen, run_dir, "noise_multiplier", name))
    return out


def _plot(
    table: ExposureTable, rows: list[SecretSharerRow], run_dir: Path, x: str, name: str
) -> Path:
    return plot_exposure(replace(table, rows=tuple(rows)), run_dir, x=x, name=name)
