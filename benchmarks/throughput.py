"""Throughput and peak memory of one training step: non-private vs deniable vs Opacus.

Same model, same batch (256 by default), same machine, one run. Each (model, mode) runs in a fresh
subprocess so its peak RSS (ru_maxrss) is its own. Modes:

- ``nonprivate``: forward, backward, SGD step;
- ``deniable``: our DP step (per-example clipping, noise once, expected-batch averaging; ghost
  clipping where it pays off, vmap otherwise); ``deniable_compiled``: the same step with
  ``compiled=True`` (torch.compile of per-example gradients + clipping; compilation happens in
  the warm-up step and is not timed); ``deniable_two_pass``: ghost clipping in two backward passes
  (norms in the first, the clipped sum in the second: less memory than book-keeping, more time);
- ``opacus_hooks`` / ``opacus_ghost``: Opacus 1.6's GradSampleModule (hooks) and ghost clipping
  (bench-only dependency).

Prints one JSON object with examples/s (and the median, fastest and slowest step), peak RSS, peak
live tensor memory (from the profiler's allocation events in one extra, untimed step: the step's
own need, apart from the C allocator's fragmentation, which RSS includes) and the ratios (deniable
/ nonprivate, deniable / opacus). Models: ``mnist-cnn`` (the Papernot et al. CNN on 28×28),
``transformer`` (2-layer encoder, d=64, 4 heads, seq 32, vocabulary 1000, mean-pooled classifier),
``transformer-6x256`` (issue #11's: 6-layer encoder, d=256, 8 heads, feed-forward 1024, seq 128)
and ``char-lstm`` (embedding 32, one LSTM layer of 128, seq 32, vocabulary 64, last-state
classifier): non-private with the fused nn.LSTM, deniable with its DPLSTM (Linear layers, ghost
clipping), Opacus with its own DPLSTM (required by Opacus for LSTMs). In the deniable modes the
transformers' ``nn.MultiheadAttention`` is replaced by ``DPMultiheadAttention`` (same function,
Linear projections, so ghost clipping covers it), as ``deniable.train.validate.repair`` does.

``--memory-cap-gb`` limits each mode's address space (RLIMIT_AS): a mode that needs more fails
with an out-of-memory error in its row instead of pushing the machine into swap or the OOM killer.
``--keep-freed-memory`` runs every mode with glibc's allocator told to keep freed memory
(``MALLOC_MMAP_THRESHOLD_`` = 32 MiB, ``MALLOC_TRIM_THRESHOLD_`` = 4 GiB) instead of returning
large blocks to the OS after each use: by default every step then page-faults its big tensors
in again: on this machine the CNN's DP step took 37–42 ms (median) against 26–28 ms with freed
memory kept, with medians up to 30 % above the fastest step (RESULTS.md, sixth run). Every
mode, private or not, gets the same allocator.
``--device cuda`` runs every mode on the GPU (timed between ``torch.cuda.synchronize`` calls);
peak memory is then ``torch.cuda.max_memory_allocated`` (live tensors, warm-up included) and
the address-space cap is not applied. Not yet run: no GPU has been lent to this project.

    .venv/bin/python benchmarks/throughput.py [--batch-size 256] [--steps 5] \
        [--models mnist-cnn,transformer-6x256] [--modes nonprivate,deniable] [--memory-cap-gb 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

KEEP_FREED_MEMORY = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(4 * 2**30),
}
MODES = (
    "nonprivate",
    "deniable",
    "deniable_two_pass",
    "deniable_compiled",
    "opacus_hooks",
    "opacus_ghost",
)
MODELS = ("mnist-cnn", "transformer", "transformer-6x256", "char-lstm")


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 1000, d: int = 64, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)  # positions omitted: throughput only
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


class CharLSTMClassifier(nn.Module):
    def __init__(
        self, lstm: nn.Module, vocab: int = 64, embed: int = 32, hidden: int = 128
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = lstm
        self.head = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(x))[0][:, -1])


def build(
    name: str, batch: int, mode: str = "nonprivate"
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    if name == "char-lstm":
        lstm: nn.Module = nn.LSTM(32, 128, batch_first=True)
        if mode.startswith("deniable"):
            from deniable.models.lstm import DPLSTM

            lstm = DPLSTM.from_lstm(lstm)  # type: ignore[arg-type]
        elif mode.startswith("opacus"):
            from opacus.layers import DPLSTM as OPACUS_DPLSTM

            lstm = OPACUS_DPLSTM(32, 128, batch_first=True)
        model = CharLSTMClassifier(lstm)
        return model, torch.randint(0, 64, (batch, 32)), torch.randint(0, 2, (batch,))
    if name == "mnist-cnn":
        from deniable.models import build_model

        model = build_model("papernot-cnn", (1, 28, 28), 10)
        return model, torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    if name == "transformer-6x256":
        model, steps = TinyTransformer(d=256, heads=8, layers=6), 128
    else:
        model, steps = TinyTransformer(), 32
    if mode.startswith("deniable"):
        from deniable.models.attention import replace_attention

        replace_attention(model)
    return model, torch.randint(0, 1000, (batch, steps)), torch.randint(0, 2, (batch,))


def run_one(
    name: str, mode: str, batch: int, steps: int, device: str = "cpu"
) -> dict[str, float | str]:
    model, x, y = build(name, batch, mode)
    model, x, y = model.to(device), x.to(device), y.to(device)
    loss_fn = nn.functional.cross_entropy
    step = _step_function(model, x, y, loss_fn, mode, batch)
    cuda = torch.device(device).type == "cuda"
    step()  # warm-up (and torch.func / hook set-up)
    times = []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    row: dict[str, float | str] = {
        "model": name,
        "mode": mode,
        "device": device,
        "examples_per_s": batch * steps / sum(times),
        # the spread says how far one run's speed can be trusted on a shared machine
        "step_ms_median": 1000 * statistics.median(times),
        "step_ms_min": 1000 * min(times),
        "step_ms_max": 1000 * max(times),
    }
    if cuda:  # the allocator's own peak of live tensors (warm-up included, as RSS is)
        row["peak_live_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        row["peak_live_mb"] = peak_live_mb(step, [*model.parameters(), *model.buffers(), x, y])
    if mode == "deniable":
        from deniable.train.clipped_sum import switched_to_two_pass

        if switched_to_two_pass(model):  # book-keeping ran out of memory
            row["mode"] = "deniable (two-pass after out-of-memory)"
    return row


def peak_live_mb(step: Callable[[], None], resident: list[torch.Tensor]) -> float:
    """Peak bytes of live tensors in one (untimed) step: the ``resident`` ones (model, batch)
    plus the peak of the step's own allocations, from the profiler's allocation events; the CPU
    analogue of ``torch.cuda.max_memory_allocated``, apart from how the C allocator keeps freed
    memory (peak RSS counts both, and glibc's fragmentation differs between modes)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = prof.profiler.kineto_results.events()  # type: ignore[union-attr]
    changes = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    return (peak + sum(t.numel() * t.element_size() for t in resident)) / 2**20


def _step_function(model, x, y, loss_fn, mode, batch):  # type: ignore[no-untyped-def]
    if mode == "nonprivate":
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()

        return step
    if mode in ("deniable", "deniable_two_pass", "deniable_compiled"):
        from deniable.train.dp_step import Clipping, noisy_gradient
        from deniable.train.noise import NoiseSource

        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        noise = NoiseSource(0)
        units = torch.arange(batch, device=x.device)

        def step() -> None:
            grads, _ = noisy_gradient(
                model,
                loss_fn,
                x,
                y,
                units,
                clipping=Clipping(1.0),
                noise_multiplier=1.0,
                expected_batch_units=float(batch),
                noise=noise,
                compiled=mode == "deniable_compiled",
                ghost_two_pass=mode == "deniable_two_pass",
            )
            for name, p in model.named_parameters():
                p.grad = grads[name]
            opt.step()

        return step
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    model = ModuleValidator.fix(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)
    engine = PrivacyEngine()
    ghost = mode == "opacus_ghost"
    criterion = nn.CrossEntropyLoss()
    made = engine.make_private(
        module=model,
        optimizer=opt,
        data_loader=loader,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        poisson_sampling=False,
        grad_sample_mode="ghost" if ghost else "hooks",
        **({"criterion": criterion} if ghost else {}),
    )
    private_model, private_opt = made[0], made[1]
    private_loss = made[2] if ghost else criterion

    def step() -> None:
        private_opt.zero_grad(set_to_none=True)
        loss = private_loss(private_model(x), y)
        loss.backward()
        private_opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "MODE"))
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated")
    parser.add_argument("--memory-cap-gb", type=float, default=0.0, help="per mode (0: none)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (peak memory: see doc)")
    parser.add_argument(
        "--keep-freed-memory", action="store_true", help="glibc malloc keeps freed memory (doc)"
    )
    args = parser.parse_args()
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r}: give cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device here; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device}: only cpu and cuda are measured")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        if args.memory_cap_gb and device.type == "cpu":
            cap = int(args.memory_cap_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        print(
            json.dumps(run_one(args.one[0], args.one[1], args.batch_size, args.steps, args.device))
        )
        return
    models, modes = args.models.split(","), args.modes.split(",")
    rows = []
    for name in models:
        for mode in modes:
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    name,
                    mode,
                    "--threads",
                    str(args.threads),
                    "--batch-size",
                    str(args.batch_size),
                    "--steps",
                    str(args.steps),
                    "--memory-cap-gb",
                    str(args.memory_cap_gb),
                    "--device",
                    args.device,
                ],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, **(KEEP_FREED_MEMORY if args.keep_freed_memory else {})},
            )
            if done.returncode != 0:
                error = (done.stderr.strip().splitlines() or ["failed"])[-1]
                rows.append({"model": name, "mode": mode, "error": error})
            else:
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    ratios = {}
    for name in models:
        by_mode = {r["mode"]: r for r in rows if r["model"] == name and "error" not in r}
        ours = by_mode.get("deniable")
        if ours is None:
            continue
        for other in ("nonprivate", "opacus_hooks", "opacus_ghost"):
            if other in by_mode:
                ratios[f"{name}: deniable/{other} speed"] = (
                    ours["examples_per_s"] / by_mode[other]["examples_per_s"]
                )
                for key, label in (("peak_rss_mb", "memory"), ("peak_live_mb", "live memory")):
                    if key in ours:
                        ratios[f"{name}: deniable/{other} {label}"] = (
                            ours[key] / by_mode[other][key]
                        )
    print(
        json.dumps(
            {
                "benchmark": "throughput",
                "batch_size": args.batch_size,
                "steps": args.steps,
                "torch_threads": torch.get_num_threads(),
                "memory_cap_gb": args.memory_cap_gb or None,
                "device": args.device,
                "malloc": KEEP_FREED_MEMORY if args.keep_freed_memory else "default",
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                "machine": platform.machine(),
                "rows": rows,
                "ratios": ratios,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
