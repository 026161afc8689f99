"""Private statistics with their privacy events: a count and a mean, accounted together.

    python examples/private_statistics.py            # 100 000 simulated records
    python examples/private_statistics.py --quick    # 2 000 records, for the tests

Every mechanism returns a ``Release``: the noisy value *and* the event describing exactly the
noise it added. The ε of a set of releases is the accountant applied to the composition of their
events, not a nominal figure: the floating-point-safe noise (exact discrete Laplace on a
power-of-two grid, Mironov 2012) can add one grid unit of sensitivity, and the event says so.

The true values are printed beside the noisy ones only to show the error; a real release would
publish the noisy values alone. Neighbouring relation: add/remove one record.
"""

from __future__ import annotations

import argparse

import numpy as np

from deniable import accounting
from deniable.events import ComposedEvent
from deniable.mechanisms import RandomSource, private_count, private_mean


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer records, for tests")
    parser.add_argument("--delta", type=float, default=1e-9, help="δ to account at")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: OS CSPRNG)")
    args = parser.parse_args(argv)
    n = 2_000 if args.quick else 100_000
    data_rng = np.random.default_rng(0)  # the simulated data are the same every time
    ages = np.clip(data_rng.normal(42, 15, size=n), 0, 110)
    # The noise: reproducible with --seed (for tests), else the OS CSPRNG, as releases should.
    noise = RandomSource(args.seed) if args.seed is not None else RandomSource.secure()

    seniors = private_count(ages[ages >= 65], epsilon=0.5, rng=noise)
    mean_age = private_mean(ages, lo=0.0, hi=100.0, epsilon=1.0, rng=noise)
    releases = {"count(age ≥ 65)": seniors, "mean age (clamped to [0, 100])": mean_age}
    truth = {"count(age ≥ 65)": float((ages >= 65).sum()), "mean age (clamped to [0, 100])":
             float(np.clip(ages, 0, 100).mean())}  # fmt: skip
    for name, release in releases.items():
        each = accounting.epsilon(release.event, args.delta).epsilon
        print(
            f"{name}: {float(release.value):.2f} (true {truth[name]:.2f}), "
            f"nominal ε = {release.details['epsilon']:g}, accounted ε = {each:.6f}, "
            f"secure noise: {release.secure}"
        )
    both = ComposedEvent([seniors.event, mean_age.event])
    total = {name: accounting.epsilon(both, args.delta, accountant=name).epsilon
             for name in ("pld", "basic")}  # fmt: skip
    print(
        f"both releases: ε = {total['pld']:.6f} (pld) / {total['basic']:.6f} (basic "
        f"composition) at δ = {args.delta:g}, add/remove-one record"
    )
    return {
        "count": float(seniors.value),
        "true_count": truth["count(age ≥ 65)"],
        "mean": float(mean_age.value),
        "true_mean": truth["mean age (clamped to [0, 100])"],
        "epsilon_pld": total["pld"],
        "epsilon_basic": total["basic"],
    }


if __name__ == "__main__":
    main()
