"""CLI contracts: JSON shapes, the human table, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli

run = run_cli


def test_account_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        [
            "account",
            "--sample-rate",
            "0.01",
            "--noise-multiplier",
            "1.0",
            "--steps",
            "1000",
            "--delta",
            "1e-5",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    result = json.loads(out)
    assert result["accountant"] == "pld"
    assert result["delta"] == 1e-5
    assert result["relation"] == "add_remove"
    assert 1.7 < result["epsilon"] < 1.95  # dp-accounting gives 1.8282 for these settings


def test_account_table_shows_every_accountant(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        [
            "account",
            "--sample-rate",
            "0.01",
            "--noise-multiplier",
            "1.0",
            "--steps",
            "100",
            "--accountant",
            "all",
        ],
        capsys,
    )
    assert code == 0
    for name in ("pld", "rdp", "basic"):
        assert name in out


def test_account_phases_compose(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["account", "--phase", "0.01:1.0:500", "--phase", "0.01:1.0:500", "--json"], capsys
    )
    assert code == 0
    two_phases = json.loads(out)["epsilon"]
    code, out, _ = run(
        [
            "account",
            "--sample-rate",
            "0.01",
            "--noise-multiplier",
            "1.0",
            "--steps",
            "1000",
            "--json",
        ],
        capsys,
    )
    assert abs(json.loads(out)["epsilon"] - two_phases) < 1e-9


def test_calibrate_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        [
            "calibrate",
            "--target-epsilon",
            "2",
            "--delta",
            "1e-5",
            "--sample-rate",
            "0.01",
            "--steps",
            "500",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    result = json.loads(out)
    assert result["epsilon"] <= 2.0
    assert result["noise_multiplier"] > 0


def test_delta_warning_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        [
            "account",
            "--sample-rate",
            "0.1",
            "--noise-multiplier",
            "1.0",
            "--steps",
            "10",
            "--delta",
            "0.01",
            "--dataset-size",
            "500",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    assert "1/n" in err
    assert json.loads(out)["warnings"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["account", "--sample-rate", "2", "--noise-multiplier", "1", "--steps", "10"],
            "sample_rate",
        ),
        (["account", "--sample-rate", "0.1", "--noise-multiplier", "0", "--steps", "10"], "sigma"),
        (["account", "--sample-rate", "0.1", "--noise-multiplier", "1", "--steps", "0"], "steps"),
        (
            [
                "account",
                "--sample-rate",
                "0.1",
                "--noise-multiplier",
                "1",
                "--steps",
                "10",
                "--delta",
                "1",
            ],
            "delta",
        ),
        (
            ["account", "--sample-rate", "nan", "--noise-multiplier", "1", "--steps", "10"],
            "sample_rate",
        ),
        (["account", "--sample-rate", "0.1"], "--noise-multiplier"),
        (["account", "--phase", "0.1:1"], "--phase"),
        (
            [
                "account",
                "--sample-rate",
                "0.1",
                "--noise-multiplier",
                "1",
                "--steps",
                "10",
                "--accountant",
                "magic",
            ],
            "--accountant",
        ),
        (
            [
                "account",
                "--sample-rate",
                "0.1",
                "--noise-multiplier",
                "1",
                "--steps",
                "10",
                "--relation",
                "swap",
            ],
            "--relation",
        ),
        (
            ["calibrate", "--target-epsilon", "-1", "--sample-rate", "0.1", "--steps", "10"],
            "target_epsilon",
        ),
        (["calibrate", "--target-epsilon", "1", "--sample-rate", "0.1"], "--steps"),
        (["account", "--bogus"], "bogus"),
    ],
)
def test_user_errors_are_one_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(args, capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    assert needle in lines[0]
    assert "Traceback" not in err


def test_entry_point_runs_as_a_program() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deniable",
            "account",
            "--sample-rate",
            "0.5",
            "--noise-multiplier",
            "-1",
            "--steps",
            "3",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_account_and_calibrate_read_every_flag_from_a_config_file(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A TOML file gives the same answer as the flags; a flag overrides its key."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "account.toml"
    path.write_text(
        'sample_rate = 0.01\nnoise_multiplier = 1.1\nsteps = 1000\ndelta = 1e-6\n'
        'accountant = "rdp"\nrelation = "add_remove"\ndataset_size = 50000\n'
    )
    flags = ["--sample-rate", "0.01", "--noise-multiplier", "1.1", "--steps", "1000"]
    flags += ["--delta", "1e-6", "--accountant", "rdp", "--dataset-size", "50000"]
    _, by_flags, _ = run(["account", *flags, "--json"], capsys)
    code, by_file, err = run(["account", "--config", str(path), "--json"], capsys)
    assert code == 0, err
    assert json.loads(by_file) == json.loads(by_flags)
    assert json.loads(by_file)["accountant"] == "rdp"
    _, overridden, _ = run(["account", "--config", str(path), "--steps", "2000", "--json"], capsys)
    assert json.loads(overridden)["steps"] == 2000
    assert json.loads(overridden)["epsilon"] > json.loads(by_file)["epsilon"]

    phases = Path(str(tmp_path)) / "phases.toml"
    phases.write_text('phase = ["0.01:1.1:500", "0.02:2.0:100"]\n')
    _, by_file, _ = run(["account", "--config", str(phases), "--json"], capsys)
    phase_flags = ["--phase", "0.01:1.1:500", "--phase", "0.02:2.0:100"]
    _, by_flags, _ = run(["account", *phase_flags, "--json"], capsys)
    assert json.loads(by_file)["epsilon"] == json.loads(by_flags)["epsilon"]

    calibrate = Path(str(tmp_path)) / "calibrate.toml"
    calibrate.write_text("target_epsilon = 2.0\nsample_rate = 0.004\nsteps = 5000\n")
    code, out, err = run(["calibrate", "--config", str(calibrate), "--json"], capsys)
    assert code == 0, err
    flags = ["--target-epsilon", "2", "--sample-rate", "0.004", "--steps", "5000", "--json"]
    _, expected, _ = run(["calibrate", *flags], capsys)
    assert json.loads(out) == json.loads(expected)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("samplerate = 0.01\n", "samplerate"),
        ('steps = "many"\n', "steps"),
        ("sample_rate = 0.01\nsteps = [\n", "not valid TOML"),
    ],
)
def test_account_config_errors_name_the_key(
    tmp_path: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    text: str,
    needle: str,
) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "bad.toml"
    path.write_text(text)
    code, _, err = run(["account", "--config", str(path)], capsys)
    assert code != 0 and needle in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["calibrate", "--config", str(path)], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1


def test_defaults_file_gives_every_command_a_config_key(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """`deniable --defaults FILE CMD`: one TOML table per command (nested for sub-commands),
    keys named after the options; flags still win; unknown tables or keys are one line."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "defaults.toml"
    path.write_text(
        "[account]\nsample_rate = 0.01\nnoise_multiplier = 1.1\nsteps = 1000\n"
        '[ledger.create]\nepsilon = 4.0\n[recipes]\nas_json = true\n'
    )
    code, out, err = run(["--defaults", str(path), "account", "--json"], capsys)
    assert code == 0, err
    _, expected, _ = run(
        ["account", "--sample-rate", "0.01", "--noise-multiplier", "1.1", "--steps", "1000",
         "--json"],
        capsys,
    )  # fmt: skip
    assert json.loads(out) == json.loads(expected)
    code, out, _ = run(["--defaults", str(path), "account", "--steps", "10", "--json"], capsys)
    assert json.loads(out)["steps"] == 10
    code, out, _ = run(["--defaults", str(path), "recipes"], capsys)
    assert code == 0 and isinstance(json.loads(out), list)  # as_json from the file
    for text, needle in (("[acount]\nsteps = 1\n", "not a command"),
                         ("[account]\nstep = 1\n", "no option 'step'"),
                         ("[ledger.creat]\nx = 1\n", "not a command")):  # fmt: skip
        path.write_text(text)
        code, _, err = run(["--defaults", str(path), "account"], capsys)
        assert code != 0 and needle in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [["audit", "/nonexistent-run"], ["run", "--model", "papernot-cnn", "--epochs", "0.1"]],
)
def test_errors_after_a_progress_bar_leave_stdout_empty(args: list[str], tmp_path: Path) -> None:
    """Outside a terminal the progress bar is off, so a failing command prints nothing on
    stdout (no blank line) and one line on stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "deniable", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error:")
