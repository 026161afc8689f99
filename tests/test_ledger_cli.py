"""``deniable ledger``: JSON shapes, human tables, and one-line errors with exit code 2.

Runs through ``deniable.cli.main`` once the sub-app is registered there as ``ledger``; until then
through the sub-app itself with the same error handling as ``main``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer

from deniable import accounting, cli
from deniable.accounting.calibrate import dpsgd_event
from deniable.errors import DeniableError
from deniable.events import ComposedEvent, GaussianEvent, LaplaceEvent, Neighbouring
from deniable.ledger.cli import app as ledger_app

DELTA = 1e-5


def _registered() -> bool:
    return any(
        group.name == "ledger" and group.typer_instance is ledger_app
        for group in cli.app.registered_groups
    )


def _run_sub_app(args: list[str]) -> int:
    """``deniable.cli.main``'s handling, applied to the sub-app alone."""
    try:
        ledger_app(args=args, standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.TyperException, DeniableError) as exc:
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    if _registered():
        try:
            cli.main(["ledger", *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    else:
        code = _run_sub_app(args)
    out, err = capsys.readouterr()
    return code, out, err


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    code, out, err = run([*args, "--json"], capsys)
    assert code == 0, err
    return json.loads(out)


def fails(args: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    code, out, err = run(args, capsys)
    assert code == 2, (out, err)
    line = err.strip()
    assert line.startswith("error: ") and "\n" not in line and "Traceback" not in err
    for needle in needles:
        assert needle in line
    return line


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "ledger.db")


def test_create_spend_show_history(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    created = run_json(["create", "mnist", "--epsilon", "8", "--delta", "1e-5", "--db", db], capsys)
    assert created == {**created, "dataset": "mnist", "epsilon": 8.0, "delta": DELTA}
    assert created["relation"] == "add_remove" and created["accountant"] == "pld"

    training = dpsgd_event(1.1, 0.01, 300)
    spent = run_json(
        [
            "spend", "mnist", "--sample-rate", "0.01", "--noise-multiplier", "1.1",
            "--steps", "300", "--label", "run 1", "--db", db,
        ],
        capsys,
    )  # fmt: skip
    alone = accounting.epsilon(training, DELTA).epsilon
    assert spent["epsilon"] == pytest.approx(alone, rel=1e-9)
    assert spent["spent_epsilon"] == pytest.approx(alone, rel=1e-9)
    assert spent["sequence"] == 1 and spent["label"] == "run 1"
    assert spent["delta"] == DELTA and spent["relation"] == "add_remove"

    query = LaplaceEvent(scale=2.0)
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(query.to_dict()))
    run_json(["spend", "mnist", "--event-json", str(event_file), "--db", db], capsys)

    both = accounting.epsilon(ComposedEvent([training, query]), DELTA).epsilon
    shown = run_json(["show", "mnist", "--db", db], capsys)
    assert shown["spends"] == 2 and shown["total_epsilon"] == 8.0
    assert shown["spent_epsilon"] == pytest.approx(both, rel=1e-9)
    assert shown["remaining_epsilon"] == pytest.approx(8.0 - both, rel=1e-9)
    assert shown["delta"] == DELTA and shown["relation"] == "add_remove"

    history = run_json(["history", "mnist", "--db", db], capsys)
    assert [s["label"] for s in history["spends"]] == ["run 1", ""]
    assert [s["sequence"] for s in history["spends"]] == [1, 2]
    assert history["spends"][1]["cumulative_epsilon"] == pytest.approx(both, rel=1e-9)
    assert history["spends"][1]["event"] == query.to_dict()
    assert all("time" in s for s in history["spends"])

    code, out, _ = run(["show", "mnist", "--db", db], capsys)
    assert code == 0 and "mnist" in out and f"{both:.4f}" in out
    code, out, _ = run(["history", "mnist", "--db", db], capsys)
    assert code == 0 and "run 1" in out and f"{alone:.4f}" in out
    code, out, _ = run(["spend", "mnist", "--event-json", str(event_file), "--db", db], capsys)
    assert code == 0 and "recorded spend #3" in out
    listed = run_json(["list", "--db", db], capsys)
    assert [d["dataset"] for d in listed["datasets"]] == ["mnist"]


def test_overspend_exits_2_and_records_nothing(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_json(["create", "tiny", "--epsilon", "0.5", "--delta", "1e-6", "--db", db], capsys)
    line = fails(
        [
            "spend", "tiny", "--sample-rate", "0.1", "--noise-multiplier", "0.8",
            "--steps", "100", "--db", db,
        ],
        capsys,
        "exceeded", "total ε = 0.5", "nothing was recorded",
    )  # fmt: skip
    assert "'tiny'" in line
    assert run_json(["show", "tiny", "--db", db], capsys)["spends"] == 0


def test_replace_one_and_rdp_budgets(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_json(
        ["create", "r", "--epsilon", "50", "--delta", "1e-5", "--accountant", "rdp", "--db", db],
        capsys,
    )
    spent = run_json(
        ["spend", "r", "--sample-rate", "0.01", "--noise-multiplier", "2", "--steps", "10",
         "--db", db],
        capsys,
    )  # fmt: skip
    expected = accounting.epsilon(dpsgd_event(2.0, 0.01, 10), DELTA, accountant="rdp").epsilon
    assert spent["epsilon"] == pytest.approx(expected, rel=1e-9)
    assert spent["accountant"] == "rdp"

    run_json(
        ["create", "ro", "--epsilon", "50", "--delta", "1e-5", "--relation", "replace_one",
         "--db", db],
        capsys,
    )  # fmt: skip
    # Poisson amplification is stated for add/remove only: refused, nothing recorded
    fails(
        ["spend", "ro", "--sample-rate", "0.01", "--noise-multiplier", "2", "--steps", "10",
         "--db", db],
        capsys,
        "add/remove",
    )  # fmt: skip
    query = GaussianEvent(sigma=4.0)
    event_file = tmp_path / "gauss.json"
    event_file.write_text(json.dumps(query.to_dict()))
    spent = run_json(["spend", "ro", "--event-json", str(event_file), "--db", db], capsys)
    expected = accounting.epsilon(query, DELTA, relation=Neighbouring.REPLACE_ONE).epsilon
    assert spent["epsilon"] == pytest.approx(expected, rel=1e-9)
    assert spent["relation"] == "replace_one" and spent["sequence"] == 1


def test_user_errors_are_one_line(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_json(["create", "d", "--epsilon", "1", "--delta", "1e-5", "--db", db], capsys)
    fails(["create", "d", "--epsilon", "2", "--delta", "1e-5", "--db", db], capsys, "already")
    fails(["create", "e", "--epsilon", "0", "--delta", "1e-5", "--db", db], capsys, "epsilon")
    fails(["create", "e", "--epsilon", "-1", "--delta", "1e-5", "--db", db], capsys, "epsilon")
    fails(["create", "e", "--epsilon", "1", "--delta", "1", "--db", db], capsys, "delta")
    fails(["create", "e", "--epsilon", "1", "--delta", "0", "--db", db], capsys, "delta")
    fails(
        ["create", "e", "--epsilon", "1", "--delta", "1e-5", "--relation", "x", "--db", db],
        capsys,
        "relation",
    )
    fails(["spend", "nope", "--event-json", "-", "--steps", "3", "--db", db], capsys, "not both")
    fails(["spend", "nope", "--sample-rate", "0.1", "--db", db], capsys, "--steps")
    fails(
        ["spend", "nope", "--sample-rate", "0.1", "--noise-multiplier", "1", "--steps", "5",
         "--db", db],
        capsys,
        "no budget for dataset 'nope'",
    )  # fmt: skip
    fails(
        ["spend", "d", "--sample-rate", "1.5", "--noise-multiplier", "1", "--steps", "5",
         "--db", db],
        capsys,
        "--sample-rate",
    )  # fmt: skip
    missing = tmp_path / "missing.json"
    fails(["spend", "d", "--event-json", str(missing), "--db", db], capsys, "cannot read")
    garbled = tmp_path / "garbled.json"
    garbled.write_text("{not json")
    fails(["spend", "d", "--event-json", str(garbled), "--db", db], capsys, "not JSON")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"type": "MagicEvent"}))
    fails(["spend", "d", "--event-json", str(unknown), "--db", db], capsys, "event type")
    fails(["show", "d", "--db", "mysql://me@host/db"], capsys, "--db")
    fails(["release", "42", "--db", db], capsys, "no reservation #42")
    assert run_json(["show", "d", "--db", db], capsys)["spends"] == 0


def test_ledger_location_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "env" / "ledger.db"
    monkeypatch.setenv("DENIABLE_LEDGER", f"sqlite:///{path}")
    run_json(["create", "d", "--epsilon", "1", "--delta", "1e-5"], capsys)
    assert path.exists()
    assert run_json(["show", "d"], capsys)["dataset"] == "d"


def test_show_lists_open_reservations_and_release_frees_them(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from deniable.ledger import Ledger

    run_json(["create", "d", "--epsilon", "3", "--delta", "1e-5", "--db", db], capsys)
    with Ledger(db) as ledger:
        held = ledger.reserve("d", LaplaceEvent(scale=1.0), "crashed run")
    shown = run_json(["show", "d", "--db", db], capsys)
    assert shown["open_reservations"] == 1 and shown["held_epsilon"] == pytest.approx(1.0, rel=1e-3)
    assert shown["reservations"][0]["id"] == held.id
    code, out, _ = run(["show", "d", "--db", db], capsys)
    assert code == 0 and f"open reservation #{held.id}" in out
    assert run_json(["release", str(held.id), "--db", db], capsys) == {"released": held.id}
    assert run_json(["show", "d", "--db", db], capsys)["open_reservations"] == 0


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([], capsys)
    assert code == 0 and err == ""
    for command in ("create", "spend", "show", "history"):
        assert command in out
