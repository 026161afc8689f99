"""Accounting speed and tightness: our PLD vs dp-accounting's PLD and Opacus's PRV accountant.

DP-SGD with Poisson rate q = 1e-3 and noise multiplier σ = 1.0 for T = 1e3 … 1e6 steps, δ = 1e-5.
For each T: median wall time of 3 calls of each accountant (fresh, no caching) and the ε it reports,
plus our RDP ε to show how much a tight accountant saves. Prints one JSON object.

    .venv/bin/python benchmarks/accounting.py [--steps 1000 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from collections.abc import Callable

from deniable.accounting import pld, rdp
from deniable.accounting.calibrate import dpsgd_event

SAMPLE_RATE = 1e-3
SIGMA = 1.0
DELTA = 1e-5


def timed(fn: Callable[[], float], repeats: int = 3) -> tuple[float, float]:
    """The value and the median wall time over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return value, sorted(times)[len(times) // 2]


def ours_pld(steps: int) -> float:
    pld._composed.cache_clear()
    return pld.epsilon(dpsgd_event(SIGMA, SAMPLE_RATE, steps), DELTA).epsilon


def ours_rdp(steps: int) -> float:
    return rdp.epsilon(dpsgd_event(SIGMA, SAMPLE_RATE, steps), DELTA).epsilon


def google_pld(steps: int) -> float:
    from dp_accounting import dp_event
    from dp_accounting.pld import pld_privacy_accountant

    acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(
        dp_event.PoissonSampledDpEvent(SAMPLE_RATE, dp_event.GaussianDpEvent(SIGMA)), steps
    )
    return float(acc.get_epsilon(DELTA))


def opacus_prv(steps: int) -> float:
    from opacus.accountants import PRVAccountant

    acc = PRVAccountant()
    acc.history = [(SIGMA, SAMPLE_RATE, steps)]
    return float(acc.get_epsilon(DELTA))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, nargs="+", default=[10**3, 10**4, 10**5, 10**6])
    args = parser.parse_args()
    rows = []
    for steps in args.steps:
        row: dict[str, float | int] = {"steps": steps}
        for name, fn in (
            ("deniable_pld", ours_pld),
            ("dp_accounting_pld", google_pld),
            ("opacus_prv", opacus_prv),
            ("deniable_rdp", ours_rdp),
        ):
            eps, seconds = timed(functools.partial(fn, steps))
            row[f"{name}_epsilon"] = eps
            row[f"{name}_seconds"] = seconds
        row["speedup_vs_dp_accounting"] = (
            row["dp_accounting_pld_seconds"] / row["deniable_pld_seconds"]
        )
        row["speedup_vs_opacus_prv"] = row["opacus_prv_seconds"] / row["deniable_pld_seconds"]
        row["rdp_over_pld"] = row["deniable_rdp_epsilon"] / row["deniable_pld_epsilon"]
        rows.append(row)
    print(
        json.dumps(
            {
                "benchmark": "accounting",
                "sample_rate": SAMPLE_RATE,
                "noise_multiplier": SIGMA,
                "delta": DELTA,
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
