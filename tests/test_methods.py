"""Noise placements trained from a config (deniable.methods), compared (deniable.comparison) and
run end to end (`deniable run --method ... --compare ...`).

Each method's ε is checked against a closed form computed here, not by the accountant that made
the claim: the Gaussian mechanism's exact δ(ε) (Balle & Wang 2018), its k-fold composition as
one Gaussian of μ√k, and the composition of a k-ary randomized response with a Gaussian as a
mixture over the RR's three privacy-loss values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import optimize
from scipy.stats import norm

from conftest import run_cli
from deniable.accounting.gaussian_exact import gaussian_delta, gaussian_epsilon
from deniable.comparison import compare_methods
from deniable.config import TrainConfig
from deniable.data import load_dataset
from deniable.errors import DeniableError
from deniable.methods import public_split, train_method

DELTA = 1e-5
TARGET = 3.0


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_dataset("digits")


def config(method: str, **extra: object) -> TrainConfig:
    keys: dict[str, object] = {
        "method": method,
        "target_epsilon": TARGET,
        "delta": DELTA,
        "fit_epochs": 5,
        "model": "logreg",
        "epochs": 3,
    }
    return TrainConfig.model_validate({**keys, **extra})


def rr_gaussian_delta(eps_rr: float, k: int, mu: float, epsilon: float) -> float:
    """δ(ε) of k-RR(ε_rr) composed with a μ-GDP Gaussian: the RR's privacy loss is +ε_rr with
    probability p = e^ε_rr/(e^ε_rr + k − 1), −ε_rr with q = 1/(e^ε_rr + k − 1) and 0 otherwise;
    δ(ε) = Σ_l P(l) δ_G(ε − l) since losses add under composition."""
    p = math.exp(eps_rr) / (math.exp(eps_rr) + k - 1)
    q = 1 / (math.exp(eps_rr) + k - 1)

    def gauss(e: float) -> float:  # valid for any real e
        return float(norm.cdf(-e / mu + mu / 2) - math.exp(e) * norm.cdf(-e / mu - mu / 2))

    return p * gauss(epsilon - eps_rr) + q * gauss(epsilon + eps_rr) + (1 - p - q) * gauss(epsilon)


def test_pate_epsilon_is_gnmax_composed_in_closed_form(digits) -> None:  # type: ignore[no-untyped-def]
    out = train_method(digits, config("pate", pate_teachers=10, pate_queries=100))
    sigma, queries = out.details["gnmax_sigma"], out.details["queries"]
    assert queries == 100 and out.details["teachers"] == 10
    # one query: Gaussian with L2 sensitivity √2 (one teacher's vote moves); T queries: μ√T
    mu = math.sqrt(2) / float(sigma) * math.sqrt(100)  # type: ignore[arg-type]
    assert out.claim.epsilon == pytest.approx(gaussian_epsilon(mu, DELTA), rel=1e-3)
    assert out.claim.epsilon <= TARGET and out.claim.epsilon == pytest.approx(TARGET, rel=1e-3)
    assert out.claim.guarantee == "central-dp" and "teacher partition" in out.claim.unit
    _, held_out = public_split(digits)
    assert out.evaluation.test is not digits.test and len(out.evaluation.test) == len(held_out.test)


def test_pate_student_learns_when_the_budget_is_large(digits) -> None:  # type: ignore[no-untyped-def]
    """ε = 200 over 100 queries: small σ, the noisy labels are mostly the plurality (ties and
    close votes of 10 teachers still flip some; 0.93 seen with this seed)."""
    out = train_method(
        digits,
        config(
            "pate",
            pate_teachers=10,
            pate_queries=100,
            fit_epochs=100,
            fit_learning_rate=0.05,
            target_epsilon=200.0,
        ),
    )
    assert out.details["labels_matching_plurality"] > 0.85
    assert out.test_accuracy > 0.6  # chance is 0.1


def test_label_dp_is_randomized_response_at_the_target(digits) -> None:  # type: ignore[no-untyped-def]
    out = train_method(digits, config("label-dp"))
    assert out.claim.guarantee == "label-dp" and "label" in out.claim.unit
    assert out.claim.epsilon == pytest.approx(TARGET, rel=1e-4)
    # first stage is plain k-RR: keeps a label with probability e^ε/(e^ε + 9) = 0.691; the second
    # stage (RR with prior) keeps more, so the overall rate is at least about the plain rate
    kept = float(out.details["labels_kept"])  # type: ignore[arg-type]
    assert kept > math.exp(TARGET) / (math.exp(TARGET) + 9) - 0.05


def test_input_perturbation_composes_to_the_target_in_closed_form(digits) -> None:  # type: ignore[no-untyped-def]
    out = train_method(digits, config("input"))
    d = out.details
    assert out.claim.guarantee == "local-dp"
    assert d["label_epsilon"] == pytest.approx(0.5 * TARGET)
    assert d["l2_diameter"] == pytest.approx(8.0)  # 64 features in [0, 1]
    mu = float(d["l2_diameter"]) / float(d["feature_sigma"])  # type: ignore[arg-type]
    exact = optimize.brentq(
        lambda e: rr_gaussian_delta(1.5, 10, mu, e) - DELTA, 1e-6, 50, xtol=1e-10
    )
    assert out.claim.epsilon == pytest.approx(exact, rel=2e-3)
    assert out.claim.epsilon <= TARGET * (1 + 1e-9)
    assert exact == pytest.approx(TARGET, rel=2e-3)


def test_output_perturbation_is_one_gaussian_in_closed_form(digits) -> None:  # type: ignore[no-untyped-def]
    out = train_method(digits, config("output"))
    mu = float(out.details["sensitivity"]) / float(out.details["sigma"])  # type: ignore[arg-type]
    assert gaussian_delta(mu, out.claim.epsilon) == pytest.approx(DELTA, rel=1e-2)
    assert out.claim.epsilon <= TARGET * (1 + 1e-9)
    assert out.test_accuracy > 0.5


def test_dpsgd_is_not_a_placement(digits) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DeniableError, match="train_private"):
        train_method(digits, config("dpsgd"))


def test_methods_need_a_target_epsilon() -> None:
    with pytest.raises(ValueError, match="target_epsilon"):
        TrainConfig(method="pate", noise_multiplier=1.0, target_epsilon=None)


def test_comparison_evaluates_every_method_on_the_same_held_out_half(digits) -> None:  # type: ignore[no-untyped-def]
    table = compare_methods(digits, config("output", compare=("label-dp", "pate")))
    rows = table["rows"]
    assert isinstance(rows, list)
    assert [r["method"] for r in rows] == ["output", "label-dp", "pate", "none (non-private)"]
    assert table["evaluation_size"] == len(digits.test) - len(digits.test) // 2
    for row in rows[:-1]:
        assert row["epsilon"] <= TARGET * (1 + 1e-9)
        assert 0 <= row["test_accuracy"] <= 1
    assert {r["guarantee"] for r in rows} == {"central-dp", "label-dp", "none"}


def test_run_with_a_method_writes_its_claim_and_does_not_pay_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "--method", "output", "--compare", "label-dp", "--model", "logreg"]
    args += ["--epochs", "2", "--target-epsilon", "2", "--out", str(tmp_path), "--json", "--quiet"]
    code, out, err = run_cli([*args, "--audit"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["method"] == "output" and result["guarantee"] == "central-dp"
    assert result["epsilon"] <= 2.0 * (1 + 1e-9) and result["steps"] is None
    assert [r["method"] for r in result["comparison"]["rows"]][:2] == ["output", "label-dp"]
    # the audit trains the run's own method (output perturbation) with the canaries
    assert result["audit"]["private"]["claimed_epsilon"] == pytest.approx(result["epsilon"])
    run_dir = Path(result["run_dir"])
    assert "Training by output" in (run_dir / "report.html").read_text()
    # rerunning in the same folder reloads the released model instead of drawing new noise
    from deniable.pipeline import run as run_pipeline

    again = run_pipeline(
        TrainConfig.model_validate(result["config"]),
        run_dir=run_dir,
        baseline=False,
        audit_model=False,
    )
    assert again["resumed"] is True
    assert again["test_accuracy"] == result["test_accuracy"]
    assert again["method_details"] == result["method_details"]


def test_label_dp_run_is_not_audited_as_example_level(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "--method", "label-dp", "--model", "logreg", "--epochs", "2"]
    code, out, err = run_cli([*args, "--out", str(tmp_path), "--json", "--quiet"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["guarantee"] == "label-dp"
    assert "not audited" in result["audit"]["skipped"]
    assert result["audit_epsilon_lower_bound"] is None
    code, out, err = run_cli(["audit", result["run_dir"]], capsys)
    assert code != 0 and "label-dp" in err and len(err.strip().splitlines()) == 1


def test_bad_method_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["run", "--method", "laplace", "--out", str(tmp_path)], capsys)
    assert code != 0 and "method" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing trained, no run folder
