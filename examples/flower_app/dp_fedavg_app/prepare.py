"""Split UCI Adult into one data file per client, for trying the app on one machine or a few.

    python -m dp_fedavg_app.prepare --data-dir DIR --out parts --clients 3 --rows 200

``DIR`` holds ``adult/adult.data`` and ``adult/adult.test`` (deniable.data.load_adult encodes
them: 104 features). Client k gets ``rows`` distinct random training rows in
``parts/client-k.npz``; ``parts/test.npz`` holds test rows for the server's evaluation. In a
real federation each device already holds its own rows, in the encoding the federation agreed
on; this script only stands in for that.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from deniable.data import load_adult

from .task import write_partition


def prepare(
    data_dir: Path, out: Path, *, clients: int, rows: int, test_rows: int = 3000, seed: int = 0
) -> list[Path]:
    """Write ``client-0.npz`` … and ``test.npz`` under ``out``; the client files, in order."""
    split = load_adult(data_dir)
    x, y = split.train.features, split.train.labels
    if clients * rows > len(y):
        raise ValueError(f"{clients} clients of {rows} rows need {clients * rows} > {len(y)} rows")
    order = np.random.default_rng(seed).permutation(len(y))[: clients * rows]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, part in enumerate(order.reshape(clients, rows)):
        paths.append(out / f"client-{k}.npz")
        write_partition(paths[-1], x[part], y[part])
    test = split.test
    write_partition(out / "test.npz", test.features[:test_rows], test.labels[:test_rows])
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding adult/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rows", type=int, default=200, help="training rows per client")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = prepare(args.data_dir, args.out, clients=args.clients, rows=args.rows, seed=args.seed)
    for k, path in enumerate(paths):
        print(
            "flower-supernode --superlink SERVER:8000 --root-certificates ca.crt "
            f'--node-config "partition-id={k} data-path=\\"{path.resolve()}\\""'
        )


if __name__ == "__main__":
    main()
