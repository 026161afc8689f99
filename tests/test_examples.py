"""Every script in examples/ runs with ``--quick`` and prints what it claims.

Scripts are run in-process (``runpy``; one interpreter, so torch is imported once) through
their ``main(argv)``, which returns the numbers they print; one is also run as a user would,
``python examples/<script>.py --quick``. Numbers are checked against independent computations
where there is one (group privacy is k·ε; user-level accounting equals the DP-SGD event at
q = users per batch / users), else against what must hold (a lower bound under the claim).
"""

from __future__ import annotations

import math
import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from deniable import accounting
from deniable.accounting.calibrate import dpsgd_event

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TESTED = {
    "attach_to_your_loop.py",
    "user_level_dp.py",
    "accounting_phases.py",
    "private_statistics.py",
    "audit_a_model.py",
    "budget_ledger.py",
}


def example(name: str) -> Callable[[list[str]], dict[str, float]]:
    """The ``main`` of ``examples/<name>`` (loaded without running it)."""
    namespace = runpy.run_path(str(EXAMPLES / name))
    return namespace["main"]  # type: ignore[no-any-return]


def test_every_example_is_tested() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == TESTED


def test_attach_to_your_loop(capsys: pytest.CaptureFixture[str]) -> None:
    out = example("attach_to_your_loop.py")(["--quick", "--seed", "0"])
    printed = capsys.readouterr().out
    # Calibrated to ε = 3: at most the target, and within the calibration's tolerance of it.
    assert 2.99 <= out["epsilon"] <= 3.0
    assert out["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert "ε = 3.000 at δ = 1e-05 (pld, add_remove, per example)" in printed
    assert "test accuracy" in printed


def test_user_level_dp(capsys: pytest.CaptureFixture[str]) -> None:
    out = example("user_level_dp.py")(["--quick", "--seed", "0"])
    printed = capsys.readouterr().out
    assert "unit: key" in printed
    # The recorded per-user events are the DP-SGD event at q = 64 users / U users.
    steps = math.ceil(2 / (64 / out["num_users"]))
    reference = accounting.epsilon(dpsgd_event(1.5, 64 / out["num_users"], steps), 1e-5)
    assert out["user_level_epsilon"] == pytest.approx(reference.epsilon, rel=1e-12)
    assert out["example_level_epsilon"] == pytest.approx(out["user_level_epsilon"], rel=1e-12)
    k = out["heaviest_user"]
    assert out["group_epsilon"] == pytest.approx(k * out["example_level_epsilon"])
    assert out["group_delta"] == pytest.approx(
        k * math.exp((k - 1) * out["example_level_epsilon"]) * 1e-5
    )
    assert out["test_accuracy"] > 0.2


def test_accounting_phases(capsys: pytest.CaptureFixture[str]) -> None:
    out = example("accounting_phases.py")(["--quick"])
    printed = capsys.readouterr().out
    assert "both phases composed" in printed
    # Composition is sub-additive for the tight accountant, and PLD is tighter than RDP here.
    assert out["epsilon_pld"] < out["sum_of_phases"]
    assert out["epsilon_pld"] < out["epsilon_rdp"]
    assert out["calibrated_epsilon"] <= 3.0 and out["max_steps_epsilon"] <= 3.0
    # max_steps is the largest T: one more step exceeds the target.
    one_more = accounting.epsilon(dpsgd_event(2.0, 0.04, int(out["max_steps"]) + 1), 1e-5)
    assert one_more.epsilon > 3.0


def test_private_statistics(capsys: pytest.CaptureFixture[str]) -> None:
    out = example("private_statistics.py")(["--quick", "--seed", "3"])
    printed = capsys.readouterr().out
    assert "secure noise: False" in printed  # seeded for the test; the default is secure
    # Discrete Laplace noise of scale 2 on the count: |error| > 40 has probability < 1e-8.
    assert abs(out["count"] - out["true_count"]) <= 40
    assert abs(out["mean"] - out["true_mean"]) < 5
    # ε of the two pure-DP releases: the nominal 0.5 + 1.0, up to the grid's rounding.
    assert 1.5 <= out["epsilon_basic"] < 1.51
    assert out["epsilon_pld"] <= out["epsilon_basic"] + 1e-6


def test_audit_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    out = example("audit_a_model.py")(["--quick"])
    printed = capsys.readouterr().out
    assert "one-run audit, 200 canaries" in printed
    assert 0.0 <= out["epsilon_lower_bound"] <= out["claimed_epsilon"]
    assert out["non_private_lower_bound"] >= 0.0
    assert 0.0 <= out["loss_auc"] <= 1.0
    assert out["test_accuracy"] > 0.2


def test_budget_ledger(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    out = example("budget_ledger.py")(["--quick", "--seed", "0", "--db", str(db)])
    printed = capsys.readouterr().out
    assert db.exists()
    assert out["refused"] == 1.0 and out["spends"] == 2.0
    assert "refused: budget of dataset 'patients' exceeded" in printed
    assert out["spent_epsilon"] <= 2.0
    assert out["first_epsilon"] == pytest.approx(
        accounting.epsilon(dpsgd_event(2.0, 0.01, 200), 1e-6).epsilon
    )


def test_an_example_runs_as_a_script() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "budget_ledger.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout
