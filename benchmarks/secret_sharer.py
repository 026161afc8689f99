"""The secret sharer on tinyshakespeare: exposure of an inserted secret against σ and r.

A secret "my pin is _____" (5 digits, |R| = 10⁵, so exposure is exact by enumeration and at most
log₂ 10⁵ ≈ 16.6 bits) is inserted r ∈ {1, 4, 16} times into a slice of tinyshakespeare, as r
windows. A char model is trained non-privately (σ = 0) and with DP-SGD at σ ∈ {0.5, 1, 2}, each
private run twice: with each insertion its own privacy unit (example-level) and with all r
insertions one unit (user-level). Every run has the same steps, batch size, optimizer and seed;
ε is from the accountant (PLD, Poisson, add/remove-one) at δ. A non-private run without the
secret (r = 0) gives the exposure of an unseen secret. Prints one JSON object.

    .venv/bin/python benchmarks/secret_sharer.py [--model transformer] [--chars 200000]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from deniable.text import (
    CanaryFormat,
    SecretSharerSetup,
    exposure_grid,
    plot_exposure,
    read_text,
    run_secret_sharer,
)
from deniable.text.experiments import ExposureTable, SecretSharerRow

TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"


def _report(row: SecretSharerRow) -> None:
    print(
        f"r={row.repeats} sigma={row.noise_multiplier} unit={row.unit} eps={row.epsilon} "
        f"exposure={row.exposure:.2f} ({row.seconds:.0f} s)",
        file=sys.stderr,
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--text", type=Path, default=TEXT)
    parser.add_argument("--chars", type=int, default=200_000, help="first N characters")
    parser.add_argument("--model", default="transformer", choices=["lstm", "transformer"])
    parser.add_argument("--template", default="my pin is _____")
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--sigmas", default="0,0.5,1,2")
    parser.add_argument("--repeats", default="1,4,16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--plot-dir", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    fmt = CanaryFormat(args.template)
    setup = SecretSharerSetup(
        text=read_text(args.text, max_chars=args.chars),
        canary=fmt,
        secret=fmt.random_secret(args.seed),
        model=args.model,
        context=args.context,
        width=args.width,
        layers=args.layers,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_grad_norm=args.max_grad_norm,
        delta=args.delta,
        seed=args.seed,
    )
    repeats = [int(r) for r in args.repeats.split(",")]
    sigmas = [float(s) for s in args.sigmas.split(",")]
    start = time.perf_counter()
    unseen = run_secret_sharer(setup, repeats=0, noise_multiplier=0.0)
    _report(unseen)
    table = exposure_grid(setup, repeats=repeats, noise_multipliers=sigmas, progress=_report)
    seconds = time.perf_counter() - start
    plots = []
    if args.plot_dir is not None:
        for r in repeats:
            rows = tuple(row for row in table.rows if row.repeats == r)
            path = plot_exposure(ExposureTable(rows), args.plot_dir / f"r{r}", x="noise_multiplier")
            plots.append(str(path))
    summary = {
        f"r={row.repeats},sigma={row.noise_multiplier},unit={row.unit}": round(row.exposure, 2)
        for row in table.rows
    }
    print(
        json.dumps(
            {
                "benchmark": "secret-sharer",
                "text": f"{args.text.name} (first {args.chars} chars)",
                "template": args.template,
                "secret": setup.secret,
                "settings": {
                    k: v for k, v in vars(args).items() if k not in {"text", "plot_dir", "template"}
                },
                "unseen_secret": unseen.to_dict(),
                "exposure_bits": summary,
                "rows": table.to_dicts(),
                "plots": plots,
                "seconds": round(seconds, 1),
                "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
