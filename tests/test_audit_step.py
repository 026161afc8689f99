"""White-box audit of one DP-SGD step with a Dirac canary (Nasr et al. 2023).

The model is a bias-free nn.Linear(8, 1) at zero weights with loss = output sum, so an example's
gradient is its input and the canary G·e_j (G = 1000·C) has the Dirac gradient G·e_j, clipped to
C·e_j. Every audit runs at confidence 0.95 and δ = 1e-5, fixed seeds. Error rates quoted below:
"false flag" is bounded by 1 − confidence = 5 % by the bound's guarantee; the simulated rates come
from 400 independent seeds of the same Gaussian score distributions through the same bound
(Bonferroni grid of 64 thresholds, the default).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from deniable.accounting.gaussian_exact import analytic_gaussian_sigma, gaussian_epsilon
from deniable.audit.bounds import HeldOutThreshold
from deniable.audit.step_audit import (
    StepAuditResult,
    StepTrial,
    audit_scores,
    audit_step,
    dp_step_trial,
    run_trials,
)
from deniable.errors import DeniableError
from deniable.events import GaussianEvent
from deniable.train.dp_step import Clipping, step_event

D, J, DELTA = 8, 3, 1e-5


def sum_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return outputs.sum()


def make_linear() -> nn.Linear:
    model = nn.Linear(D, 1, bias=False)
    nn.init.zeros_(model.weight)
    return model


def ordinary_batch(n: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, D, generator=torch.Generator().manual_seed(seed))
    return x, torch.zeros(n)


def with_partner(clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Five ordinary examples, the last one −C·e_j: with microbatches of 2 it shares microbatch 2
    with the canary (unit 5), whose clipped sum the canary moves from −C·e_j to +C·e_j."""
    x, y = ordinary_batch()
    x[4] = 0.0
    x[4, J] = -clip
    return x, y


def real_trial(
    clipping: Clipping, sigma: float, x: torch.Tensor | None = None, y: torch.Tensor | None = None
) -> StepTrial:
    if x is None or y is None:
        x, y = ordinary_batch()
    return dp_step_trial(
        make_linear(),
        sum_loss,
        x,
        y,
        clipping=clipping,
        noise_multiplier=sigma,
        expected_batch_units=6.0,
        coordinate=J,
    )


def e_j() -> dict[str, torch.Tensor]:
    direction = torch.zeros(1, D)
    direction[0, J] = 1.0
    return {"weight": direction}


def report(result: StepAuditResult) -> str:
    return (
        f"eps_lb={result.lower.epsilon:.3f} claimed={result.claimed_epsilon:.3f} "
        f"mu_lb={result.lower.details.get('mu_lower')} mu_hat={result.details['mu_hat']:.3f}"
    )


# --- the canary and the trial machinery ---------------------------------------------------------


def test_dirac_canary_projects_on_its_coordinate() -> None:
    trial = real_trial(Clipping(1.0), 1.0)
    assert set(trial.direction) == {"weight"}
    torch.testing.assert_close(trial.direction["weight"], e_j()["weight"].double())
    released = trial.step(True, 7)
    assert trial.score(released) == pytest.approx(float(released["weight"][0, J]))
    assert trial.event == GaussianEvent(sigma=1.0, sensitivity=1.0)


@pytest.mark.parametrize("clipping", [Clipping(1.0), Clipping(1.0, microbatch_size=2)])
def test_batched_path_runs_the_same_step(clipping: Clipping) -> None:
    """One trial through the batched path equals the one-call path at the same seed, bit for bit
    (ghost clipping and, with microbatches, the vmap path)."""
    trial = real_trial(clipping, 1.0, *with_partner(1.0))
    assert trial.batched is not None
    for include in (True, False):
        one = trial.step(include, 11)
        many = trial.batched(include, 11, 1)
        assert torch.equal(many["weight"][0], one["weight"])
        assert trial.batched(include, 11, 5)["weight"].shape == (5, 1, D)


def test_noise_off_release_is_the_clipped_sum_over_the_expected_batch() -> None:
    x, y = ordinary_batch()
    trial = real_trial(Clipping(1.0), 0.0, x, y)
    clipped = x * torch.clamp(1.0 / x.norm(dim=1, keepdim=True), max=1.0)
    without = trial.step(False, 0)["weight"][0]
    with_canary = trial.step(True, 0)["weight"][0]
    torch.testing.assert_close(without, clipped.sum(0) / 6.0)
    torch.testing.assert_close(with_canary - without, e_j()["weight"][0] / 6.0)


def test_run_trials_halves_and_orders_by_seed() -> None:
    trial = real_trial(Clipping(1.0), 1.0)
    scores, member = run_trials(trial, trials=301, seed=3, unbatched_trials=20)
    assert member.sum() == 150 and scores.shape == (301,)
    again, member_again = run_trials(trial, trials=301, seed=3, unbatched_trials=20)
    np.testing.assert_array_equal(member, member_again)
    np.testing.assert_array_equal(scores, again)
    _, other = run_trials(trial, trials=301, seed=4, unbatched_trials=20)
    assert not np.array_equal(member, other)


# --- 1. the correct step is not flagged, and the audit is tight ----------------------------------


def test_correct_step_is_not_flagged_and_the_bound_is_tight() -> None:
    """σ = 1, C = 2, q = 1, one step: the claim GaussianEvent(σC, C) has μ = 1/σ = 1 (ε = 4.377 at
    δ = 1e-5). With 4000 trials the GDP bound reaches ε_lb = 3.63 (0.83 × the exact ε). False
    flag ≤ 5 % (simulated 0/400); ε_lb < 0.6 × exact simulated 0/400 (minimum ratio 0.72)."""
    sigma, clip = 1.0, 2.0
    trial = real_trial(Clipping(clip), sigma)
    assert trial.event == GaussianEvent(sigma=sigma * clip, sensitivity=clip)
    result = audit_step(trial, trials=4000, claimed=trial.event, delta=DELTA, seed=1)
    exact = gaussian_epsilon(1 / sigma, DELTA)
    assert result.claimed_epsilon == pytest.approx(exact, rel=1e-3)
    assert not result.flagged, report(result)
    assert result.lower.epsilon >= 0.6 * exact, report(result)
    assert result.lower.method == "gdp"
    assert result.details["mu_hat"] == pytest.approx(1.0, abs=0.1)
    assert result.details["trials_one_call_each"] == 256
    assert result.details["trials_batched"] == 3744
    assert result.trials == 4000


def test_correct_step_calibrated_to_epsilon_one_is_not_flagged() -> None:
    """One step, q = 1, C = 1, σ = 3.731 from the analytic Gaussian calibration (Balle & Wang
    2018), so the claim is exactly ε = 1 at δ = 1e-5 (μ = 1/σ = 0.268). With 4000 trials the GDP
    bound is ε_lb = 0.39 here (μ_lb = 0.11). False flag ≤ 5 % by the bound's guarantee; simulated
    0/400 (ε_lb over 400 seeds of the same score distributions: mean 0.39, max 0.77)."""
    sigma, clip = analytic_gaussian_sigma(1.0, DELTA), 1.0
    trial = real_trial(Clipping(clip), sigma)
    assert trial.event == GaussianEvent(sigma=sigma * clip, sensitivity=clip)
    result = audit_step(trial, trials=4000, claimed=trial.event, delta=DELTA, seed=2)
    assert gaussian_epsilon(1 / sigma, DELTA) == pytest.approx(1.0, rel=1e-9)
    assert result.claimed_epsilon == pytest.approx(1.0, rel=1e-3)
    assert not result.flagged, report(result)
    assert 0 < result.lower.epsilon <= 1.0, report(result)
    assert result.details["mu_hat"] == pytest.approx(1 / sigma, abs=0.1)


def test_correct_step_clopper_pearson_and_held_out_are_not_flagged() -> None:
    trial = real_trial(Clipping(1.0), 1.0)
    assert trial.event is not None
    for kwargs in ({"method": "clopper_pearson"}, {"strategy": HeldOutThreshold(0.5, seed=2)}):
        result = audit_step(trial, trials=2000, claimed=trial.event, delta=DELTA, **kwargs)
        assert not result.flagged, report(result)
        assert result.lower.epsilon > 0


# --- 2. noise off ---------------------------------------------------------------------------------


def test_noise_off_is_flagged() -> None:
    """No noise, claims σ = 1 (ε = 4.38): the scores separate perfectly; with 8000 trials
    ε_lb = 40.6 (GDP, μ_lb = 5.8) and 6.2 (Clopper–Pearson, valid for any mechanism: with zero
    errors its ceiling is about ln(n_per_class / ln(k/α))). Miss rate 0: the scores are
    deterministic."""
    trial = real_trial(Clipping(1.0), 0.0)
    claimed = step_event(Clipping(1.0), 1.0)
    gdp = audit_step(trial, trials=8000, claimed=claimed, delta=DELTA)
    assert gdp.flagged, report(gdp)
    assert gdp.lower.epsilon > 3 * gdp.claimed_epsilon, report(gdp)
    assert gdp.details["score_std_with"] == pytest.approx(0.0, abs=1e-6)
    cp = audit_step(trial, trials=8000, claimed=claimed, delta=DELTA, method="clopper_pearson")
    assert cp.flagged, report(cp)


# --- 3. per-microbatch clipping claimed as per-example -------------------------------------------


def microbatch_sum_step(clip: float, sigma: float, expected: float) -> StepTrial:
    """A hand-written step that back-propagates each microbatch of 2 (the canary is unit 5, with
    the partner −C·e_j as unit 4), clips the microbatch *sum* to C, adds N(0, σ²C²) and divides
    by the expected batch: one example moves the clipped sum by 2C, but it claims C."""
    x, y = with_partner(clip)
    canary = torch.zeros(1, D)
    canary[0, J] = 1000 * clip
    sums: dict[bool, torch.Tensor] = {}
    for include in (True, False):
        inputs = torch.cat([x, canary]) if include else x
        model = make_linear()
        total = torch.zeros(1, D)
        for start in range(0, inputs.shape[0], 2):
            model.zero_grad()
            sum_loss(model(inputs[start : start + 2]), y[:1]).backward()
            grad = model.weight.grad
            assert grad is not None
            total += grad * min(1.0, clip / float(grad.norm()))
        sums[include] = total

    def step(include_canary: bool, seed: int) -> dict[str, torch.Tensor]:
        noise = torch.randn(1, D, generator=torch.Generator().manual_seed(seed))
        return {"weight": (sums[include_canary] + sigma * clip * noise) / expected}

    return StepTrial(step=step, direction=e_j(), description="microbatch sum clipped")


def test_microbatch_clipping_claimed_per_example_is_flagged() -> None:
    """σ = 2, C = 1: true μ = 2/σ = 1 (ε = 4.38), claimed μ = 1/σ = 0.5 (ε = 1.99). With 8000
    trials ε_lb = 4.02 (μ_lb = 0.93). Power: simulated μ_lb ≥ 0.81 in 400/400 seeds (1 % quantile
    0.83) against 0.5 needed, about 15 standard deviations: the miss rate is negligible."""
    sigma, clip = 2.0, 1.0
    trial = microbatch_sum_step(clip, sigma, 6.0)
    claimed = GaussianEvent(sigma=sigma * clip, sensitivity=clip)
    result = audit_step(trial, trials=8000, claimed=claimed, delta=DELTA, seed=5)
    assert result.claimed_epsilon == pytest.approx(gaussian_epsilon(0.5, DELTA), rel=1e-3)
    assert result.flagged, report(result)
    assert result.lower.epsilon > 1.5 * result.claimed_epsilon, report(result)
    assert result.details["trials_one_call_each"] == 8000


def test_deniable_microbatch_path_states_2c_and_is_not_flagged() -> None:
    """deniable's Clipping(C, microbatch_size=2) on the same batch: its step_event states
    sensitivity 2C (μ = 1, ε = 4.38) and the audit does not flag it (false flag ≤ 5 %, simulated
    0/400); with 8000 trials ε_lb = 3.86 (μ_lb = 0.90). The same scores against the per-example
    claim C (ε = 1.99) are flagged, so 2C is needed."""
    sigma, clip = 2.0, 1.0
    clipping = Clipping(clip, microbatch_size=2)
    trial = real_trial(clipping, sigma, *with_partner(clip))
    assert trial.event == GaussianEvent(sigma=sigma * clip, sensitivity=2 * clip)
    scores, member = run_trials(trial, trials=8000, seed=6)
    own = audit_scores(scores, member, claimed=trial.event, delta=DELTA)
    assert not own.flagged, report(own)
    per_example = GaussianEvent(sigma=sigma * clip, sensitivity=clip)
    wrong = audit_scores(scores, member, claimed=per_example, delta=DELTA)
    assert wrong.flagged, report(wrong)
    assert own.lower.epsilon == wrong.lower.epsilon


# --- 4. noise on the wrong scale ------------------------------------------------------------------


def test_noise_divided_by_a_larger_batch_is_flagged() -> None:
    """A hand-written step divides the clipped sum by the batch B = 6 but the noise by 2B, so its
    noise multiplier is σ/2: true μ = 2 (ε = 10.0) against the claim σ = 1 (ε = 4.38). With 2000
    trials ε_lb = 8.67 (μ_lb = 1.78); simulated μ_lb ≥ 1.57 in 400/400 seeds (1 % quantile 1.61)
    against 1 needed: the miss rate is negligible."""
    clip, sigma, batch = 1.0, 1.0, 6.0
    x, _ = ordinary_batch()
    clipped = x * torch.clamp(clip / x.norm(dim=1, keepdim=True), max=1.0)
    base = clipped.sum(0, keepdim=True)

    def step(include_canary: bool, seed: int) -> dict[str, torch.Tensor]:
        noise = torch.randn(1, D, generator=torch.Generator().manual_seed(seed)) * sigma * clip
        total = base + clip * e_j()["weight"] if include_canary else base
        return {"weight": total / batch + noise / (2 * batch)}

    trial = StepTrial(step=step, direction=e_j())
    claimed = step_event(Clipping(clip), sigma)
    result = audit_step(trial, trials=2000, claimed=claimed, delta=DELTA, seed=7)
    assert result.flagged, report(result)
    assert result.lower.epsilon > 1.3 * result.claimed_epsilon, report(result)


def test_half_the_noise_multiplier_is_flagged() -> None:
    """deniable's step run at σ/2 = 0.5 but claiming σ = 1: true μ = 2 vs claimed 1; with 2000
    trials ε_lb = 8.33 against 4.38 (power as above)."""
    trial = real_trial(Clipping(1.0), 0.5)
    claimed = step_event(Clipping(1.0), 1.0)
    result = audit_step(trial, trials=2000, claimed=claimed, delta=DELTA, seed=8)
    assert result.flagged, report(result)
    assert result.details["mu_hat"] == pytest.approx(2.0, rel=0.15)


# --- 5. bad inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"trials": 1}, "trials"),
        ({"trials": 0}, "trials"),
        ({"trials": 2.5}, "trials"),
        ({"confidence": 0.0}, "confidence"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 1.5}, "confidence"),
        ({"confidence": math.nan}, "confidence"),
        ({"delta": 0.0}, "delta"),
        ({"method": "lira"}, "method"),
        ({"claimed": "gaussian"}, "claimed"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_inputs_raise_one_line(kwargs: dict[str, object], name: str) -> None:
    calls: list[bool] = []

    def step(include_canary: bool, seed: int) -> dict[str, torch.Tensor]:
        calls.append(include_canary)
        return {"weight": torch.zeros(1, D)}

    args: dict[str, object] = {
        "trials": 100,
        "claimed": GaussianEvent(1.0),
        "delta": DELTA,
        **kwargs,
    }
    with pytest.raises(DeniableError) as info:
        audit_step(StepTrial(step=step, direction=e_j()), **args)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and name in message
    assert calls == []  # everything is checked before the step runs


def test_bad_trials_and_canaries_raise_one_line() -> None:
    with pytest.raises(DeniableError, match="direction"):
        StepTrial(step=lambda include, seed: {}, direction={"weight": torch.zeros(1, D)})
    biased = nn.Linear(D, 1)
    x, y = ordinary_batch()
    with pytest.raises(DeniableError, match="canary_input"):
        dp_step_trial(
            biased, sum_loss, x, y, clipping=Clipping(1.0), noise_multiplier=1.0,
            expected_batch_units=6.0,
        )  # fmt: skip
    with pytest.raises(DeniableError, match="coordinate"):
        dp_step_trial(
            make_linear(), sum_loss, x, y, clipping=Clipping(1.0), noise_multiplier=1.0,
            expected_batch_units=6.0, coordinate=D,
        )  # fmt: skip
    wrong_name = StepTrial(step=lambda include, seed: {"w": torch.zeros(1, D)}, direction=e_j())
    with pytest.raises(DeniableError, match="weight"):
        audit_step(wrong_name, trials=10, claimed=GaussianEvent(1.0), delta=DELTA)


def test_general_canary_with_its_own_gradient_direction() -> None:
    """A biased Linear needs an explicit canary; the default direction is its own gradient."""
    model = nn.Linear(D, 1)
    nn.init.zeros_(model.weight)
    x, y = ordinary_batch()
    canary = torch.zeros(D)
    canary[J] = 1000.0
    trial = dp_step_trial(
        model, sum_loss, x, y, clipping=Clipping(1.0), noise_multiplier=1.0,
        expected_batch_units=6.0, canary_input=canary,
    )  # fmt: skip
    assert set(trial.direction) == {"weight", "bias"}
    assert float(trial.direction["weight"][0, J]) == pytest.approx(1.0, abs=1e-5)
    assert trial.event is not None
    result = audit_step(trial, trials=1000, claimed=trial.event, delta=DELTA)
    assert not result.flagged, report(result)
