"""DP-SGD in your own PyTorch loop: three lines around the model, optimizer and loss you have.

    python examples/attach_to_your_loop.py            # about 90 % test accuracy at ε = 3
    python examples/attach_to_your_loop.py --quick    # a few seconds, for the tests

``make_private`` builds the sampler, the per-example clipping, the noise and the accounting
together, so they cannot disagree: batches come from the Poisson sampler the accountant assumes,
each step records the event it performed, and ε is computed from those events. The model is an
ordinary ``nn.Sequential`` (no BatchNorm, no in-place activations: ``make_private`` refuses
them with the reason). ``seed=None`` (the default) draws sampling and noise from the OS CSPRNG.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from deniable.data import load_dataset
from deniable.train.private import make_private


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings, for tests")
    parser.add_argument("--epsilon", type=float, default=3.0, help="target ε (default 3)")
    parser.add_argument("--delta", type=float, default=1e-5, help="δ (default 1e-5)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: OS CSPRNG)")
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else 30
    if args.seed is not None:
        torch.manual_seed(args.seed)

    # Your data, model, optimizer and loss, as they were.
    split = load_dataset("digits")  # scikit-learn's 8×8 digits, embedded: works offline
    x_train, y_train = split.train.to_tensors()
    x_test, y_test = split.test.to_tensors()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    loss_fn = nn.functional.cross_entropy

    # The three lines.
    private = make_private(model, optimizer, loss_fn, x_train, y_train, batch_size=256,
                           max_grad_norm=1.0, target_epsilon=args.epsilon, delta=args.delta,
                           epochs=epochs, seed=args.seed)  # fmt: skip
    for batch in private.batches(epochs=epochs):  # Poisson sampling, as the accountant assumes
        private.step(batch)  # clip per example, add noise once, update
    spent = private.epsilon(args.delta)  # from the events that actually happened

    accuracy = evaluate(model, x_test, y_test)
    print(
        f"ε = {spent.epsilon:.3f} at δ = {spent.delta:g} ({spent.accountant}, "
        f"{spent.relation.value}, per {private.tracker.unit})"
    )
    print(
        f"σ = {private.noise_multiplier:.3f}, q = {private.sample_rate:.4f}, "
        f"{private.steps_done} steps, secure noise: {private.noise.secure}"
    )
    print(f"test accuracy {accuracy:.1%}")
    return {
        "epsilon": spent.epsilon,
        "delta": spent.delta,
        "steps": float(private.steps_done),
        "noise_multiplier": private.noise_multiplier,
        "test_accuracy": accuracy,
    }


if __name__ == "__main__":
    main()
