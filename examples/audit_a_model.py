"""Audit a trained model: LOSS membership inference, and a one-run canary ε lower bound.

    python examples/audit_a_model.py            # 1000 canaries, 30 epochs, ε = 3
    python examples/audit_a_model.py --quick    # 200 canaries, 2 epochs, for the tests

The accountant's ε is an *upper* bound. An audit measures a *lower* bound from real attacks:

1. **One-run canary audit** (Steinke, Nasr & Jagielski 2023) of the training algorithm: m
   out-of-distribution canaries (uniform random inputs with random labels), each included in the
   training set with probability 1/2; after one training run the canaries' negative losses and
   the coin flips give ε_lb at 95 % confidence, including δ. The same canaries audit the
   non-private algorithm too, to show the attack has power on this data.
2. **LOSS attack** (Yeom et al. 2018) on the trained model: training examples (members) against
   test examples (non-members); AUC, TPR at low FPR and membership advantage.

A lower bound above the accountant's ε would mean a bug (or a 5 % failure of the test).
"""

from __future__ import annotations

import argparse

from deniable.audit import attack_metrics, compare, one_run_lower_bound
from deniable.audit.canaries import canary_scores, random_input_canaries, with_canaries
from deniable.auditing import loss_attack_scores
from deniable.config import TrainConfig
from deniable.data import Split, load_dataset
from deniable.train.trainer import train_baseline, train_private


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings, for tests")
    parser.add_argument("--epsilon", type=float, default=3.0, help="target ε (default 3)")
    parser.add_argument(
        "--noise-multiplier", type=float, default=None,
        help="σ instead of a target ε (--quick uses σ = 1 to skip the calibration)",
    )  # fmt: skip
    parser.add_argument("--delta", type=float, default=1e-5, help="δ (default 1e-5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of canaries and training")
    args = parser.parse_args(argv)
    canary_count, epochs = (200, 2.0) if args.quick else (1000, 30.0)
    sigma = args.noise_multiplier if args.noise_multiplier or not args.quick else 1.0

    split = load_dataset("digits")
    canaries = random_input_canaries(
        split.feature_shape, split.num_classes, canary_count, seed=args.seed + 7919
    )
    audited = Split(train=with_canaries(split.train, canaries), test=split.test)
    config = TrainConfig(
        epochs=epochs,
        noise_multiplier=sigma,
        target_epsilon=None if sigma else args.epsilon,  # ε is computed from events either way
        delta=args.delta,
        seed=args.seed,
    )

    # DP-SGD on the data plus the included canaries: the model we audit.
    private = train_private(audited, config)
    claimed = private.training.epsilon(args.delta).epsilon
    bound = one_run_lower_bound(
        canary_scores(private.model, canaries),
        canaries.included,
        delta=args.delta,
        confidence=0.95,
    )
    versus = compare(claimed, bound)
    # The same canaries without DP: does the attack find anything when nothing protects them?
    plain_model, _, _ = train_baseline(audited, config)
    plain = one_run_lower_bound(
        canary_scores(plain_model, canaries), canaries.included, delta=args.delta
    )
    # LOSS attack on the private model: real training examples vs test examples.
    loss = attack_metrics(*loss_attack_scores(private.model, split))

    print(
        f"claimed ε = {claimed:.3f} at δ = {args.delta:g}; test accuracy "
        f"{private.test_accuracy:.1%}"
    )
    print(
        f"one-run audit, {canary_count} canaries ({int(canaries.included.sum())} included): "
        f"ε ≥ {bound.epsilon:.3f} at {bound.confidence:.0%} confidence "
        f"(consistent with the claim: {versus['consistent']})"
    )
    print(f"same audit without DP: ε ≥ {plain.epsilon:.3f}")
    tprs = ", ".join(f"{tpr:.3f} at {level:g}" for level, tpr in loss.tpr_at_fpr.items())
    print(f"LOSS attack: AUC {loss.auc:.3f}, advantage {loss.advantage:.3f}, TPR {tprs} FPR")
    return {
        "claimed_epsilon": claimed,
        "epsilon_lower_bound": bound.epsilon,
        "non_private_lower_bound": plain.epsilon,
        "loss_auc": loss.auc,
        "loss_advantage": loss.advantage,
        "test_accuracy": private.test_accuracy,
    }


if __name__ == "__main__":
    main()
