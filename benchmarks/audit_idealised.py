"""Audit power on the idealised Gaussian mechanism with known ε (no training).

Scores of members ~ N(μ, 1), non-members ~ N(0, 1): exactly μ-GDP, whose ε at δ is known in closed
form. Reports, over seeded repetitions, the multi-run bounds (Clopper–Pearson and GDP with 10⁴
trials) and, on the same 1000 canaries, the one-run bounds of Steinke et al. 2023 and of
Mahloujifar et al. 2025 (f-DP, Gaussian trade-off curve), next to the true ε. The one-run bounds
are reported with the default Bonferroni grid of guess counts and, as a diagnostic, with one guess
count fixed in advance (``--fixed-guesses``, no correction needed). Prints one JSON object.

    .venv/bin/python benchmarks/audit_idealised.py [--mu 2.0] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from deniable.accounting.gaussian_exact import gaussian_epsilon
from deniable.audit.bounds import (
    clopper_pearson_lower_bound,
    gdp_lower_bound,
    one_run_fdp_lower_bound,
    one_run_lower_bound,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mu", type=float, default=2.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--fixed-guesses", type=int, default=200)
    args = parser.parse_args()
    true_eps = gaussian_epsilon(args.mu, args.delta)
    names = (
        "clopper_pearson",
        "gdp",
        "one_run",
        "one_run_fdp",
        "one_run_fixed",
        "one_run_fdp_fixed",
    )
    rows: dict[str, list[float]] = {name: [] for name in names}
    for seed in range(args.repeats):
        rng = np.random.default_rng(seed)
        member = rng.random(args.trials) < 0.5
        scores = rng.normal(args.mu * member, 1.0)
        rows["clopper_pearson"].append(
            clopper_pearson_lower_bound(scores, member, delta=args.delta).epsilon
        )
        rows["gdp"].append(gdp_lower_bound(scores, member, delta=args.delta).epsilon)
        included = rng.random(args.canaries) < 0.5
        canary_scores = rng.normal(args.mu * included, 1.0)
        one_run_bounds = {"one_run": one_run_lower_bound, "one_run_fdp": one_run_fdp_lower_bound}
        for name, bound in one_run_bounds.items():
            rows[name].append(bound(canary_scores, included, delta=args.delta).epsilon)
            fixed = bound(canary_scores, included, delta=args.delta, guesses=args.fixed_guesses)
            rows[f"{name}_fixed"].append(fixed.epsilon)
    summary = {
        name: {
            "mean": float(np.mean(v)),
            "min": float(np.min(v)),
            "max": float(np.max(v)),
            "above_true": int(np.sum(np.array(v) > true_eps)),
        }
        for name, v in rows.items()
    }
    print(
        json.dumps(
            {
                "benchmark": "audit-idealised-gaussian",
                "mu": args.mu,
                "delta": args.delta,
                "true_epsilon": true_eps,
                "trials": args.trials,
                "canaries": args.canaries,
                "fixed_guesses": args.fixed_guesses,
                "repeats": args.repeats,
                "confidence": 0.95,
                "bounds": summary,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
