"""Checkpoints: a resumed run continues the same ε curve and the same model; a kill -9 loses no
recorded spend; files load with weights_only and foreign files get one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from deniable.config import TrainConfig
from deniable.data import load_dataset
from deniable.errors import DeniableError
from deniable.train.checkpoint import load_checkpoint
from deniable.train.trainer import train_private

CONFIG = {
    "dataset": "digits",
    "model": "logreg",
    "epochs": 2.0,
    "batch_size": 64,
    "noise_multiplier": 1.0,
    "target_epsilon": None,
    "seed": 3,
}


def test_resume_continues_the_same_run(tmp_path: Path) -> None:
    split = load_dataset("digits", seed=0)
    config = TrainConfig(**CONFIG)
    whole = train_private(split, config)

    part = TrainConfig(**{**CONFIG, "epochs": 1.0})
    checkpoint = tmp_path / "checkpoint.pt"
    train_private(split, part, checkpoint=checkpoint)
    first_steps = load_checkpoint(checkpoint)["training"]["steps_done"]  # type: ignore[index]
    assert 0 < first_steps < whole.training.steps_done
    resumed = train_private(split, config, checkpoint=checkpoint)

    assert resumed.training.steps_done == whole.training.steps_done
    assert resumed.training.tracker.event() == whole.training.tracker.event()
    assert resumed.training.epsilon(1e-5).epsilon == whole.training.epsilon(1e-5).epsilon
    for a, b in zip(
        resumed.training.model.parameters(), whole.training.model.parameters(), strict=True
    ):
        torch.testing.assert_close(a, b)


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DeniableError, match="not a readable"):
        load_checkpoint(bad)
    torch.save({"format": "other"}, bad)
    with pytest.raises(DeniableError, match="not a deniable checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(DeniableError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_kill_minus_nine_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    args = [
        "train",
        "--model",
        "logreg",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--noise-multiplier",
        "1.0",
        "--seed",
        "5",
        "--quiet",
        "--json",
    ]
    uninterrupted = tmp_path / "whole"
    uninterrupted.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "deniable", *args, "--out", str(uninterrupted)],
        capture_output=True,
        text=True,
        check=True,
    )
    expected = json.loads(done.stdout)

    run_dir = tmp_path / "killed"
    run_dir.mkdir()
    config = tmp_path / "config.toml"
    config.write_text("checkpoint_every = 3\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deniable",
            *args,
            "--config",
            str(config),
            "--run-dir",
            str(run_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = run_dir / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), "the run never wrote a checkpoint"
    spent = load_checkpoint(checkpoint)["training"]["steps_done"]  # type: ignore[index]
    assert spent >= 3

    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "deniable",
            *args,
            "--config",
            str(config),
            "--resume",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(resumed.stdout)
    assert result["resumed"] is True
    assert result["steps"] == expected["steps"]
    assert result["epsilon"] == pytest.approx(expected["epsilon"], rel=1e-12)
