"""Launch multi-process DP-SGD: ``torchrun`` / ``python -m deniable.distributed.train``, or
:func:`run_worker` from ``torch.multiprocessing.spawn``.

    torchrun --nproc-per-node 2 -m deniable.distributed.train --steps 50 --seed 0

Each worker reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (torchrun sets them), joins the
run (:func:`~deniable.distributed.group.join` checks the ranks agree), trains a model on a
registered dataset with :func:`~deniable.distributed.dp_sgd.make_distributed_private`, checks
that all replicas are bit-identical, and rank 0 prints one JSON object with ``epsilon``,
``delta``, ``accountant`` and ``test_accuracy``. Every error a user can cause (bad ranks, a world
size mismatch, a refused step, a dead worker) ends the worker with one line on stderr and a
non-zero exit code (2 for settings, 1 for a lost worker).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from deniable.data import load_dataset
from deniable.distributed.dp_sgd import (
    DistributedPrivateTraining,
    WorkerLostError,
    make_distributed_private,
    model_digest,
)
from deniable.distributed.group import Rendezvous, join
from deniable.errors import DeniableError
from deniable.models import build_model
from deniable.train.checkpoint import load_checkpoint, write_checkpoint
from deniable.train.trainer import accuracy


@dataclass(frozen=True)
class TrainSpec:
    """What every worker trains: the same on every rank (checked when the run starts)."""

    dataset: str = "digits"
    model: str = "mlp"
    steps: int = 20
    batch_size: int = 64
    max_grad_norm: float = 1.0
    noise_multiplier: float = 1.0
    learning_rate: float = 0.5
    delta: float = 1e-5
    seed: int | None = None
    physical_batch_size: int | None = None
    verify_every: int = 10
    checkpoint: str | None = None
    checkpoint_every: int = 0


def run_worker(
    rank: int,
    world_size: int,
    spec: TrainSpec,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
    timeout_s: float = 60.0,
) -> dict[str, object] | None:
    """Train as ``rank`` of ``world_size``; rank 0 returns the result, other ranks None.

    The signature suits ``torch.multiprocessing.spawn(run_worker, args=(world_size, spec, …))``.
    """
    rendezvous = Rendezvous(rank, world_size, master_addr, master_port, timeout_s)
    return train(rendezvous, spec)


def train(rendezvous: Rendezvous, spec: TrainSpec) -> dict[str, object] | None:
    """One worker's whole run; see the module docstring."""
    torch.set_num_threads(1)  # W workers share the machine's cores
    split = load_dataset(spec.dataset)
    if spec.seed is not None:
        torch.manual_seed(spec.seed)  # rank 0's initial weights are copied to every rank anyway
    model = build_model(spec.model, split.feature_shape, split.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.learning_rate)
    x, y = split.train.to_tensors()
    with join(rendezvous) as group:
        training = make_distributed_private(
            model,
            optimizer,
            nn.functional.cross_entropy,
            x,
            y,
            group=group,
            batch_size=spec.batch_size,
            max_grad_norm=spec.max_grad_norm,
            noise_multiplier=spec.noise_multiplier,
            physical_batch_size=spec.physical_batch_size,
            seed=spec.seed,
        )
        path = None if spec.checkpoint is None else Path(spec.checkpoint)
        if path is not None:
            _resume(training, path, group.is_leader, spec)
        remaining = spec.steps - training.steps_done
        for batch in training.batches(steps=remaining) if remaining > 0 else ():
            training.step(batch)
            done = training.steps_done
            if spec.verify_every and done % spec.verify_every == 0:
                training.verify_replicas()
            if path is not None and spec.checkpoint_every and done % spec.checkpoint_every == 0:
                _save(training, path, group.is_leader, spec)
        training.verify_replicas()
        if path is not None:
            _save(training, path, group.is_leader, spec)
        if not group.is_leader:
            return None
        spent = training.epsilon(spec.delta)
        return {
            "epsilon": spent.epsilon,
            "delta": spent.delta,
            "accountant": spent.accountant,
            "relation": spent.relation.value,
            "unit": training.tracker.unit,
            "steps": training.tracker.steps,
            "world_size": group.world_size,
            "sample_rate": training.sample_rate,
            "noise_multiplier": training.noise_multiplier,
            "test_accuracy": accuracy(model, split.test),
            "model_digest": model_digest(model),
            "spec": asdict(spec),
        }


def _save(
    training: DistributedPrivateTraining, path: Path, leader: bool, spec: TrainSpec
) -> None:
    """Rank 0 writes its state (the authoritative tracker, the noise generator) atomically."""
    if leader:
        write_checkpoint(path, _resumable(asdict(spec)), None, training.state_dict())


def _resume(
    training: DistributedPrivateTraining, path: Path, leader: bool, spec: TrainSpec
) -> None:
    """Rank 0 reads the checkpoint (if there is one) and sends it to every rank, so only rank
    0's machine needs the file; every rank then continues from the same step, sampler, model
    and privacy spent. A checkpoint of another spec (other than ``steps``) is refused on every
    rank with rank 0's reason."""
    message: object = None
    if leader and path.exists():
        try:
            state = load_checkpoint(path)
            if state["config"] != _resumable(asdict(spec)):
                raise DeniableError(
                    f"{path} was written by a run with other settings; resume with the same "
                    "ones (only --steps may grow) or use another --checkpoint"
                )
            message = state["training"]
        except DeniableError as error:
            message = f"error: {error}"
    box: list[object] = [message]
    dist.broadcast_object_list(box, src=0)
    received = box[0]
    if isinstance(received, str):
        raise DeniableError(received.removeprefix("error: "))
    if isinstance(received, dict):
        training.load_state_dict(received)


def _resumable(spec: dict[str, object]) -> dict[str, object]:
    """The settings a resumed run must share with its checkpoint: all but how long it runs,
    where it checkpoints and how often it checks itself."""
    skip = {"steps", "checkpoint", "checkpoint_every", "verify_every"}
    return {k: v for k, v in spec.items() if k not in skip}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deniable.distributed.train",
        description="One worker of a multi-process DP-SGD run (launch W of them, e.g. torchrun).",
    )
    defaults = TrainSpec()
    parser.add_argument("--dataset", default=defaults.dataset)
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--max-grad-norm", type=float, default=defaults.max_grad_norm)
    parser.add_argument("--noise-multiplier", type=float, default=defaults.noise_multiplier)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--delta", type=float, default=defaults.delta)
    parser.add_argument("--seed", type=int, default=None, help="omit for OS-seeded (secure) noise")
    parser.add_argument("--physical-batch-size", type=int, default=None)
    parser.add_argument("--verify-every", type=int, default=defaults.verify_every)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a peer")
    parser.add_argument("--checkpoint", default=None, help="rank 0 saves/resumes here")
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    return parser


def _exit_now(message: str, code: int) -> None:
    """Report and leave at once. After a peer is lost, the group's C++ threads can abort the
    process while it tears them down (SIGABRT seen under load), which would hide the exit code
    that says why the run stopped; ``os._exit`` skips that teardown."""
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point; rank 0 prints the result as one JSON line."""
    args = _parser().parse_args(argv)
    spec = TrainSpec(
        dataset=args.dataset,
        model=args.model,
        steps=args.steps,
        batch_size=args.batch_size,
        max_grad_norm=args.max_grad_norm,
        noise_multiplier=args.noise_multiplier,
        learning_rate=args.learning_rate,
        delta=args.delta,
        seed=args.seed,
        physical_batch_size=args.physical_batch_size,
        verify_every=args.verify_every,
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every,
    )
    rank = "?"
    try:
        rendezvous = Rendezvous.from_env(timeout_s=args.timeout)
        rank = str(rendezvous.rank)
        result = train(rendezvous, spec)
    except WorkerLostError as error:
        _exit_now(f"error: {error}", 1)
    except DeniableError as error:
        print(f"error: rank {rank}: {error}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as error:  # a collective outside a step (setup) lost its peer
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        _exit_now(f"error: rank {rank}: the process group failed ({first})", 1)
    if result is not None:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
    # Done and written (checkpoint, result line): skip the interpreter's teardown of the gloo
    # and TCPStore threads, which can abort after a successful run and hide its exit code.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
