"""DP-FedAvg on Flower's deployment engine, with real processes on localhost.

The example app (``examples/flower_app``) is launched as a user would launch it on real
machines: ``flower-superlink --insecure`` (one HTTP port: Fleet, Control and ServerApp runtime
APIs), three ``flower-supernode --insecure`` processes, each with its own data file of 200 UCI
Adult rows in its ``--node-config`` (the server never has them), then ``flwr run APP CONNECTION
--stream``, which packages the app as a FAB and submits it to the SuperLink. The SuperLink and
every SuperNode unpack the FAB under ``FLWR_HOME`` (a temporary folder, as is the connection
config ``FLWR_HOME/config.toml``) and run it with the installed packages: the SuperLink is
started with ``--disable-runtime-dependency-installation`` (its default is ``uv sync`` of the
app's dependencies, which needs the network); SuperNodes do not install unless told to. Usage
reports and the update check are off (``FLWR_TELEMETRY_ENABLED=0``,
``FLWR_DISABLE_UPDATE_CHECK=1``): nothing leaves localhost.

One run (module fixture: 3 rounds, ~45-60 s on 2 cores, mostly the SuperNodes' 3 s polling and
a fresh ``flwr-clientapp`` process, importing torch, for every message) serves the checks: the
run completed, the server's report states dp-accounting's ε for the Poisson-sampled Gaussian
with the same q, z and rounds, the model learned, and it is the model of the in-process
:class:`DPFedAvg` with the same data, seeds and server seed. Every process started here is in a
process group of its own, ended in a ``finally`` block.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import torch
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant
from torch import nn

from conftest import SHARED
from deniable.distributed.clipping import FixedClipping
from deniable.distributed.fedavg import DPFedAvg, LocalSGDClient
from deniable.distributed.group import free_port

pytest.importorskip("flwr.serverapp", reason="Flower (deniable[fl]) is not installed")

APP = Path(__file__).resolve().parents[1] / "examples" / "flower_app"
BIN = Path(sys.executable).parent  # flower-superlink, flower-supernode and flwr live here
ADULT = SHARED / "data" / "adult"
# 3 clients is far too few for a useful user-level ε (it is ~38 here); with so few clients the
# noise must be low for the model to learn in 3 rounds. The point is the deployed mechanism.
K, PER_CLIENT, ROUNDS, Q, Z, S, SEED, DELTA = 3, 200, 3, 0.67, 0.3, 1.0, 3, 1e-5
LOCAL_STEPS, LEARNING_RATE, BATCH = 5, 0.5, 50


@dataclass(frozen=True)
class Deployment:
    output: str  # what `flwr run --stream` printed
    runs: list[dict[str, object]]  # `flwr ls --format json`
    report: dict[str, object]
    state: dict[str, torch.Tensor]
    parts: Path
    seconds: float


def _example() -> tuple[ModuleType, ModuleType]:
    """The example's ``task`` and ``prepare`` modules, imported from examples/flower_app."""
    sys.path.insert(0, str(APP))
    try:
        from dp_fedavg_app import prepare, task
    finally:
        sys.path.remove(str(APP))
    return task, prepare


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), None if gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _tree(roots: list[int]) -> dict[int, str]:
    """``roots`` and all their descendants, pid → start time (Linux /proc). Flower's SuperLink
    starts its SuperExec in a session of its own, and SuperExecs start the ServerApp and
    ClientApp processes: no one process group holds them all."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        if (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = {}, list(roots)
    while todo:
        pid = todo.pop()
        if (fields := _stat(pid)) is not None:
            found[pid] = fields[19]
            todo.extend(children.get(pid, []))
    return found


def _alive(pid: int, started: str) -> bool:
    """Whether ``pid`` is still the process that started at ``started``, and not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[19] == started and fields[0] != "Z"


def _end(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process started here and its descendants, SIGKILL what is left after 10 s.
    The tree is walked again while waiting (a SuperExec may start a process meanwhile), from
    live processes only, and a pid is signalled only while it is the same process (same start
    time), so no other process is ever signalled."""
    known: dict[int, str] = {}
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        signalled: set[int] = set()
        deadline = time.monotonic() + wait
        while True:
            for process in processes:
                process.poll()  # reap the ones started here
            live = [pid for pid, started in known.items() if _alive(pid, started)]
            known.update(_tree([p.pid for p in processes if p.returncode is None] + live))
            alive = [pid for pid, started in known.items() if _alive(pid, started)]
            for pid in set(alive) - signalled:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
                signalled.add(pid)
            for process in processes:  # without /proc: each one's own process group
                if process.returncode is None and process.pid not in signalled:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, sig)
                    signalled.add(process.pid)
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"flower-superlink exited ({process.returncode}):\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"flower-superlink did not listen on {port} in 60 s:\n{log.read_text()}")


def _logs(folder: Path) -> str:
    return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted(folder.glob("*.log")))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    if not ADULT.is_dir():
        pytest.skip(f"shared data folder {ADULT} absent")
    for tool in ("flower-superlink", "flower-supernode", "flwr"):
        if not (BIN / tool).exists():
            pytest.skip(f"{tool} is not installed beside {sys.executable}")
    _, prepare = _example()
    root = tmp_path_factory.mktemp("flower-deployment")
    parts, logs, home = root / "parts", root / "logs", root / "flwr-home"
    logs.mkdir()
    home.mkdir()
    clients = prepare.prepare(SHARED / "data", parts, clients=K, rows=PER_CLIENT)
    port = free_port()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "localhost"\n\n'
        f'[superlink.localhost]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    env = {
        **os.environ,
        "FLWR_HOME": str(home),  # connection config, unpacked apps, state: not in $HOME
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "OMP_NUM_THREADS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    run_config = " ".join(
        [
            f"num-clients={K} sample-rate={Q} noise-multiplier={Z} clip-norm={S}",
            f"num-rounds={ROUNDS} delta={DELTA} seed={SEED} min-nodes={K} timeout=120.0",
            f"local-steps={LOCAL_STEPS} learning-rate={LEARNING_RATE} batch-size={BATCH}",
            f'report-path="{root / "report.json"}" model-path="{root / "model.pt"}"',
            f'test-path="{parts / "test.npz"}"',
        ]
    )
    processes: list[subprocess.Popen[bytes]] = []
    start = time.monotonic()
    try:
        superlink = [
            str(BIN / "flower-superlink"),
            "--insecure",
            "--host=127.0.0.1",
            f"--port={port}",
            "--disable-runtime-dependency-installation",
        ]
        processes.append(_start(superlink, logs / "superlink.log", env))
        _wait_for_port(port, processes[0], logs / "superlink.log")
        for k, path in enumerate(clients):
            supernode = [
                str(BIN / "flower-supernode"),
                "--insecure",
                f"--superlink=127.0.0.1:{port}",
                "--host=127.0.0.1",
                f"--port={free_port()}",  # the node's own runtime API, for its ClientApps
                f'--node-config=partition-id={k} data-path="{path}"',
            ]
            processes.append(_start(supernode, logs / f"supernode-{k}.log", env))
        flwr = [str(BIN / "flwr"), "run", str(APP), "localhost", "--run-config", run_config]
        done = subprocess.run(
            [*flwr, "--stream"], env=env, capture_output=True, text=True, timeout=240
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output + _logs(logs)
        listing = subprocess.run(
            [str(BIN / "flwr"), "ls", "localhost", "--format", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listing.returncode == 0, listing.stdout + listing.stderr
        report_path = root / "report.json"
        assert report_path.exists(), output + _logs(logs)
        result = Deployment(
            output=output,
            runs=json.loads(listing.stdout)["runs"],
            report=json.loads(report_path.read_text()),
            state=torch.load(root / "model.pt"),
            parts=parts,
            seconds=time.monotonic() - start,
        )
    finally:
        _end(processes)
    return result


def test_the_run_completes_on_three_supernodes(deployment: Deployment) -> None:
    started = re.search(r"Successfully started run (\d+)", deployment.output)
    assert started, deployment.output
    run = next(r for r in deployment.runs if str(r["run-id"]) == started.group(1))
    assert str(run["status"]).startswith("finished:completed"), run
    assert f"[ROUND {ROUNDS}/{ROUNDS}]" in deployment.output
    assert "DP-FedAvg: user-level ε = " in deployment.output  # the server's log line
    # The ServerApp ran in the deployment engine, not in a simulation.
    assert "Start `flwr-serverapp` process" in deployment.output


def test_the_reported_epsilon_is_dp_accountings(deployment: Deployment) -> None:
    report = deployment.report
    guarantee = report["guarantee"]
    assert isinstance(guarantee, dict)
    step = dp_event.PoissonSampledDpEvent(Q, dp_event.GaussianDpEvent(Z))
    pld = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-4)
    pld.compose(dp_event.SelfComposedDpEvent(step, ROUNDS))
    assert guarantee["epsilon"] == pytest.approx(pld.get_epsilon(DELTA), rel=1e-4)
    assert guarantee["delta"] == DELTA and guarantee["relation"] == "add_remove"
    assert (report["unit"], report["num_clients"], report["rounds"]) == ("client", K, ROUNDS)
    assert (report["sample_rate"], report["noise_multiplier"]) == (Q, Z)
    assert report["event"] == {
        "type": "SelfComposedEvent",
        "event": {
            "type": "PoissonSampledEvent",
            "sample_rate": Q,
            "event": {
                "type": "GaussianEvent",
                "sigma": Z * S,
                "sensitivity": S,
                "replace_one_sensitivity": None,
            },
        },
        "count": ROUNDS,
    }


def test_the_deployed_federation_learns_adult(deployment: Deployment) -> None:
    accuracy = deployment.report["test_accuracy"]
    assert isinstance(accuracy, dict)
    # 3000 test rows: a 0.2 gain is ~20 standard errors; the seeded run gains ~0.35 (from a
    # random initial model; the majority class is 0.75), and all of 20 server seeds gain > 0.28.
    assert accuracy["final"] > accuracy["initial"] + 0.2, accuracy


def test_the_deployment_equals_the_in_process_federation(deployment: Deployment) -> None:
    """The same clients (data files, minibatch seeds = partition ids) and server seed in
    :class:`DPFedAvg`: the same model up to float rounding (a node sends θ + Δ, the strategy
    subtracts θ). Client k is partition k because the ServerApp pins slots to the partition ids
    the SuperNodes report, and each node's Context keeps its minibatch generator across rounds."""
    task, _ = _example()
    clients = [
        LocalSGDClient(
            *task.read_partition(deployment.parts / f"client-{k}.npz"),
            local_steps=LOCAL_STEPS,
            learning_rate=LEARNING_RATE,
            batch_size=BATCH,
            seed=k,
        )
        for k in range(K)
    ]
    model: nn.Module = task.make_model(clients[0].inputs.shape[1])
    federation = DPFedAvg(
        model, clients, sample_rate=Q, noise_multiplier=Z, clipping=FixedClipping(S), seed=SEED
    )
    sampled = sum(federation.round().sampled for _ in range(ROUNDS))
    assert 0 < sampled < K * ROUNDS  # sampling happened, and was not all-or-nothing
    for name, value in model.state_dict().items():
        torch.testing.assert_close(deployment.state[name], value, atol=1e-6, rtol=0)
    report = deployment.report["guarantee"]
    assert isinstance(report, dict)
    assert federation.epsilon(DELTA).epsilon == report["epsilon"]
    assert deployment.seconds < 150  # launch to last report, on 2 busy cores ~60 s
