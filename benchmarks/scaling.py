"""Scale-out of DP-SGD over processes: one logical step on W gloo workers vs one process.

Same model, data, logical batch and seeds; the single-process baseline is ``make_private`` with
all the machine's threads, each of the W workers gets threads // W. Every configuration runs in
fresh processes (``torch.multiprocessing.spawn``); rank 0 times ``--steps`` logical steps after
one warm-up step, between barriers. Prints one JSON object: examples/s per configuration and the
speed-up ratios (W workers / one process).

    .venv/bin/python benchmarks/scaling.py [--world-sizes 1 2 4] [--batch-size 512] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from deniable.distributed import Rendezvous, free_port, join, make_distributed_private
from deniable.models import build_model
from deniable.train.private import make_private

N, FEATURES, CLASSES = 20_000, (1, 28, 28), 10


def problem(model_name: str) -> tuple[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, *FEATURES, generator=g)
    y = torch.randint(0, CLASSES, (N,), generator=g)
    torch.manual_seed(0)
    model = build_model(model_name, FEATURES, CLASSES)
    return model, torch.optim.SGD(model.parameters(), lr=0.1), x, y


def single(model_name: str, batch: int, steps: int, threads: int) -> float:
    """Examples per second of make_private in this process."""
    torch.set_num_threads(threads)
    model, optimizer, x, y = problem(model_name)
    training = make_private(
        model,
        optimizer,
        nn.functional.cross_entropy,
        x,
        y,
        batch_size=batch,
        max_grad_norm=1.0,
        noise_multiplier=1.0,
        seed=0,
    )
    batches = training.batches(steps=steps + 1)
    training.step(next(batches))  # warm-up
    start = time.perf_counter()
    for b in batches:
        training.step(b)
    return batch * steps / (time.perf_counter() - start)


def worker(rank: int, size: int, port: int, args: argparse.Namespace, out: str) -> None:
    torch.set_num_threads(max(1, args.threads // size))
    model, optimizer, x, y = problem(args.model)
    with join(Rendezvous(rank, size, "127.0.0.1", port, 120)) as group:
        training = make_distributed_private(
            model,
            optimizer,
            nn.functional.cross_entropy,
            x,
            y,
            group=group,
            batch_size=args.batch_size,
            max_grad_norm=1.0,
            noise_multiplier=1.0,
            seed=0,
        )
        batches = training.batches(steps=args.steps + 1)
        training.step(next(batches))  # warm-up
        dist.barrier()
        start = time.perf_counter()
        for b in batches:
            training.step(b)
        dist.barrier()
        elapsed = time.perf_counter() - start
        training.verify_replicas()
    if rank == 0:
        Path(out).write_text(json.dumps({"examples_per_s": args.batch_size * args.steps / elapsed}))


def distributed(size: int, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        mp.spawn(worker, args=(size, free_port(), args, out), nprocs=size)
        return float(json.loads(Path(out).read_text())["examples_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    baseline = single(args.model, args.batch_size, args.steps, args.threads)
    runs = {size: distributed(size, args) for size in args.world_sizes}
    print(
        json.dumps(
            {
                "benchmark": "scaling",
                "model": args.model,
                "batch_size": args.batch_size,
                "steps": args.steps,
                "threads": args.threads,
                "machine": platform.processor() or platform.machine(),
                "python": sys.version.split()[0],
                "torch": torch.__version__,
                "single_process_examples_per_s": baseline,
                "workers_examples_per_s": {str(k): v for k, v in runs.items()},
                "speedup_vs_single_process": {str(k): v / baseline for k, v in runs.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
