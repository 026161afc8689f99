"""DP-FedAvg on MNIST: test accuracy against user-level ε after R rounds (issue #9).

K clients each hold a disjoint shard of the MNIST training set (seeded shuffle: IID shards, or
``--non-iid``: each client's shard drawn from two label-sorted blocks, as McMahan et al. 2017).
Every round the server samples each client with probability q, each sampled client runs
``--local-steps`` of SGD from the global model, updates are clipped to S, summed, noised once
with N(0, z²S²) and divided by q·K (deniable.distributed.DPFedAvg). z is calibrated by the PLD
accountant so that R rounds spend the target user-level ε (add/remove-one client) at δ; the ε
reported is the accountant's on the recorded rounds. A non-private row runs the same loop with
no clipping that binds and noise z = 1e-9 (ε not reported).

    .venv/bin/python benchmarks/fedavg_mnist.py --data-dir ../shared/data/mnist --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from deniable.accounting.calibrate import noise_multiplier
from deniable.data import load_dataset
from deniable.distributed.clipping import FixedClipping
from deniable.distributed.fedavg import DPFedAvg, LocalSGDClient
from deniable.models import build_model
from deniable.train.trainer import accuracy


def shards(labels: np.ndarray, clients: int, non_iid: bool, seed: int) -> list[np.ndarray]:
    """Disjoint index sets, one per client, of equal size."""
    rng = np.random.default_rng(seed)
    if not non_iid:
        return np.array_split(rng.permutation(len(labels)), clients)
    order = np.argsort(labels, kind="stable")
    blocks = np.array_split(order, 2 * clients)
    pick = rng.permutation(2 * clients)
    return [np.concatenate([blocks[pick[2 * k]], blocks[pick[2 * k + 1]]]) for k in range(clients)]


def run(args: argparse.Namespace, epsilon: float | None) -> dict[str, object]:
    split = load_dataset("mnist", args.data_dir)
    x, y = split.train.to_tensors()
    parts = shards(split.train.labels, args.clients, args.non_iid, args.seed)
    clients = [
        LocalSGDClient(
            x[p],
            y[p],
            local_steps=args.local_steps,
            learning_rate=args.client_lr,
            batch_size=args.client_batch,
            seed=args.seed * 100_000 + k,
        )
        for k, p in enumerate(parts)
    ]
    q = args.expected_clients / args.clients
    if epsilon is None:
        z, clip = 1e-9, FixedClipping(1e6)
    else:
        z = noise_multiplier(epsilon, args.delta, q, args.rounds).noise_multiplier
        clip = FixedClipping(args.clip)
    torch.manual_seed(args.seed)
    model = build_model(args.model, split.feature_shape, split.num_classes)
    fed = DPFedAvg(
        model,
        clients,
        sample_rate=q,
        noise_multiplier=z,
        clipping=clip,
        server_learning_rate=args.server_lr,
        seed=args.seed,
    )
    start = time.perf_counter()
    curve = []
    for r in range(1, args.rounds + 1):
        fed.round()
        if r % args.eval_every == 0 or r == args.rounds:
            acc = accuracy(model, split.test)
            curve.append({"round": r, "test_accuracy": acc})
            print(f"eps {epsilon}: round {r} acc {acc:.4f}", file=sys.stderr)
    spent = None if epsilon is None else fed.epsilon(args.delta).epsilon
    return {
        "target_epsilon": epsilon,
        "epsilon": spent,
        "noise_multiplier": z,
        "sample_rate": q,
        "test_accuracy": curve[-1]["test_accuracy"],
        "curve": curve,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--expected-clients", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--local-steps", type=int, default=5)
    parser.add_argument("--client-batch", type=int, default=20)
    parser.add_argument("--client-lr", type=float, default=0.1)
    parser.add_argument("--server-lr", type=float, default=1.0)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--non-iid", action="store_true")
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [run(args, None)] + [run(args, eps) for eps in args.epsilons]
    report = {
        "benchmark": "dp-fedavg-mnist",
        "settings": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
