"""evaluate_run: a finished run evaluated beyond privacy, stored in its result.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SHARED
from deniable.config import TrainConfig
from deniable.errors import DeniableError
from deniable.evaluate import evaluate_run
from deniable.pipeline import run

PARTS = ("fairness", "generalisation", "robustness", "certified")


def _tiny_run(out: Path, **settings: object) -> Path:
    config = TrainConfig.model_validate(
        {
            "model": "logreg",
            "epochs": 2,
            "batch_size": 64,
            "out": out,
            "audit": False,
            **settings,
        }
    )
    result = run(config, baseline=False)
    return Path(str(result["run_dir"]))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_run(tmp_path_factory.mktemp("runs"))


def _is_rate(value: object) -> bool:
    return isinstance(value, float | int) and 0.0 <= value <= 1.0


def test_evaluate_run_on_digits(digits_run: Path) -> None:
    before = json.loads((digits_run / "result.json").read_text())
    evaluation = evaluate_run(digits_run, certify_limit=40)
    after = json.loads((digits_run / "result.json").read_text())
    assert set(before) <= set(after)
    assert {k: after[k] for k in before} == before
    assert after["evaluation"] == json.loads(json.dumps(evaluation))
    assert sorted(p.name for p in digits_run.iterdir() if p.name.startswith("result.json")) == [
        "result.json"
    ]
    for part in PARTS:
        assert evaluation[part] is not None, part
    assert evaluation["epsilon"] == before["epsilon"]

    fairness = evaluation["fairness"]
    assert fairness["grouping"] == "class"  # digits have no group column: per class
    classes = fairness["columns"]["class"]
    assert [g["group"] for g in classes["groups"]] == [str(d) for d in range(10)]
    assert all(_is_rate(g["accuracy"]) for g in classes["groups"])
    assert classes["overall_accuracy"] == pytest.approx(before["test_accuracy"])

    gen = evaluation["generalisation"]
    assert gen["test_accuracy"] == pytest.approx(before["test_accuracy"])
    assert gen["train_accuracy"] == pytest.approx(before["train_accuracy"])
    assert gen["advantage_bound"]["epsilon"] == pytest.approx(before["epsilon"])
    assert gen["within_bound"] is True

    rob = evaluation["robustness"]
    assert rob["norm"] == "linf" and rob["epsilon"] == pytest.approx(0.05)  # digits in [0, 1]
    assert rob["bounds"] == [0.0, 1.0] and rob["n"] == before["dataset"]["test_size"]
    assert rob["clean_accuracy"] == pytest.approx(before["test_accuracy"])
    assert 0.0 <= rob["pgd_accuracy"] <= rob["clean_accuracy"]
    assert 0.0 <= rob["fgsm_accuracy"] <= rob["clean_accuracy"]

    cert = evaluation["certified"]
    assert cert["method"] == "randomized_smoothing" and cert["n"] == 40
    curve = cert["certified_accuracy"]
    assert list(curve) == ["0", "0.1", "0.3", "0.5"]
    values = list(curve.values())
    assert all(_is_rate(v) for v in values)
    assert values == sorted(values, reverse=True)  # certified accuracy falls with the radius
    assert values[0] > 0.3  # the smoothed private model does classify digits
    assert _is_rate(cert["abstain_rate"])
    assert 0.5 < cert["max_certifiable_radius"] < 1.0  # σ = 0.25, n = 1000, α = 0.001


def test_parts_switch_off_and_options(digits_run: Path) -> None:
    evaluation = evaluate_run(
        digits_run,
        fairness=False,
        generalisation=False,
        certify=False,
        attack_epsilon=0.2,
        attack_limit=50,
        write=False,
    )
    assert evaluation["fairness"] is None and evaluation["generalisation"] is None
    assert evaluation["certified"] is None
    rob = evaluation["robustness"]
    assert rob["epsilon"] == 0.2 and rob["n"] == 50
    assert set(evaluation["seconds"]) == {"robustness"}


def test_group_columns_of_tabular_data(tmp_path: Path) -> None:
    data = SHARED / "data" / "german"
    if not (data / "german.data").exists():
        pytest.fail(f"missing {data}: the shared data must sit beside the repo")
    run_dir = _tiny_run(tmp_path, dataset="german", data_dir=data)
    evaluation = evaluate_run(run_dir, attacks=False, certify=False)
    fairness = evaluation["fairness"]
    assert fairness["grouping"] == "groups" and "sex" in fairness["columns"]
    sex = fairness["columns"]["sex"]
    assert sex["positive_label"] == 1  # binary task: TPR/FPR per group
    assert {g["group"] for g in sex["groups"]} == {"female", "male"}
    for g in sex["groups"]:
        assert all(g[r] is None or _is_rate(g[r]) for r in ("accuracy", "tpr", "fpr"))
    assert sex["gaps"]["accuracy"] is not None and 0.0 <= sex["gaps"]["accuracy"] <= 1.0
    only = evaluate_run(run_dir, group_column="sex", attacks=False, certify=False, write=False)
    assert list(only["fairness"]["columns"]) == ["sex"]


def test_unknown_group_column_is_one_line(digits_run: Path) -> None:
    with pytest.raises(DeniableError, match="no group column 'sex'") as info:
        evaluate_run(digits_run, group_column="sex", attacks=False, certify=False, write=False)
    assert len(str(info.value).splitlines()) == 1


def test_folder_without_result_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DeniableError, match=r"result\.json") as info:
        evaluate_run(tmp_path)
    assert len(str(info.value).splitlines()) == 1


def test_folder_without_checkpoint_is_one_line(digits_run: Path, tmp_path: Path) -> None:
    before = (digits_run / "result.json").read_text()
    (tmp_path / "result.json").write_text(before)
    with pytest.raises(DeniableError, match=r"checkpoint\.pt") as info:
        evaluate_run(tmp_path)
    assert len(str(info.value).splitlines()) == 1
    assert (tmp_path / "result.json").read_text() == before  # untouched on error


def test_bad_radius_is_rejected(digits_run: Path) -> None:
    with pytest.raises(DeniableError, match="radii"):
        evaluate_run(digits_run, radii=(0.1, -0.3), write=False)


@pytest.mark.parametrize(
    ("method", "bounded"), [("output", True), ("label-dp", False), ("pate", True)]
)
def test_other_noise_placements(method: str, bounded: bool, tmp_path: Path) -> None:
    run_dir = _tiny_run(tmp_path, method=method, target_epsilon=3.0)
    before = json.loads((run_dir / "result.json").read_text())
    evaluation = evaluate_run(run_dir, attacks=False, certify_limit=20)
    assert evaluation["method"] == method and evaluation["guarantee"] == before["guarantee"]
    gen = evaluation["generalisation"]
    assert gen["test_accuracy"] == pytest.approx(before["test_accuracy"])  # the reported model
    # a label-DP ε protects labels only: no membership-advantage bound from it
    assert (gen["advantage_bound"] is not None) is bounded
    # PATE's student saw the first half of the test split (unlabelled): evaluated on the other
    full = before["dataset"]["test_size"]
    assert evaluation["test_size"] == (full - full // 2 if method == "pate" else full)
    assert _is_rate(evaluation["certified"]["certified_accuracy"]["0"])


def test_evaluate_command_writes_the_result_and_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`deniable evaluate RUN_DIR`: the evaluation lands in result.json and in report.html."""
    from conftest import run_cli

    run_dir = tmp_path / "run"
    args = ["train", "--model", "logreg", "--epochs", "1", "--run-dir", str(run_dir), "--quiet"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    code, out, err = run_cli(
        ["evaluate", str(run_dir), "--radii", "0.2", "--sigma", "0.5", "--json"], capsys
    )
    assert code == 0, err
    evaluation = json.loads(out)
    assert list(evaluation["certified"]["certified_accuracy"]) == ["0", "0.2"]
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["evaluation"] == evaluation and "epsilon" in saved
    assert "certified_accuracy" in (run_dir / "report.html").read_text()
    code, _, err = run_cli(["evaluate", str(run_dir), "--radii", "x"], capsys)
    assert code != 0 and "--radii" in err and len(err.strip().splitlines()) == 1
