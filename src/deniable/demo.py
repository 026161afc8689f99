"""The accounting demo behind ``make run`` until training lands: plan a private MNIST-sized run.

For a DP-SGD run on n = 60 000 examples, batch 256 (Poisson rate q = 256/n) for 30 epochs, it
calibrates the noise multiplier σ for each target ε with the tight PLD accountant and with RDP,
and shows what each accountant says about the PLD-calibrated σ: how much noise tight accounting
saves, computed, not asserted.
"""

from __future__ import annotations

import json
import math

from rich.console import Console
from rich.table import Table

from deniable import accounting
from deniable.accounting import calibrate

DATASET_SIZE = 60_000
BATCH_SIZE = 256
EPOCHS = 30
DELTA = 1e-5
TARGETS = (1.0, 2.0, 4.0, 8.0)


def plan() -> list[dict[str, float]]:
    """One row per target ε: calibrated σ (PLD and RDP) and ε of the PLD σ per accountant."""
    q = BATCH_SIZE / DATASET_SIZE
    steps = math.ceil(EPOCHS / q)
    rows = []
    for target in TARGETS:
        tight = calibrate.noise_multiplier(target, DELTA, q, steps, accountant="pld")
        loose = calibrate.noise_multiplier(target, DELTA, q, steps, accountant="rdp")
        event = calibrate.dpsgd_event(tight.noise_multiplier, q, steps)
        rows.append(
            {
                "target_epsilon": target,
                "steps": steps,
                "sample_rate": q,
                "sigma_pld": tight.noise_multiplier,
                "sigma_rdp": loose.noise_multiplier,
                "epsilon_pld": tight.epsilon,
                "epsilon_rdp_at_sigma_pld": accounting.epsilon(
                    event, DELTA, accountant="rdp"
                ).epsilon,
                "epsilon_basic_at_sigma_pld": accounting.epsilon(
                    event, DELTA, accountant="basic"
                ).epsilon,
            }
        )
    return rows


def accounting_demo(console: Console, *, as_json: bool = False) -> None:
    """Compute the plan and print it as a table (or one JSON object)."""
    with console.status("calibrating noise for each target ε…", spinner="dots"):
        rows = plan()
    if as_json:
        print(json.dumps({"delta": DELTA, "dataset_size": DATASET_SIZE, "rows": rows}))
        return
    q, steps = rows[0]["sample_rate"], int(rows[0]["steps"])
    table = Table(
        title=(
            f"DP-SGD plan: n={DATASET_SIZE}, batch {BATCH_SIZE} (q={q:.5f}), {EPOCHS} epochs "
            f"= {steps} steps, δ={DELTA:g}"
        )
    )
    for column in (
        "target ε",
        "σ (PLD)",
        "σ (RDP)",
        "noise saved",
        "ε of σ_PLD: PLD",
        "RDP",
        "basic",
    ):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            f"{r['target_epsilon']:g}",
            f"{r['sigma_pld']:.4f}",
            f"{r['sigma_rdp']:.4f}",
            f"{1 - r['sigma_pld'] / r['sigma_rdp']:.1%}",
            f"{r['epsilon_pld']:.3f}",
            f"{r['epsilon_rdp_at_sigma_pld']:.3f}",
            f"{r['epsilon_basic_at_sigma_pld']:.1f}",
        )
    console.print(table)
    console.print(
        "Each ε is an upper bound computed from the events (add/remove-one neighbours). "
        "Try: deniable account --sample-rate 0.004267 --noise-multiplier 1.1 --steps 14063",
        style="dim",
    )
