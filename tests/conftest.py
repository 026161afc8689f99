"""Shared fixtures: paths to the read-only shared reference data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from deniable.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """One torch thread per test process: on a 2-core machine shared with subprocesses (kill and
    concurrency tests), two spinning OpenMP threads per process made small steps ~25× slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def accounting_reference() -> dict:
    path = SHARED / "reference" / "accounting.json"
    if not path.exists():
        pytest.fail(f"missing {path}: the shared reference values must sit beside the repo")
    return json.loads(path.read_text())


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
