"""A privacy budget ledger: give a dataset a total (ε, δ), spend from it, get refused at the end.

    python examples/budget_ledger.py                    # a fresh SQLite file in a temp folder
    python examples/budget_ledger.py --db ledger.db     # keep the ledger in ledger.db
    python examples/budget_ledger.py --quick            # the same, for the tests

The ledger records each spend's privacy *event*; the dataset's spent ε is the accountant (PLD)
applied to the composition of all recorded events, never the sum of ε's. A spend that would take
the dataset over its budget is refused before anything is recorded, so check with the ledger
*before* releasing an output:

- ``ledger.spending(dataset, event)`` reserves the budget before the work, commits after it
  (and gives it back if the block raises): use it when the event is known in advance (DP-SGD);
- ``ledger.spend(dataset, event)`` records at once: compute privately, spend, then publish.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from deniable.accounting.calibrate import dpsgd_event
from deniable.ledger import BudgetExceededError, Ledger
from deniable.mechanisms import RandomSource, private_mean


def spend_and_report(db: str, quick: bool, seed: int | None) -> dict[str, float]:
    steps = 200 if quick else 2000
    with Ledger(db) as ledger:
        budget = ledger.create("patients", epsilon=2.0, delta=1e-6)
        print(f"budget of '{budget.dataset}': ε = {budget.epsilon:g} at δ = {budget.delta:g} "
              f"({budget.relation.value}, {budget.accountant})")  # fmt: skip

        # 1. A DP-SGD run: its event is known before training, so reserve first.
        training = dpsgd_event(noise_multiplier=2.0, sample_rate=0.01, steps=steps)
        with ledger.spending("patients", training, "dp-sgd run 1") as spend:
            pass  # train here; release the model only after the block (after the commit)
        print(f"after the DP-SGD run: spent ε = {spend.result.spent_epsilon:.3f}")

        # 2. A private statistic: compute, spend (may be refused), then publish.
        values = np.random.default_rng(0).normal(50, 10, size=1000)
        noise = RandomSource(seed) if seed is not None else RandomSource.secure()
        mean = private_mean(values, lo=0.0, hi=100.0, epsilon=0.5, rng=noise)
        result = ledger.spend("patients", mean.event, "mean blood pressure")
        print(f"private mean {mean.value:.2f} published; spent ε = {result.spent_epsilon:.3f}")

        # 3. A larger DP-SGD run does not fit: refused, and nothing is recorded.
        refused = ""
        try:
            ledger.spend("patients", dpsgd_event(1.0, 0.05, steps), "dp-sgd run 2")
        except BudgetExceededError as error:
            refused = str(error)
            print(f"refused: {refused}")

        status = ledger.status("patients")
        print(
            f"status: spent ε = {status.spent_epsilon:.3f} of {status.budget.epsilon:g} in "
            f"{status.spends} spends (ε's compose, so 'remaining' "
            f"{status.remaining_epsilon:.3f} is for orientation only)"
        )
        for record in ledger.history("patients"):
            print(
                f"  #{record.sequence} {record.label}: ε = {record.epsilon:.3f}, "
                f"cumulative ε = {record.cumulative_epsilon:.3f}"
            )
        return {
            "spent_epsilon": status.spent_epsilon,
            "spends": float(status.spends),
            "refused": float(bool(refused)),
            "first_epsilon": ledger.history("patients")[0].epsilon,
        }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer DP-SGD steps, for tests")
    parser.add_argument("--db", default=None, help="SQLite file or SQLAlchemy URL (default: temp)")
    parser.add_argument("--seed", type=int, default=None, help="noise seed (default: CSPRNG)")
    args = parser.parse_args(argv)
    if args.db is not None:
        return spend_and_report(args.db, args.quick, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        return spend_and_report(str(Path(folder) / "ledger.db"), args.quick, args.seed)


if __name__ == "__main__":
    main()
