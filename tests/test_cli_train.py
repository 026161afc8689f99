"""`deniable run` / `deniable train`: the result.json contract and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

FAST = ["--model", "logreg", "--epochs", "2", "--batch-size", "64", "--quiet"]
RUN = ["run", *FAST, "--no-audit"]


run = run_cli


def test_run_json_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([*RUN, "--target-epsilon", "3", "--out", str(tmp_path), "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    for key in (
        "epsilon",
        "delta",
        "test_accuracy",
        "baseline_accuracy",
        "audit_epsilon_lower_bound",
        "report",
    ):
        assert key in result
    assert result["epsilon"] <= 3.0
    assert result["unit"] == "example" and result["relation"] == "add_remove"
    # the per-sample path the step took, and ghost clipping's per-layer norm choice
    assert result["per_sample"]["method"] == "ghost"
    assert result["per_sample"]["ghost"] == "book-keeping"
    assert set(result["per_sample"]["layers"]) == {"linear.weight", "linear.bias"}
    assert set(result["per_sample"]["layers"].values()) <= {"gram", "explicit"}
    assert 0.0 <= result["test_accuracy"] <= 1.0
    run_dir = Path(result["run_dir"])
    assert json.loads((run_dir / "result.json").read_text())["epsilon"] == result["epsilon"]
    assert (run_dir / "checkpoint.pt").exists()
    curve = result["epsilon_curve"]
    assert [p["epsilon"] for p in curve] == sorted(p["epsilon"] for p in curve)


def _npz(tmp_path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y)
    return path


def test_run_table_names_the_per_sample_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run([*RUN, "--target-epsilon", "3", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "ghost," in out and "book-keeping" in out  # the path and the ghost mode


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("nan", "NaN"),
        ("label", "label"),
        ("missing", "does not exist"),
        ("empty", "0 examples"),
    ],
)
def test_bad_data_gives_one_line(
    case: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    y = rng.integers(0, 2, size=100)
    if case == "nan":
        x[5, 1] = np.nan
    if case == "label":
        y[3] = -1
    if case == "empty":
        x, y = x[:0], y[:0]
    path = tmp_path / "nowhere.npz" if case == "missing" else _npz(tmp_path, x, y)
    code, _, err = run([*RUN, "--dataset", str(path), "--out", str(tmp_path)], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err
    assert needle.lower() in lines[0].lower(), lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--batch-size", "100000"], "batch_size"),
        (["--target-epsilon", "0.000001", "--epochs", "50"], "epsilon"),
        (["--noise-multiplier", "-1"], "noise_multiplier"),
        (["--model", "resnet9000"], "model"),
        (["--dataset", "imagenet"], "imagenet"),
        (["--sampling", "shuffle"], "sampling"),
    ],
)
def test_bad_settings_give_one_line(
    args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run([*RUN, *args, "--out", str(tmp_path)], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert needle in lines[0], lines[0]


def test_config_file_keys_are_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('epochs = "many"\n')
    code, _, err = run(["run", "--config", str(config), "--out", str(tmp_path)], capsys)
    assert code != 0 and "epochs" in err and len(err.strip().splitlines()) == 1
    config.write_text("epoch = 3\n")
    code, _, err = run(["run", "--config", str(config), "--out", str(tmp_path)], capsys)
    assert code != 0 and "epoch" in err


def test_resume_requires_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["train", *FAST, "--resume", str(tmp_path)], capsys)
    assert code != 0 and "checkpoint" in err


def test_secrets_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question. " * 60)
    code, out, err = run(
        [
            "secrets",
            "--text",
            str(text),
            "--template",
            "pin __",
            "--repeats",
            "2",
            "--noise-multiplier",
            "1.0",
            "--steps",
            "5",
            "--out",
            str(tmp_path / "runs"),
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    document = json.loads(out)
    (row,) = document["rows"]
    assert 0 <= row["exposure"] <= row["max_exposure"] == pytest.approx(np.log2(100))
    assert row["epsilon"] > 0 and row["unit"] == "example"
    assert json.loads((Path(document["run_dir"]) / "secrets.json").read_text()) == document
    assert document["plots"] == []  # one point: nothing to plot
    code, _, err = run(["secrets", "--text", str(text), "--template", "no blank"], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "blank" in err
    code, _, err = run(["secrets", "--text", str(text), "--repeats", "1,x"], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "--repeats" in err


def test_secrets_grid_writes_its_table_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """r ∈ {1, 2}, σ ∈ {0, 1}, both units: 2 non-private + 4 DP rows; plots of exposure vs r
    (for σ = 1, with the non-private stars) and vs σ (for each r) in the run folder."""
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question. " * 60)
    args = ["secrets", "--text", str(text), "--template", "pin __", "--repeats", "1,2"]
    args += ["--noise-multiplier", "0,1", "--unit", "example,user", "--steps", "3"]
    code, out, err = run([*args, "--out", str(tmp_path / "runs"), "--json"], capsys)
    assert code == 0, err
    document = json.loads(out)
    rows = document["rows"]
    assert len(rows) == 6
    assert {(r["repeats"], r["noise_multiplier"], r["unit"]) for r in rows if r["epsilon"]} == {
        (r, 1.0, u) for r in (1, 2) for u in ("example", "user")
    }
    names = sorted(Path(p).name for p in document["plots"])
    assert names == [
        "exposure_vs_insertions_sigma1.png",
        "exposure_vs_sigma_r1.png",
        "exposure_vs_sigma_r2.png",
    ]
    for path in document["plots"]:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tracking_is_a_config_key_and_resuming_may_change_operational_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`track` in the TOML file logs like --track; resuming with other operational keys (out,
    track) is allowed, with another training key (learning_rate) it is refused."""
    config = tmp_path / "run.toml"
    config.write_text('model = "logreg"\nepochs = 1\nnoise_multiplier = 1.0\ntrack = ["jsonl"]\n')
    run_dir = tmp_path / "run"
    args = ["train", "--config", str(config), "--quiet", "--json"]
    code, out, err = run([*args, "--run-dir", str(run_dir)], capsys)
    assert code == 0, err
    assert (run_dir / "metrics.jsonl").exists()
    code, out, err = run([*args, "--resume", str(run_dir), "--out", str(tmp_path / "x")], capsys)
    assert code == 0, err
    assert json.loads(out)["resumed"] is True
    code, _, err = run([*args, "--resume", str(run_dir), "--learning-rate", "0.5"], capsys)
    assert code != 0 and "different config" in err and len(err.strip().splitlines()) == 1
