"""Multi-process DP-SGD over gloo on localhost, with real processes.

Workers are this file run as a script (``python tests/test_distributed.py SCENARIO OUT``) with
the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); each writes what it saw to
``OUT/rank{r}.pt`` and the test compares it with a single-process run in the test process.

The reference is :func:`deniable.train.private.make_private` itself, with the same seed: the
sampler seed is shared by every rank and the noise seed (seed + 1) is used by rank 0 in the order
``noisy_gradient`` draws it, so W processes must reproduce one process up to the order of
floating-point additions (checked to 1e-5).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deniable import accounting
from deniable.accounting.calibrate import dpsgd_event
from deniable.distributed import (
    DistributedPrivateTraining,
    Rendezvous,
    WorkerLostError,
    free_port,
    join,
    make_distributed_private,
)
from deniable.distributed.group import Group
from deniable.errors import DeniableError
from deniable.train.dp_step import LossFn
from deniable.train.privacy_tracker import PrivacyTracker
from deniable.train.private import make_private

ROOT = Path(__file__).resolve().parents[1]
N, FEATURES, CLASSES = 90, 6, 3
STEPS = 6
SETTINGS = {"batch_size": 18, "max_grad_norm": 0.5, "noise_multiplier": 0.8, "seed": 7}
DELTA = 1e-5


Problem = tuple[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor]


def problem(poison_unit: int | None = None) -> Problem:
    """The same tiny classification problem, model and optimizer in every process."""
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(N, FEATURES, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 0.8).long()
    if poison_unit is not None:
        x[poison_unit] = float("nan")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 16), nn.Tanh(), nn.Linear(16, CLASSES))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.5)
    return model, optimizer, x, y


def user_keys() -> np.ndarray:
    return np.arange(N) // 3  # 30 users of 3 examples: user-level DP, vmap per-unit path


def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs, targets)


# ----------------------------------------------------------------------------- worker side


def _train(group: Group, steps: int, **extra: object) -> dict[str, object]:
    model, optimizer, x, y = problem()
    training = make_distributed_private(
        model,
        optimizer,
        loss_fn,
        x,
        y,
        group=group,
        **{**SETTINGS, **extra},  # type: ignore[arg-type]
    )
    for batch in training.batches(steps=steps):
        training.step(batch)
    training.verify_replicas()
    return {
        "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "tracker": training.tracker.state_dict(),
    }


# The training a worker's loss function may look at (to fail at a given step).
CURRENT: dict[str, DistributedPrivateTraining] = {}


def _refusal(group: Group, data: Problem, loss: LossFn, steps: int) -> dict[str, object]:
    """Train until a step is refused; what each rank recorded and applied by then."""
    model, optimizer, x, y = data
    training = make_distributed_private(
        model,
        optimizer,
        loss,
        x,
        y,
        group=group,
        **SETTINGS,  # type: ignore[arg-type]
    )
    CURRENT["training"] = training
    try:
        for batch in training.batches(steps=steps):
            training.step(batch)
    except WorkerLostError:
        raise
    except DeniableError as error:
        training.verify_replicas()  # the refused step changed nobody's model
        return {
            "error": str(error),
            "recorded": training.tracker.steps,
            "applied": training.steps_done,
        }
    return {"error": None}


def failing_at(step: int, rank: int, kill: bool) -> LossFn:
    """The loss, except that on ``rank`` at ``step`` it raises (or the process kills itself)."""

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if int(os.environ["RANK"]) == rank and CURRENT["training"].steps_done == step:
            if kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("injected failure")
        return loss_fn(outputs, targets)

    return loss


def worker(scenario: str, out: Path) -> None:
    torch.set_num_threads(1)
    rendezvous = Rendezvous.from_env(timeout_s=20)
    rank = rendezvous.rank
    result: dict[str, object] = {}
    with join(rendezvous) as group:
        if scenario == "examples":
            result["examples"] = _train(group, STEPS)
        elif scenario == "suite":
            result["examples"] = _train(group, STEPS)
            result["users"] = _train(group, STEPS, keys=user_keys(), physical_batch_size=2)
            result["nan"] = _refusal(group, problem(poison_unit=1), loss_fn, 40)
            result["raised"] = _refusal(group, problem(), failing_at(2, 1, kill=False), 10)
            model, optimizer, x, y = problem()
            settings = {**SETTINGS, "seed": SETTINGS["seed"] + rank}
            try:
                make_distributed_private(
                    model,
                    optimizer,
                    loss_fn,
                    x,
                    y,
                    group=group,
                    **settings,  # type: ignore[arg-type]
                )
                result["mismatch"] = None
            except DeniableError as error:
                result["mismatch"] = str(error)
        elif scenario == "kill":
            try:
                _refusal(group, problem(), failing_at(3, 1, kill=True), STEPS)
            except WorkerLostError as error:
                training = CURRENT["training"]
                result = {
                    "error": str(error),
                    "recorded": training.tracker.steps,
                    "applied": training.steps_done,
                }
                torch.save(result, out / f"rank{rank}.pt")
                os._exit(1)  # as deniable.distributed.train does: skip the dead group's teardown
        torch.save(result, out / f"rank{rank}.pt")


# ----------------------------------------------------------------------------- test side


def launch(
    command: list[str], world_size: int, *, timeout: float = 60
) -> list[subprocess.CompletedProcess[str]]:
    """Start ``world_size`` processes with torchrun's environment; wait for all of them."""
    port = free_port()
    procs = []
    for rank in range(world_size):
        env = {
            **os.environ,
            "RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
        procs.append(
            subprocess.Popen(
                command,
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def run_scenario(
    scenario: str, world_size: int, out: Path
) -> list[subprocess.CompletedProcess[str]]:
    return launch([sys.executable, str(Path(__file__)), scenario, str(out)], world_size)


def reference(steps: int, **extra: object) -> tuple[dict[str, torch.Tensor], PrivacyTracker]:
    """The single-process run with make_private and the same seed."""
    model, optimizer, x, y = problem()
    training = make_private(model, optimizer, loss_fn, x, y, **{**SETTINGS, **extra})  # type: ignore[arg-type]
    for batch in training.batches(steps=steps):
        training.step(batch)
    return model.state_dict(), training.tracker


def load_results(runs: list[subprocess.CompletedProcess[str]], out: Path) -> list[dict]:
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(len(runs))]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Two ranks run every in-group scenario in one process group."""
    out = tmp_path_factory.mktemp("suite")
    return load_results(run_scenario("suite", 2, out), out)


def check_reproduces(results: list[dict], level: str) -> None:
    extra = {"keys": user_keys(), "physical_batch_size": 2} if level == "users" else {}
    params, tracker = reference(STEPS, **extra)
    for result in results:
        run = result[level]
        for name, value in params.items():
            torch.testing.assert_close(run["params"][name], value, atol=1e-5, rtol=0)
        # (b) every rank recorded the single-process events, hence reports its ε
        assert run["tracker"] == tracker.state_dict()
    spent = PrivacyTracker()
    spent.load_state_dict(results[0][level]["tracker"])
    assert spent.steps == STEPS
    q = SETTINGS["batch_size"] / (N if level == "examples" else N // 3)
    expected = accounting.epsilon(dpsgd_event(SETTINGS["noise_multiplier"], q, STEPS), DELTA)
    assert spent.epsilon(DELTA).epsilon == pytest.approx(expected.epsilon, rel=1e-9)


@pytest.mark.parametrize("level", ["examples", "users"])
def test_two_workers_reproduce_the_single_process_run(suite: list[dict], level: str) -> None:
    check_reproduces(suite, level)


def test_three_workers_reproduce_the_single_process_run(tmp_path: Path) -> None:
    check_reproduces(load_results(run_scenario("examples", 3, tmp_path), tmp_path), "examples")


def test_nan_gradient_on_one_rank_refuses_the_step_everywhere(suite: list[dict]) -> None:
    outcomes = [r["nan"] for r in suite]
    assert all(o["error"] is not None for o in outcomes)
    assert len({o["applied"] for o in outcomes}) == 1  # every rank stopped at the same step
    for o in outcomes:
        assert "refused: rank 1 failed" in o["error"] and "not finite" in o["error"]
        assert "\n" not in o["error"]
        assert o["recorded"] == o["applied"]  # the refused step spent nothing


def test_an_exception_on_one_rank_refuses_the_step_everywhere(suite: list[dict]) -> None:
    for o in (r["raised"] for r in suite):
        assert o["error"].startswith("step 2 refused: rank 1 failed (RuntimeError: injected")
        assert o["recorded"] == o["applied"] == 2


def test_ranks_with_different_settings_are_refused(suite: list[dict]) -> None:
    for message in (r["mismatch"] for r in suite):
        assert message is not None and "rank 1 has seed=8 but rank 0 has 7" in message


def test_a_killed_rank_stops_the_run_without_unrecorded_steps(tmp_path: Path) -> None:
    runs = run_scenario("kill", 2, tmp_path)
    assert runs[1].returncode == -signal.SIGKILL
    assert runs[0].returncode == 1, runs[0].stderr[-2000:]
    seen = torch.load(tmp_path / "rank0.pt", weights_only=False)
    assert "lost contact with another rank during step 3" in seen["error"]
    assert "nothing was recorded" in seen["error"]
    assert seen["recorded"] == seen["applied"] == 3


def test_world_size_mismatch_is_a_one_line_error_on_every_rank() -> None:
    # The handshake runs before any process group exists, so two threads can play two ranks.
    port, errors = free_port(), {}

    def claim(rank: int, world_size: int) -> None:
        try:
            join(Rendezvous(rank, world_size, "127.0.0.1", port, timeout_s=10)).close()
        except DeniableError as error:
            errors[rank] = str(error)

    threads = [threading.Thread(target=claim, args=a) for a in ((0, 2), (1, 3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert set(errors) == {0, 1}
    for message in errors.values():
        assert "\n" not in message
        assert "rank 1 has WORLD_SIZE=3 but rank 0 has WORLD_SIZE=2" in message


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"RANK": "2", "WORLD_SIZE": "2", "MASTER_PORT": "29500"},
            "rank must be an integer in [0, 2)",
        ),
        (
            {"RANK": "0", "WORLD_SIZE": "0", "MASTER_PORT": "29500"},
            "world_size must be an integer >= 1",
        ),
        ({"RANK": "x", "WORLD_SIZE": "2", "MASTER_PORT": "29500"}, "RANK must be an integer"),
        ({"WORLD_SIZE": "2"}, "RANK, MASTER_PORT not set"),
    ],
)
def test_bad_ranks_are_one_line_errors(
    env: dict[str, str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from deniable.distributed.train import main

    for key in ("RANK", "WORLD_SIZE", "MASTER_PORT", "MASTER_ADDR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exit_info:
        main(["--steps", "1"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]


@pytest.mark.slow
def test_torchrun_launches_the_module_and_reports_the_accountants_epsilon() -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this python")
    args = ["--steps", "3", "--seed", "0", "--batch-size", "64", "--noise-multiplier", "1.0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            str(torchrun),
            "--nproc-per-node",
            "2",
            "--master-port",
            str(free_port()),
            "-m",
            "deniable.distributed.train",
            "--timeout",
            "30",
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    q = 64 / 1438  # digits training split
    expected = accounting.epsilon(dpsgd_event(1.0, q, 3), 1e-5).epsilon
    assert result["world_size"] == 2 and result["steps"] == 3
    assert result["sample_rate"] == pytest.approx(q)
    assert result["epsilon"] == pytest.approx(expected, rel=1e-9)
    assert math.isfinite(result["test_accuracy"])


def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path: Path) -> None:
    """Two ranks run 4 steps with a checkpoint, then the same command with --steps 8 resumes
    (rank 0 reads the file and sends it to rank 1): same model, same ε, same steps as 8 steps in
    one go. Resuming with other settings is refused on every rank with one line."""
    module = [sys.executable, "-m", "deniable.distributed.train", "--timeout", "30"]
    common = [
        "--seed",
        "3",
        "--batch-size",
        "64",
        "--noise-multiplier",
        "1.0",
        "--verify-every",
        "2",
    ]

    def result(runs: list[subprocess.CompletedProcess[str]]) -> dict:
        for run in runs:
            assert run.returncode == 0, run.stderr[-3000:]
        return json.loads(runs[0].stdout.strip().splitlines()[-1])

    whole = result(launch([*module, *common, "--steps", "8"], 2))
    checkpoint = str(tmp_path / "ckpt.pt")
    resumable = [*module, *common, "--checkpoint", checkpoint, "--checkpoint-every", "2"]
    first = result(launch([*resumable, "--steps", "4"], 2))
    assert first["steps"] == 4
    resumed = result(launch([*resumable, "--steps", "8"], 2))
    assert resumed["steps"] == whole["steps"] == 8
    assert resumed["model_digest"] == whole["model_digest"]
    assert resumed["epsilon"] == pytest.approx(whole["epsilon"], rel=1e-12)
    other = launch([*resumable, "--steps", "8", "--learning-rate", "0.1"], 2)
    for run in other:
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1 and "other settings" in lines[0]


if __name__ == "__main__":
    worker(sys.argv[1], Path(sys.argv[2]))
    # Results are saved: skip the teardown of gloo's C++ threads, which can abort a finished
    # worker under load (as deniable.distributed.train does).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
