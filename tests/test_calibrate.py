"""Calibration: the σ returned reaches the target to 1e-4 relative, on the safe side; checked
against the analytic Gaussian (closed form) and dp-accounting's own calibration."""

from __future__ import annotations

import dp_accounting
import pytest

from deniable import accounting
from deniable.accounting import calibrate
from deniable.accounting.gaussian_exact import analytic_gaussian_sigma
from deniable.errors import DeniableError, InvalidParameterError
from deniable.events import GaussianEvent


def eps_of(sigma: float, q: float, steps: int, accountant: str = "pld") -> float:
    event = calibrate.dpsgd_event(sigma, q, steps)
    return accounting.epsilon(event, 1e-5, accountant=accountant).epsilon


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
def test_noise_multiplier_is_smallest_to_1e4(accountant: str) -> None:
    q, steps, target = 0.01, 500, 2.0
    result = calibrate.noise_multiplier(target, 1e-5, q, steps, accountant=accountant)
    assert result.epsilon <= target
    assert eps_of(result.noise_multiplier, q, steps, accountant) <= target
    assert eps_of(result.noise_multiplier * (1 - 1e-4), q, steps, accountant) > target


def test_single_gaussian_calibration_is_the_analytic_gaussian() -> None:
    sigma, eps = calibrate.smallest_noise(lambda s: GaussianEvent(s), 1.0, 1e-5)
    assert eps <= 1.0
    assert abs(sigma - analytic_gaussian_sigma(1.0, 1e-5)) / sigma < 1e-4


def test_matches_dp_accounting_calibration() -> None:
    q, steps, target = 0.02, 300, 1.5

    def make(sigma: float) -> dp_accounting.DpEvent:
        return dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
        )

    theirs = dp_accounting.calibrate_dp_mechanism(
        lambda: dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4),
        make,
        target,
        1e-5,
        bracket_interval=dp_accounting.LowerEndpointAndGuess(0.5, 1.0),
        tol=1e-4,
    )
    ours = calibrate.noise_multiplier(target, 1e-5, q, steps).noise_multiplier
    assert abs(ours - theirs) / theirs < 1e-3


def test_max_steps_is_largest() -> None:
    q, sigma, target = 0.01, 1.0, 1.0
    result = calibrate.max_steps(sigma, target, 1e-5, q)
    assert eps_of(sigma, q, result.steps) <= target < eps_of(sigma, q, result.steps + 1)


def test_unreachable_targets_say_what_to_change() -> None:
    with pytest.raises(DeniableError, match="noise multiplier"):
        calibrate.max_steps(0.5, 0.01, 1e-5, 0.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_epsilon": 0.0},
        {"target_epsilon": -1.0},
        {"delta": 0.0},
        {"delta": 1.0},
        {"sample_rate": 0.0},
        {"sample_rate": 1.5},
        {"steps": 0},
    ],
)
def test_bad_inputs_are_refused(kwargs: dict) -> None:
    args = {"target_epsilon": 1.0, "delta": 1e-5, "sample_rate": 0.01, "steps": 100} | kwargs
    with pytest.raises(InvalidParameterError):
        calibrate.noise_multiplier(**args)


def test_delta_warning_when_delta_at_least_one_over_n() -> None:
    assert calibrate.delta_warning(1e-3, 1000) is not None
    assert calibrate.delta_warning(1e-4, 1000) is None
    assert calibrate.delta_warning(1e-3, None) is None
