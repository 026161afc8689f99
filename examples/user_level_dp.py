"""User-level DP: one privacy unit per user, whatever number of examples the user holds.

    python examples/user_level_dp.py            # digits spread over ~320 simulated users
    python examples/user_level_dp.py --quick    # a few seconds, for the tests

With ``keys=user_ids`` the Poisson sampler draws *users* (q = batch_size / number of users),
each sampled user's gradients are summed over all their examples and that sum is clipped to C,
and the recorded events are per user: ε bounds what the model reveals about everything one user
contributed (add/remove one user).

The example also shows what example-level DP would have said about a user. Example-level DP-SGD
with the same σ, sampling rate and steps has the same ε, but per *example*; a user with k
examples then gets only the group-privacy guarantee (kε, k·e^{(k−1)ε}·δ) (Dwork & Roth 2014,
Thm 2.2), which is much weaker for heavy users.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from deniable import accounting
from deniable.accounting.calibrate import dpsgd_event
from deniable.data import load_dataset
from deniable.evaluate import group_privacy
from deniable.train.private import make_private


def simulated_users(n: int, max_per_user: int, rng: np.random.Generator) -> np.ndarray:
    """A user id per example: users hold 1 to ``max_per_user`` examples each."""
    keys = np.empty(n, dtype=np.int64)
    start, user = 0, 0
    order = rng.permutation(n)
    while start < n:
        size = int(rng.integers(1, max_per_user + 1))
        keys[order[start : start + size]] = user
        start, user = start + size, user + 1
    return keys


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings, for tests")
    parser.add_argument("--noise-multiplier", type=float, default=1.5, help="σ (default 1.5)")
    parser.add_argument("--delta", type=float, default=1e-5, help="δ (default 1e-5)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: OS CSPRNG)")
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else 20
    users_per_batch = 64
    if args.seed is not None:
        torch.manual_seed(args.seed)

    split = load_dataset("digits")
    x, y = split.train.to_tensors()
    keys = simulated_users(len(y), max_per_user=8, rng=np.random.default_rng(args.seed))
    num_users = len(np.unique(keys))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    private = make_private(
        model,
        optimizer,
        nn.functional.cross_entropy,
        x,
        y,
        batch_size=users_per_batch,  # expected *users* per batch
        max_grad_norm=1.0,
        noise_multiplier=args.noise_multiplier,
        keys=keys,  # the privacy unit is the user
        seed=args.seed,
    )
    for batch in private.batches(epochs=epochs):
        private.step(batch)
    user_level = private.epsilon(args.delta)

    # Example-level DP-SGD with the same σ, q and steps claims the same ε, per *example*; for
    # the user with the most examples that implies only group privacy.
    heaviest = int(np.bincount(keys).max())
    example_level = accounting.epsilon(
        dpsgd_event(args.noise_multiplier, private.sample_rate, private.steps_done), args.delta
    ).epsilon
    group = group_privacy(example_level, args.delta, heaviest)

    x_test, y_test = split.test.to_tensors()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(dim=1) == y_test).float().mean())
    print(f"{len(y)} examples held by {num_users} users (1 to {heaviest} each)")
    print(
        f"user-level ε = {user_level.epsilon:.3f} at δ = {args.delta:g} "
        f"(unit: {private.tracker.unit}, q = {private.sample_rate:.4f}, "
        f"{private.steps_done} steps, σ = {private.noise_multiplier})"
    )
    group_delta = f"{group.delta_k:.3g}" if group.delta_k < 1 else "≥ 1, i.e. no guarantee"
    print(
        f"example-level DP-SGD with the same σ, q and steps: ε = {example_level:.3f} per "
        f"example; for a user with {heaviest} examples that gives only ε = "
        f"{group.epsilon_k:.3f} at δ = {group_delta} (group privacy)"
    )
    print(f"test accuracy {accuracy:.1%}")
    return {
        "user_level_epsilon": user_level.epsilon,
        "example_level_epsilon": example_level,
        "group_epsilon": group.epsilon_k,
        "group_delta": group.delta_k,
        "num_users": float(num_users),
        "heaviest_user": float(heaviest),
        "test_accuracy": accuracy,
    }


if __name__ == "__main__":
    main()
