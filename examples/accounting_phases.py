"""Heterogeneous composition and calibration: phases with different q and σ, one ε.

    python examples/accounting_phases.py            # a warm-up phase, then a large-batch phase
    python examples/accounting_phases.py --quick    # fewer steps, for the tests

A training run whose sampling rate or noise changes (a warm-up with small batches, then large
batches; a fine-tuning phase) is a composition of phases. Each phase is a self-composed
Poisson-sampled Gaussian event; the run is their ``ComposedEvent``, and the accountant composes
it exactly as it ran. Composing with the tight PLD accountant gives far less than adding the
phases' ε's (ε's compose sub-additively). Calibration is root finding over any event family:
here the σ of the second phase that keeps the whole run at a target ε, and the most steps a σ
allows. No torch: accounting is pure math over events.
"""

from __future__ import annotations

import argparse

from deniable import accounting
from deniable.accounting import calibrate
from deniable.events import (
    ComposedEvent,
    GaussianEvent,
    PoissonSampledEvent,
    PrivacyEvent,
    SelfComposedEvent,
)


def phase(sample_rate: float, noise_multiplier: float, steps: int) -> PrivacyEvent:
    """``steps`` DP-SGD steps at rate q and noise multiplier σ (clipping norm 1)."""
    return SelfComposedEvent(
        PoissonSampledEvent(sample_rate, GaussianEvent(noise_multiplier)), steps
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, for tests")
    parser.add_argument("--target-epsilon", type=float, default=3.0, help="ε for calibration")
    parser.add_argument("--delta", type=float, default=1e-5, help="δ (default 1e-5)")
    parser.add_argument(
        "--accountant", choices=("pld", "rdp"), default="pld",
        help="accountant for the calibrations (default pld, the tight one)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    tuner = args.accountant
    rtol = 1e-2 if args.quick else 1e-5  # relative tolerance of the calibrated σ
    scale = 5 if args.quick else 1
    warmup_steps, main_steps = 500 // scale, 200 // scale
    delta = args.delta

    warmup = phase(0.01, 1.0, warmup_steps)  # small batches
    large = phase(0.04, 2.0, main_steps)  # 4× larger batches, more noise
    run = ComposedEvent([warmup, large])
    composed = {name: accounting.epsilon(run, delta, accountant=name).epsilon
                for name in ("pld", "rdp")}  # fmt: skip
    per_phase = [accounting.epsilon(p, delta).epsilon for p in (warmup, large)]
    print(f"warm-up  q=0.01 σ=1.0 T={warmup_steps}: ε = {per_phase[0]:.3f} (δ = {delta:g})")
    print(f"main     q=0.04 σ=2.0 T={main_steps}: ε = {per_phase[1]:.3f}")
    print(
        f"both phases composed: ε = {composed['pld']:.3f} (pld), {composed['rdp']:.3f} (rdp); "
        f"the sum of the phases' ε would be {sum(per_phase):.3f}"
    )

    # Calibrate the main phase's σ so that the whole run stays at the target ε.
    sigma, eps = calibrate.smallest_noise(
        lambda s: ComposedEvent([warmup, phase(0.04, s, main_steps)]),
        args.target_epsilon,
        delta,
        accountant=tuner,
        rtol=rtol,
    )
    print(
        f"σ of the main phase for ε = {args.target_epsilon:g} overall: {sigma:.4f} "
        f"(gives ε = {eps:.4f}, {tuner})"
    )
    # And the most steps the main phase's settings allow on their own within the target.
    most = calibrate.max_steps(2.0, args.target_epsilon, delta, 0.04, accountant=tuner)
    print(
        f"steps at q=0.04, σ=2.0 within ε = {args.target_epsilon:g}: {most.steps} "
        f"(ε = {most.epsilon:.4f}, {tuner})"
    )
    return {
        "epsilon_pld": composed["pld"],
        "epsilon_rdp": composed["rdp"],
        "sum_of_phases": sum(per_phase),
        "calibrated_sigma": sigma,
        "calibrated_epsilon": eps,
        "max_steps": float(most.steps),
        "max_steps_epsilon": most.epsilon,
    }


if __name__ == "__main__":
    main()
