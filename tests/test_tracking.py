"""Experiment tracking: the JSON-lines, TensorBoard and MLflow backends, track_run, StepLogger.

The JSON-lines backend is always tested; TensorBoard and MLflow only where their packages are
installed (``deniable[tensorboard]``, ``deniable[mlflow]``), read back with their own readers.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deniable.tracking import (
    JsonlTracker,
    MultiTracker,
    StepLogger,
    Tracker,
    TrackingError,
    chain_progress,
    flatten_params,
    metric_history,
    open_tracker,
    read_jsonl,
    track_run,
)
from deniable.train.private import make_private


class Recorder:
    """An in-memory tracker: what was logged, in order."""

    def __init__(self) -> None:
        self.params: dict[str, object] = {}
        self.metrics: list[tuple[str, float, int | None]] = []
        self.artifacts: list[Path] = []
        self.closed = False

    def log_params(self, params: object) -> None:
        assert isinstance(params, dict)
        self.params.update(flatten_params(params))

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        self.metrics.append((name, value, step))

    def log_artifact(self, path: Path | str) -> None:
        self.artifacts.append(Path(path))

    def close(self) -> None:
        self.closed = True

    def history(self, name: str) -> list[tuple[int | None, float]]:
        return [(s, v) for n, v, s in self.metrics if n == name]


def fake_result(run_dir: Path) -> dict[str, object]:
    """The shape of ``deniable.pipeline.run``'s result (values made up, keys as written)."""
    (run_dir / "result.json").write_text("{}")
    (run_dir / "report.html").write_text("<html></html>")
    return {
        "epsilon": 2.5,
        "delta": 1e-5,
        "accountant": "pld",
        "relation": "add_remove",
        "unit": "example",
        "noise_multiplier": 1.3,
        "sample_rate": 0.1,
        "steps": 25,
        "secure_noise": False,
        "test_accuracy": 0.8,
        "train_accuracy": 0.85,
        "baseline_accuracy": 0.9,
        "baseline_train_accuracy": 0.99,
        "audit_epsilon_lower_bound": 0.4,
        "epsilon_curve": [
            {"step": 10, "epoch": 1.0, "epsilon": 1.0},
            {"step": 20, "epoch": 2.0, "epsilon": 2.0},
        ],
        "privacy_scope": "epsilon covers the trained model",
        "config": {"epochs": 2.5, "out": "runs", "data_dir": None},
        "dataset": {"name": "digits", "train_size": 100},
        "versions": {"deniable": "0.1.0"},
        "run_dir": str(run_dir),
        "audit": {
            "epsilon_lower_bound": 0.4,
            "non_private": {"bound": {"epsilon": 1.5}},
            "loss_attack_on_reported_model": {
                "auc": 0.6,
                "advantage": 0.1,
                "tpr_at_fpr": {"0.01": 0.02, "0.001": 0.0},
            },
        },
        "beyond_privacy": {
            "generalisation": {"private": {"accuracy_gap": 0.05}, "baseline": None},
            "fairness": {
                "class": {
                    "private": {"gaps": {"accuracy": 0.3}},
                    "baseline": {"gaps": {"accuracy": 0.1}},
                    "disparate_impact": {"drop_gap": 0.2},
                }
            },
        },
    }


# --------------------------------------------------------------------------- JSON lines


def test_jsonl_writes_params_metrics_and_artifacts(tmp_path: Path) -> None:
    outside = tmp_path / "notes.txt"
    outside.write_text("hello")
    run = tmp_path / "run"
    with JsonlTracker(run) as tracker:
        assert isinstance(tracker, Tracker)
        tracker.log_params({"config": {"epochs": 3, "out": None}, "tags": ["a"], "eps": math.inf})
        tracker.log_metric("privacy/epsilon", 1.5, 10)
        tracker.log_metric("loss", float("nan"), 11)  # not a number: dropped
        tracker.log_metric("loss", None, 12)  # type: ignore[arg-type]
        tracker.log_metric("privacy/epsilon", np.float64(2.0), 20)
        tracker.log_metric("summary", 3)
        tracker.log_artifact(outside)
        (run / "inside.txt").write_text("x")
        tracker.log_artifact(run / "inside.txt")
    records = read_jsonl(run)
    assert records[0]["params"] == {
        "config.epochs": 3,
        "config.out": "None",
        "tags": '["a"]',
        "eps": "inf",
    }
    assert metric_history(records, "privacy/epsilon") == [(10, 1.5), (20, 2.0)]
    assert metric_history(records, "loss") == []
    assert metric_history(records, "summary") == [(None, 3.0)]
    artifacts = [r for r in records if r["kind"] == "artifact"]
    assert [a["path"] for a in artifacts] == ["artifacts/notes.txt", "inside.txt"]
    assert artifacts[0]["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert (run / "artifacts" / "notes.txt").read_text() == "hello"
    assert read_jsonl(run / "metrics.jsonl") == records


def test_jsonl_appends_on_resume_and_makes_fresh_run_dirs(tmp_path: Path) -> None:
    with JsonlTracker(tmp_path / "a") as tracker:
        tracker.log_metric("x", 1.0, 1)
    with JsonlTracker(tmp_path / "a") as tracker:
        tracker.log_metric("x", 2.0, 2)
    assert metric_history(read_jsonl(tmp_path / "a"), "x") == [(1, 1.0), (2, 2.0)]
    first = JsonlTracker(root=tmp_path / "runs")
    second = JsonlTracker(root=tmp_path / "runs")
    first.close()
    second.close()
    assert first.run_dir != second.run_dir
    assert first.run_dir.parent == tmp_path / "runs" and first.path.exists()


@pytest.mark.parametrize(
    ("name", "value", "step", "message"),
    [
        ("", 1.0, 0, "metric name"),
        (" x", 1.0, 0, "metric name"),
        ("x", "1.0", 0, "must be a number"),
        ("x", True, 0, "must be a number"),
        ("x", 1.0, -1, "step"),
        ("x", 1.0, 1.5, "step"),
    ],
)
def test_jsonl_refuses_bad_metrics(
    tmp_path: Path, name: str, value: object, step: object, message: str
) -> None:
    with JsonlTracker(tmp_path) as tracker, pytest.raises(TrackingError, match=message):
        tracker.log_metric(name, value, step)  # type: ignore[arg-type]


def test_closed_tracker_and_missing_files_are_errors(tmp_path: Path) -> None:
    tracker = JsonlTracker(tmp_path)
    with pytest.raises(TrackingError, match="not a file"):
        tracker.log_artifact(tmp_path / "missing.txt")
    tracker.close()
    tracker.close()  # twice is harmless
    with pytest.raises(TrackingError, match="closed"):
        tracker.log_metric("x", 1.0)
    with pytest.raises(TrackingError, match="does not exist"):
        read_jsonl(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.jsonl").write_text('{"kind": "metric"}\n[1]\n')
    with pytest.raises(TrackingError, match=r"metrics.jsonl:2"):
        read_jsonl(tmp_path / "bad")


# --------------------------------------------------------------------------- track_run


def test_track_run_logs_the_claim_the_curve_and_the_audit(tmp_path: Path) -> None:
    result = fake_result(tmp_path)
    recorder = Recorder()
    logged = track_run(result, recorder)
    # The ε curve at its steps, then the final ε at the last step (25 is not on the curve).
    assert recorder.history("privacy/epsilon") == [(10, 1.0), (20, 2.0), (25, 2.5)]
    assert recorder.history("privacy/delta") == [(25, 1e-5)]
    assert logged["accuracy/test"] == 0.8 and logged["accuracy/baseline_test"] == 0.9
    assert logged["audit/epsilon_lower_bound"] == 0.4
    assert logged["audit/epsilon_lower_bound_non_private"] == 1.5
    assert logged["audit/loss_auc"] == 0.6
    assert logged["audit/loss_tpr_at_fpr_0.01"] == 0.02
    assert logged["beyond/accuracy_gap"] == 0.05
    assert "beyond/baseline_accuracy_gap" not in logged  # missing in the result: not logged
    assert logged["beyond/fairness/class/disparate_impact_drop_gap"] == 0.2
    assert recorder.params["relation"] == "add_remove"
    assert recorder.params["config.epochs"] == 2.5 and recorder.params["config.data_dir"] == "None"
    assert recorder.params["dataset.name"] == "digits"
    assert [p.name for p in recorder.artifacts] == ["result.json", "report.html"]


def test_track_run_logs_the_final_epsilon_once(tmp_path: Path) -> None:
    result = fake_result(tmp_path)
    result["epsilon_curve"] = [{"step": 25, "epoch": 2.5, "epsilon": 2.5}]
    recorder = Recorder()
    track_run(result, recorder)
    assert recorder.history("privacy/epsilon") == [(25, 2.5)]
    recorder = Recorder()  # a StepLogger logged the curve, last point included
    track_run(result, recorder, epsilon_curve=False)
    assert recorder.history("privacy/epsilon") == []
    recorder = Recorder()
    result["epsilon_curve"] = [{"step": 10, "epoch": 1.0, "epsilon": 1.0}]
    track_run(result, recorder, epsilon_curve=False, artifacts=False)
    assert recorder.history("privacy/epsilon") == [(25, 2.5)]
    assert recorder.artifacts == []


def test_track_run_of_a_real_run(tmp_path: Path) -> None:
    """Key names drift silently: log a real (tiny) ``deniable run`` and read it back."""
    from deniable.config import TrainConfig
    from deniable.pipeline import run

    config = TrainConfig(
        epochs=1, audit_canaries=20, out=tmp_path, noise_multiplier=1.0, target_epsilon=None
    )
    result = run(config)
    with JsonlTracker(result["run_dir"]) as tracker:  # type: ignore[arg-type]
        logged = track_run(result, tracker)
    records = read_jsonl(result["run_dir"])  # type: ignore[arg-type]
    curve = result["epsilon_curve"]
    assert isinstance(curve, list)
    assert metric_history(records, "privacy/epsilon") == [(p["step"], p["epsilon"]) for p in curve]
    assert logged["privacy/epsilon"] == result["epsilon"]
    assert logged["accuracy/test"] == result["test_accuracy"]
    assert logged["accuracy/baseline_test"] == result["baseline_accuracy"]
    assert logged["audit/epsilon_lower_bound"] == result["audit_epsilon_lower_bound"]
    for name in ("audit/loss_auc", "audit/epsilon_lower_bound_non_private", "beyond/accuracy_gap"):
        assert name in logged
    paths = {r["path"] for r in records if r["kind"] == "artifact"}
    assert paths == {"result.json", "report.html"}
    params = next(r for r in records if r["kind"] == "params")["params"]
    assert isinstance(params, dict) and params["config.epochs"] == 1.0


# --------------------------------------------------------------------------- StepLogger


def tiny_training(steps_seed: int = 0):  # type: ignore[no-untyped-def]
    torch.manual_seed(steps_seed)
    x = torch.randn(60, 5)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(5, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return make_private(
        model,
        optimizer,
        nn.functional.cross_entropy,
        x,
        y,
        batch_size=10,
        max_grad_norm=1.0,
        noise_multiplier=1.0,
        seed=steps_seed,
    )


def test_step_logger_in_your_own_loop_logs_epsilon_from_the_events() -> None:
    training = tiny_training()
    recorder = Recorder()
    logger = StepLogger(recorder, delta=1e-5, epsilon_every=3)
    for batch in training.batches(steps=6):
        stats = training.step(batch)
        logger.after_step(training, stats)
    eps = recorder.history("privacy/epsilon")
    assert [s for s, _ in eps] == [3, 6]
    assert eps[-1][1] == training.epsilon(1e-5).epsilon
    assert eps[0][1] < eps[1][1]
    losses = recorder.history("diagnostic/batch_loss")
    assert [s for s, _ in losses] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(v) for _, v in losses)
    fractions = recorder.history("diagnostic/clipped_fraction")
    assert all(0.0 <= v <= 1.0 for _, v in fractions)


def test_step_logger_as_a_hook_and_as_progress() -> None:
    recorder = Recorder()
    logger = StepLogger(recorder, every=2, diagnostics=True)

    class Stats:
        units, clipped_fraction, loss = 4, 0.5, 1.25

    for step in range(1, 5):
        logger(step, Stats(), 0.1 * step if step == 4 else None)
    assert recorder.history("privacy/epsilon") == [(4, pytest.approx(0.4))]
    assert recorder.history("diagnostic/batch_loss") == [(2, 1.25), (4, 1.25)]
    assert recorder.history("diagnostic/batch_units") == [(2, 4), (4, 4)]
    quiet = Recorder()
    StepLogger(quiet, diagnostics=False)(1, Stats(), 0.5)
    assert [n for n, _, _ in quiet.metrics] == ["privacy/epsilon"]
    seen: list[tuple[int, int]] = []
    progress = chain_progress(None, lambda d, t: seen.append((d, t)), logger.progress)
    assert progress is not None
    for done in range(1, 6):
        progress(done, 5)
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert recorder.history("train/progress") == [(2, 0.4), (4, 0.8), (5, 1.0)]
    assert chain_progress(None, None) is None


def test_step_logger_checks_its_settings() -> None:
    with pytest.raises(ValueError, match="delta"):
        StepLogger(Recorder(), epsilon_every=5)
    with pytest.raises(ValueError, match="every"):
        StepLogger(Recorder(), every=0)


# --------------------------------------------------------------------------- registry


def test_open_tracker_by_name(tmp_path: Path) -> None:
    tracker = open_tracker("jsonl", tmp_path / "r")
    assert isinstance(tracker, JsonlTracker)
    tracker.close()
    with pytest.raises(TrackingError, match="unknown tracker 'wandb'"):
        open_tracker(["jsonl", "wandb"], tmp_path)
    with pytest.raises(TrackingError, match="at least one"):
        open_tracker([], tmp_path)
    both = MultiTracker([Recorder(), Recorder()])
    both.log_metric("x", 1.0, 1)
    both.close()
    assert all(r.closed and r.metrics == [("x", 1.0, 1)] for r in both.trackers)  # type: ignore[attr-defined]


def test_missing_backends_say_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deniable.tracking import MlflowTracker, TensorBoardTracker

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(TrackingError, match=r"deniable\[tensorboard\]"):
        TensorBoardTracker(tmp_path)
    with pytest.raises(TrackingError, match=r"deniable\[mlflow\]"):
        MlflowTracker(f"file:{tmp_path}")
    with pytest.raises(TrackingError, match=r"deniable\[mlflow\]"):
        open_tracker(["jsonl", "mlflow"], tmp_path)


# --------------------------------------------------------------------------- TensorBoard


def test_tensorboard_backend_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from deniable.tracking import TensorBoardTracker

    (tmp_path / "report.html").write_text("<html></html>")
    with TensorBoardTracker(tmp_path / "tb") as tracker:
        tracker.log_params({"config": {"epochs": 3, "out": None}})
        tracker.log_metric("privacy/epsilon", 1.0, 10)
        tracker.log_metric("privacy/epsilon", 2.0, 20)
        tracker.log_metric("skipped", float("inf"), 1)
        tracker.log_artifact(tmp_path / "report.html")
    scalars = []
    for events in sorted((tmp_path / "tb").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if "privacy/epsilon" in acc.Tags()["scalars"]:
            scalars = [(e.step, e.value) for e in acc.Scalars("privacy/epsilon")]
            assert "skipped" not in acc.Tags()["scalars"]
    assert scalars == [(10, 1.0), (20, 2.0)]
    assert (tmp_path / "tb" / "artifacts" / "report.html").exists()


# --------------------------------------------------------------------------- MLflow


def test_mlflow_backend_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from deniable.tracking import MlflowTracker

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "unset-below")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")  # the tracker sets it for file stores
    monkeypatch.chdir(tmp_path)
    result = fake_result(tmp_path)
    with MlflowTracker(experiment="test", run_name="tiny") as tracker:  # file:./mlruns
        track_run(result, tracker)
        run_id = tracker.run_id
        uri = tracker.tracking_uri
    assert uri == (tmp_path / "mlruns").resolve().as_uri()
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    assert run.data.params["relation"] == "add_remove"
    assert run.data.params["config.data_dir"] == "None"
    history = client.get_metric_history(run_id, "privacy/epsilon")
    assert sorted((m.step, m.value) for m in history) == [(10, 1.0), (20, 2.0), (25, 2.5)]
    assert run.data.metrics["audit/epsilon_lower_bound"] == 0.4
    with MlflowTracker(experiment="test") as again:
        again.log_params({"a": 1})
        with pytest.raises(TrackingError, match="MLflow refused the parameters"):
            again.log_params({"a": 2})  # MLflow parameters are write-once
    names = {a.path for a in client.list_artifacts(run_id)}
    assert names == {"result.json", "report.html"}
    assert json.loads((tmp_path / "result.json").read_text()) == {}


# --------------------------------------------------------------------------- wired into the CLI


def test_train_private_feeds_a_step_logger() -> None:
    from deniable.config import TrainConfig
    from deniable.data import load_dataset
    from deniable.train.trainer import train_private

    recorder = Recorder()
    config = TrainConfig(epochs=2, noise_multiplier=1.0, target_epsilon=None)
    outcome = train_private(
        load_dataset("digits"),
        config,
        on_step=StepLogger(recorder, every=1),  # type: ignore[call-arg]
    )
    curve = [(p["step"], p["epsilon"]) for p in outcome.epsilon_curve]
    assert recorder.history("privacy/epsilon") == curve
    steps = [s for s, _ in recorder.history("diagnostic/batch_loss")]
    assert steps == list(range(1, outcome.training.steps_done + 1))


def test_cli_track_writes_metrics_beside_the_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import run_cli

    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        ["train", "--epochs", "1", "--noise-multiplier", "1.0", "--run-dir", str(run_dir),
         "--track", "jsonl", "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    records = read_jsonl(run_dir)
    curve = [(p["step"], p["epsilon"]) for p in result["epsilon_curve"]]
    assert metric_history(records, "privacy/epsilon") == curve
    assert metric_history(records, "accuracy/test") == [(result["steps"], result["test_accuracy"])]
    assert {r["path"] for r in records if r["kind"] == "artifact"} >= {"result.json"}
    code, _, err = run_cli(["train", "--track", "wandb", "--quiet"], capsys)
    assert code == 2 and "unknown tracker 'wandb'" in err
