"""The ``deniable`` command line.

Contracts other programs rely on (see the README and ../shared/DESIGN.md): ``account --json``,
``calibrate --json`` and ``run --json`` print one JSON object; every error a user can cause exits
non-zero with one line on stderr.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from deniable import __version__, accounting, allocator
from deniable.accounting import calibrate as calib
from deniable.config import TrainConfig, load_account_config, load_config
from deniable.errors import DeniableError, InvalidParameterError, check_count, check_positive
from deniable.events import (
    ComposedEvent,
    GaussianEvent,
    Neighbouring,
    PoissonSampledEvent,
    PrivacyEvent,
    SelfComposedEvent,
)
from deniable.tracking.base import Tracker

if TYPE_CHECKING:
    from deniable.text.experiments import SecretSharerRow

T = TypeVar("T")

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Differential privacy for deep learning that you can check.",
)
console = Console()


def _progress_bar(label: str, *, hidden: bool) -> Progress:
    """A transient progress bar on stdout, shown only in a terminal: in a pipe or a log it would
    leave a blank line behind (also before a one-line error)."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=hidden or not console.is_terminal,
    )


def _register_subcommands() -> None:
    from deniable.ledger.cli import app as ledger_app

    app.add_typer(ledger_app, name="ledger")

AccountantOpt = Annotated[
    str | None, typer.Option("--accountant", help="pld (tight), rdp or basic; 'all' for a table.")
]
RelationOpt = Annotated[
    str | None, typer.Option("--relation", help="Neighbouring relation: add_remove or replace_one.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML file of config keys.")]
DeltaOpt = Annotated[float | None, typer.Option("--delta", help="Target δ, in (0, 1).")]
SizeOpt = Annotated[
    int | None, typer.Option("--dataset-size", help="Number of units n, to check δ < 1/n.")
]


def _relation(value: str) -> Neighbouring:
    try:
        return Neighbouring(value)
    except ValueError:
        raise InvalidParameterError("--relation", value, "add_remove or replace_one") from None


def _accountants(value: str) -> list[str]:
    if value == "all":
        return list(accounting.ACCOUNTANTS)
    if value not in accounting.ACCOUNTANTS:
        raise InvalidParameterError("--accountant", value, "pld, rdp, basic or all")
    return [value]


def _parse_phase(text: str) -> tuple[float, float, int]:
    parts = text.split(":")
    try:
        q, sigma, steps = float(parts[0]), float(parts[1]), int(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise InvalidParameterError(
            "--phase", text, "SAMPLE_RATE:NOISE_MULTIPLIER:STEPS, e.g. 0.01:1.1:1000"
        ) from None
    return q, sigma, steps


def _phases_event(phases: list[tuple[float, float, int]]) -> PrivacyEvent:
    events = [
        SelfComposedEvent(PoissonSampledEvent(q, GaussianEvent(check_positive("sigma", s))), t)
        for q, s, t in phases
    ]
    return events[0] if len(events) == 1 else ComposedEvent(events)


def _warn(message: str | None, warnings: list[str]) -> None:
    if message:
        warnings.append(message)
        print(message, file=sys.stderr)


@app.command()
def account(
    config: ConfigOpt = None,
    sample_rate: Annotated[
        float | None, typer.Option("--sample-rate", help="Poisson sampling rate q.")
    ] = None,
    noise_multiplier: Annotated[
        float | None, typer.Option("--noise-multiplier", help="σ / clipping norm.")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Number of steps T.")] = None,
    delta: DeltaOpt = None,
    phase: Annotated[
        list[str] | None,
        typer.Option("--phase", help="Q:SIGMA:STEPS, repeatable; phases compose in order."),
    ] = None,
    accountant: AccountantOpt = None,
    relation: RelationOpt = None,
    dataset_size: SizeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """ε spent by DP-SGD (Poisson-sampled Gaussian) for given q, σ, T and δ."""
    cfg = load_account_config(
        config,
        {
            "sample_rate": sample_rate,
            "noise_multiplier": noise_multiplier,
            "steps": steps,
            "delta": delta,
            "phase": phase or None,
            "accountant": accountant,
            "relation": relation,
            "dataset_size": dataset_size,
        },
    )
    sample_rate, noise_multiplier, steps = cfg.sample_rate, cfg.noise_multiplier, cfg.steps
    delta, dataset_size = cfg.delta, cfg.dataset_size
    if cfg.phase:
        phases = [_parse_phase(p) for p in cfg.phase]
    else:
        missing = [
            name
            for name, value in (
                ("--sample-rate", sample_rate),
                ("--noise-multiplier", noise_multiplier),
                ("--steps", steps),
            )
            if value is None
        ]
        if missing:
            raise DeniableError(f"missing {', '.join(missing)} (or give --phase Q:SIGMA:STEPS)")
        assert sample_rate is not None and noise_multiplier is not None and steps is not None
        phases = [(sample_rate, noise_multiplier, steps)]
    for _, _, t in phases:
        check_count("--steps", t)
    event = _phases_event(phases)
    rel = _relation(cfg.relation)
    names = _accountants(cfg.accountant)
    results = [accounting.epsilon(event, delta, accountant=name, relation=rel) for name in names]
    warnings: list[str] = []
    _warn(calib.delta_warning(delta, dataset_size), warnings)
    if as_json:
        main_result = results[0]
        out = {
            **main_result.to_dict(),
            "phases": [
                {"sample_rate": q, "noise_multiplier": s, "steps": t} for q, s, t in phases
            ],
            "by_accountant": {r.accountant: r.epsilon for r in results},
            "warnings": warnings,
        }
        if len(phases) == 1:
            q, s, t = phases[0]
            out.update(sample_rate=q, noise_multiplier=s, steps=t)
        print(json.dumps(out))
        return
    table = Table(title=f"DP-SGD privacy spent (δ = {delta:g}, {rel.value})")
    table.add_column("accountant")
    table.add_column("ε", justify="right")
    table.add_column("how", style="dim")
    how = {
        "pld": "privacy loss distribution, FFT composition (tight upper bound)",
        "rdp": "Rényi DP, improved conversion (Balle et al. 2020)",
        "basic": "Σ ε_i, δ split per Gaussian step (loose baseline)",
    }
    for r in results:
        table.add_row(r.accountant, f"{r.epsilon:.4f}", how[r.accountant])
    console.print(table)


@app.command(name="calibrate")
def calibrate_cmd(
    config: ConfigOpt = None,
    target_epsilon: Annotated[
        float | None, typer.Option("--target-epsilon", help="Target ε > 0.")
    ] = None,
    sample_rate: Annotated[
        float | None, typer.Option("--sample-rate", help="Poisson sampling rate q.")
    ] = None,
    delta: DeltaOpt = None,
    steps: Annotated[
        int | None, typer.Option("--steps", help="Steps T; omit to get the most steps for σ.")
    ] = None,
    noise_multiplier: Annotated[
        float | None,
        typer.Option("--noise-multiplier", help="With no --steps: find the largest T for this σ."),
    ] = None,
    accountant: AccountantOpt = None,
    relation: RelationOpt = None,
    dataset_size: SizeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Smallest noise multiplier σ reaching (ε, δ) in T steps, or the most steps σ allows."""
    cfg = load_account_config(
        config,
        {
            "target_epsilon": target_epsilon,
            "sample_rate": sample_rate,
            "delta": delta,
            "steps": steps,
            "noise_multiplier": noise_multiplier,
            "accountant": accountant,
            "relation": relation,
            "dataset_size": dataset_size,
        },
    )
    if cfg.target_epsilon is None or cfg.sample_rate is None:
        missing = [
            flag
            for flag, value in (
                ("--target-epsilon", cfg.target_epsilon),
                ("--sample-rate", cfg.sample_rate),
            )
            if value is None
        ]
        raise DeniableError(f"missing {', '.join(missing)} (a flag or a config key)")
    if cfg.phase:
        raise DeniableError("calibrate takes one phase: give sample_rate and steps, not phase")
    rel = _relation(cfg.relation)
    names = _accountants(cfg.accountant)
    if len(names) != 1:
        raise InvalidParameterError("--accountant", cfg.accountant, "pld, rdp or basic")
    delta, dataset_size = cfg.delta, cfg.dataset_size
    if cfg.steps is not None:
        result = calib.noise_multiplier(
            cfg.target_epsilon, delta, cfg.sample_rate, cfg.steps, accountant=names[0],
            relation=rel,
        )
    elif cfg.noise_multiplier is not None:
        result = calib.max_steps(
            cfg.noise_multiplier, cfg.target_epsilon, delta, cfg.sample_rate,
            accountant=names[0], relation=rel,
        )
    else:
        raise DeniableError("give --steps (to calibrate σ) or --noise-multiplier (to find T)")
    warnings: list[str] = []
    _warn(calib.delta_warning(delta, dataset_size), warnings)
    if as_json:
        print(json.dumps({**result.to_dict(), "warnings": warnings}))
        return
    table = Table(title="DP-SGD calibration")
    for column in ("noise multiplier σ", "steps T", "sample rate q", "ε", "δ", "accountant"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{result.noise_multiplier:.5f}",
        str(result.steps),
        f"{result.sample_rate:.6g}",
        f"{result.epsilon:.4f}",
        f"{result.delta:g}",
        result.accountant,
    )
    console.print(table)


def _train_options(
    config: Path | None,
    dataset: str | None,
    data_dir: Path | None,
    model: str | None,
    epochs: float | None,
    batch_size: int | None,
    learning_rate: float | None,
    max_grad_norm: float | None,
    noise_multiplier: float | None,
    target_epsilon: float | None,
    delta: float | None,
    sampling: str | None,
    seed: int | None,
    secure: bool,
    out: Path | None,
    method: str | None = None,
    compare: str | None = None,
    track: list[str] | None = None,
    mlflow_uri: str | None = None,
) -> TrainConfig:
    overrides: dict[str, object] = {
        "track": track or None,
        "mlflow_uri": mlflow_uri,
        "method": method,
        "compare": None if compare is None else [m.strip() for m in compare.split(",") if m],
        "dataset": dataset,
        "data_dir": data_dir,
        "model": model,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "max_grad_norm": max_grad_norm,
        "noise_multiplier": noise_multiplier,
        "target_epsilon": target_epsilon,
        "delta": delta,
        "sampling": sampling,
        "seed": seed,
        "out": out,
    }
    cfg = load_config(config, overrides)
    if secure:
        cfg = cfg.model_copy(update={"seed": None})
    return cfg


DatasetOpt = Annotated[
    str | None, typer.Option("--dataset", help="digits (default), mnist, fashion-mnist, adult, ...")
]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Folder with the data files.")]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="mlp, cnn, tanh-cnn, papernot-cnn, papernot-gn-cnn, papernot-ws-gn-cnn or logreg.",
    ),
]
EpochsOpt = Annotated[float | None, typer.Option("--epochs", help="Epochs (steps = epochs/q).")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Expected units per batch.")]
LrOpt = Annotated[float | None, typer.Option("--learning-rate", help="Learning rate.")]
ClipOpt = Annotated[float | None, typer.Option("--max-grad-norm", help="Clipping norm C.")]
SigmaOpt = Annotated[
    float | None, typer.Option("--noise-multiplier", help="σ (or --target-epsilon).")
]
TargetOpt = Annotated[
    float | None, typer.Option("--target-epsilon", help="Calibrate σ to reach this ε.")
]
TrainDeltaOpt = Annotated[float | None, typer.Option("--delta", help="δ of the guarantee.")]
SamplingOpt = Annotated[
    str | None, typer.Option("--sampling", help="poisson (default) or fixed (replace-one).")
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for sampling and noise.")]
SecureOpt = Annotated[
    bool, typer.Option("--secure", help="Seed sampling and noise from the OS CSPRNG.")
]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Folder for runs/<id>/.")]
MethodOpt = Annotated[
    str | None,
    typer.Option("--method", help="Where the noise goes: dpsgd, pate, label-dp, input, output."),
]
CompareOpt = Annotated[
    str | None,
    typer.Option("--compare", help="Also train these methods (comma list) at the same ε."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]
TrackOpt = Annotated[
    list[str] | None,
    typer.Option("--track", help="Log to jsonl, tensorboard or mlflow (repeatable)."),
]
MlflowUriOpt = Annotated[
    str | None, typer.Option("--mlflow-uri", help="MLflow tracking URI (with --track mlflow).")
]


def _train_and_report(
    cfg: TrainConfig,
    *,
    baseline: bool,
    run_dir: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train (and for ``run``: baseline and audit), then print the result; with ``cfg.track``,
    log per-step and final metrics to the named trackers."""
    if not cfg.track:
        _train_and_report_untracked(
            cfg, baseline=baseline, run_dir=run_dir, as_json=as_json, quiet=quiet, tracker=None
        )
        return
    from deniable.pipeline import new_run_dir
    from deniable.tracking import open_tracker

    run_dir = run_dir if run_dir is not None else new_run_dir(cfg.out)
    tracker = open_tracker(list(cfg.track), run_dir, mlflow_uri=cfg.mlflow_uri)
    try:
        _train_and_report_untracked(
            cfg, baseline=baseline, run_dir=run_dir, as_json=as_json, quiet=quiet, tracker=tracker
        )
    finally:
        tracker.close()


def _train_and_report_untracked(
    cfg: TrainConfig,
    *,
    baseline: bool,
    run_dir: Path | None,
    as_json: bool,
    quiet: bool,
    tracker: Tracker | None,
) -> None:

    from deniable.pipeline import run as run_pipeline
    from deniable.tracking import StepLogger, track_run

    def warn(message: str) -> None:
        print(message, file=sys.stderr)

    on_step = StepLogger(tracker, every=10) if tracker is not None else None

    bar = _progress_bar("DP-SGD", hidden=as_json or quiet)
    with bar:
        task = bar.add_task("train", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = run_pipeline(
            cfg,
            run_dir=run_dir,
            baseline=baseline,
            audit_model=baseline,
            progress=progress,
            on_step=on_step,
            warn=warn,
        )
    if tracker is not None:
        # Per-step ε was logged during training; a resumed run logs its earlier curve here.
        track_run(result, tracker, epsilon_curve=bool(result.get("resumed")))
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"deniable: {result['run_dir']}")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    table.add_row(
        "privacy",
        f"ε = {result['epsilon']:.3f} at δ = {result['delta']:g} "
        f"({result['unit']}-level, {result['relation']}, {result['accountant']})",
    )
    if result.get("method", "dpsgd") == "dpsgd":
        table.add_row("noise multiplier σ", f"{result['noise_multiplier']:.4f}")
        table.add_row("steps × sample rate", f"{result['steps']} × {result['sample_rate']:.4f}")
        per_sample = result.get("per_sample")
        if isinstance(per_sample, dict) and per_sample.get("method"):
            layers = per_sample.get("layers") or {}
            choice = ", ".join(
                f"{kind}: {sum(v == kind for v in layers.values())}"
                for kind in sorted(set(layers.values()))
            )
            method = str(per_sample["method"])
            if per_sample.get("ghost"):  # book-keeping, two-pass, two-pass after out-of-memory
                method += f", {per_sample['ghost']}"
            label = method + (f" ({choice} parameters)" if choice else "")
            table.add_row("per-sample gradients", label)
    else:
        table.add_row("method", f"{result['method']} ({result['guarantee']})")
    table.add_row("test accuracy (private)", f"{result['test_accuracy']:.2%}")
    if result["baseline_accuracy"] is not None:
        table.add_row("test accuracy (non-private)", f"{result['baseline_accuracy']:.2%}")
    audit = result.get("audit")
    if isinstance(audit, dict) and "skipped" in audit:
        table.add_row("audit", str(audit["skipped"]))
    elif isinstance(audit, dict):
        private, plain = audit["private"], audit["non_private"]
        table.add_row(
            "audit: ε lower bound (DP-SGD)",
            f"{private['bound']['epsilon']:.3f} at {audit['confidence']:.0%} confidence "
            f"({private['canaries']} canaries, one run)",
        )
        if plain is not None:
            table.add_row(
                "audit: ε lower bound (no DP)", f"{plain['bound']['epsilon']:.3f} (same canaries)"
            )
        loss = audit["loss_attack_on_reported_model"]
        table.add_row("LOSS attack on the model: AUC", f"{loss['auc']:.3f}")
    if result.get("report"):
        table.add_row("report", str(result["report"]))
    console.print(table)
    comparison = result.get("comparison")
    if isinstance(comparison, dict):
        console.print(_comparison_table(comparison))


def _comparison_table(comparison: dict[str, object]) -> Table:
    """The methods side by side (see :mod:`deniable.comparison`)."""
    table = Table(
        title=f"methods at target ε = {comparison['target_epsilon']} "
        f"(accuracy on {comparison['evaluated_on']}, n = {comparison['evaluation_size']})",
        caption=str(comparison["note"]),
    )
    for column in ("method", "guarantee", "ε", "test accuracy", "train accuracy"):
        table.add_column(column, justify="left" if column in ("method", "guarantee") else "right")
    rows = comparison["rows"]
    assert isinstance(rows, list)
    for row in rows:
        table.add_row(
            str(row["method"]),
            str(row["guarantee"]),
            f"{row['epsilon']:.3f}",
            f"{row['test_accuracy']:.2%}",
            f"{row['train_accuracy']:.2%}",
        )
    return table


@app.command(name="run")
def run_cmd(
    config: ConfigOpt = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    model: ModelOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    learning_rate: LrOpt = None,
    max_grad_norm: ClipOpt = None,
    noise_multiplier: SigmaOpt = None,
    target_epsilon: TargetOpt = None,
    delta: TrainDeltaOpt = None,
    sampling: SamplingOpt = None,
    seed: SeedOpt = None,
    secure: SecureOpt = False,
    out: OutOpt = None,
    method: MethodOpt = None,
    compare: CompareOpt = None,
    audit: Annotated[
        bool | None, typer.Option("--audit/--no-audit", help="Run the canary audit (default on).")
    ] = None,
    track: TrackOpt = None,
    mlflow_uri: MlflowUriOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """The main job: train a private model and its non-private baseline, audit, write
    result.json."""
    cfg = _train_options(
        config, dataset, data_dir, model, epochs, batch_size, learning_rate, max_grad_norm,
        noise_multiplier, target_epsilon, delta, sampling, seed, secure, out, method, compare,
        track, mlflow_uri,
    )
    if audit is not None:
        cfg = cfg.model_copy(update={"audit": audit})
    _train_and_report(
        cfg,
        baseline=True,
        run_dir=None,
        as_json=as_json,
        quiet=quiet,
    )


@app.command()
def train(
    config: ConfigOpt = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    model: ModelOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    learning_rate: LrOpt = None,
    max_grad_norm: ClipOpt = None,
    noise_multiplier: SigmaOpt = None,
    target_epsilon: TargetOpt = None,
    delta: TrainDeltaOpt = None,
    sampling: SamplingOpt = None,
    seed: SeedOpt = None,
    secure: SecureOpt = False,
    out: OutOpt = None,
    method: MethodOpt = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue the run in this folder.")
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Start the run in this (empty) folder.")
    ] = None,
    track: TrackOpt = None,
    mlflow_uri: MlflowUriOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a private model only (no baseline); --resume continues a checkpointed run."""
    cfg = _train_options(
        config, dataset, data_dir, model, epochs, batch_size, learning_rate, max_grad_norm,
        noise_multiplier, target_epsilon, delta, sampling, seed, secure, out, method, None,
        track, mlflow_uri,
    )
    if resume is not None and run_dir is not None:
        raise DeniableError("give --resume (an existing run) or --run-dir (a new one), not both")
    if resume is not None and not (resume / "checkpoint.pt").exists():
        raise DeniableError(f"--resume {resume}: no checkpoint.pt there")
    if run_dir is not None:
        if (run_dir / "checkpoint.pt").exists():
            raise DeniableError(
                f"--run-dir {run_dir} already holds a run; continue it with --resume "
                "(starting over would forget the privacy it has spent)"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
    target = resume if resume is not None else run_dir
    _train_and_report(
        cfg,
        baseline=False,
        run_dir=target,
        as_json=as_json,
        quiet=quiet,
    )


@app.command(name="audit")
def audit_cmd(
    run_dir: Annotated[
        Path | None, typer.Argument(help="Folder of a finished run (runs/<id>).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Audit this training config instead (nothing released)."),
    ] = None,
    canaries: Annotated[
        int | None, typer.Option("--canaries", help="Canaries of the one-run audit.")
    ] = None,
    lira: Annotated[
        int, typer.Option("--lira", help="Also LiRA with this many shadows (a run folder).")
    ] = 0,
    workers: Annotated[
        int, typer.Option("--workers", help="Workers that train the LiRA shadows.")
    ] = 1,
    backend: Annotated[
        str,
        typer.Option(
            "--backend", help="Where --workers run: processes (this machine) or ray (Ray tasks)."
        ),
    ] = "processes",
    max_examples: Annotated[
        int, typer.Option("--max-examples", help="LiRA: members (and non-members) scored.")
    ] = 1000,
    canary_audit: Annotated[
        bool, typer.Option("--canary-audit/--no-canary-audit", help="The one-run canary audit.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """One-run canary ε lower bound and LOSS attack, of a finished run (updates its result.json)
    or of a config's training algorithm (--config); --lira N adds LiRA with N shadows."""
    from deniable.fleet import check_backend
    from deniable.pipeline import audit_config, audit_run

    shadow_backend = check_backend(backend, "--backend")
    if (run_dir is None) == (config is None):
        raise DeniableError("give a run folder or --config FILE (one of them)")
    if config is not None:
        if lira:
            raise DeniableError("--lira audits a trained model: give a run folder, not --config")
        audit = audit_config(load_config(config, {"audit_canaries": canaries}))
        claimed = audit["claimed_epsilon"]
        delta = audit["delta"]
    else:
        assert run_dir is not None
        if canaries is not None:
            raise DeniableError("--canaries goes with --config; a run is audited as configured")
        bar = _progress_bar("audit (training, shadows)", hidden=as_json)
        with bar:
            task = bar.add_task("shadows", total=None)
            result = audit_run(
                run_dir,
                canaries=canary_audit,
                lira_shadows=lira,
                workers=check_count("--workers", workers),
                backend=shadow_backend,
                max_examples=max_examples,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        audit = result["audit"]  # type: ignore[assignment]
        claimed, delta = result["epsilon"], result["delta"]
    if as_json:
        print(json.dumps(audit))
        return
    assert isinstance(audit, dict)
    if canary_audit or config is not None:
        line = (
            f"ε lower bound {audit['epsilon_lower_bound']:.3f} at {audit['confidence']:.0%} "
            f"confidence (claimed ε = {claimed:.3f} at δ = {delta:g})"
        )
        plain = audit.get("non_private")
        if isinstance(plain, dict):
            line += f"; without privacy the same audit finds {plain['bound']['epsilon']:.3f}"
        console.print(line)
    lira_block = audit.get("lira")
    if lira and isinstance(lira_block, dict):
        for name, metrics in lira_block["attacks"].items():
            console.print(
                f"{name}: AUC {metrics['auc']:.3f}, TPR {metrics['tpr_at_fpr_0.01']:.2%} at 1 % "
                f"FPR, {metrics['tpr_at_fpr_0.001']:.2%} at 0.1 % FPR "
                f"({lira_block['shadows']} shadows)"
            )


@app.command(name="recipes")
def recipes_cmd(
    name: Annotated[str | None, typer.Argument(help="A recipe; none lists them all.")] = None,
    run_it: Annotated[bool, typer.Option("--run", help="Run the recipe (else show it).")] = False,
    epsilon: Annotated[
        float | None, typer.Option("--epsilon", help="Target ε (default: the recipe's).")
    ] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Override the epochs.")] = None,
    data_dir: DataDirOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for runs/<id>/.")] = Path("runs"),
    as_json: JsonOpt = False,
) -> None:
    """Settings that reproduce published results, with the published and our measured accuracy."""
    from deniable.recipes import RECIPES, get_recipe, run_recipe

    if name is None:
        if as_json:
            print(json.dumps([r.describe() for r in RECIPES.values()]))
            return
        table = Table(title="deniable recipes (test accuracy by ε)")
        table.add_column("recipe", no_wrap=True)
        for column in ("data", "paper", "published", "measured here"):
            table.add_column(column)
        for r in RECIPES.values():
            described = r.describe()
            table.add_row(
                r.name, r.dataset, r.paper, _by_epsilon(described["published"]),
                _by_epsilon(described["measured"]),
            )  # fmt: skip
        console.print(table)
        return
    recipe = get_recipe(name)
    if not run_it:
        print(json.dumps(recipe.describe(), indent=None if as_json else 2))
        return
    result = run_recipe(name, epsilon=epsilon, epochs=epochs, data_dir=data_dir, out=out)
    if as_json:
        print(json.dumps(result, default=str))
        return
    console.print(
        f"{name}: test accuracy {result['test_accuracy']:.2%} at ε = {result['epsilon']:.3f} "
        f"(δ = {result['delta']:g}); result in {result['run_dir']}"
    )


def _by_epsilon(values: object) -> str:
    assert isinstance(values, dict)
    return ", ".join(f"ε={k}: {v:.2%}" for k, v in values.items()) or "—"


@app.command(name="evaluate")
def evaluate_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Folder of a finished run (runs/<id>).")],
    group_column: Annotated[
        str | None, typer.Option("--group", help="Group column for fairness (default: all).")
    ] = None,
    radii: Annotated[
        str, typer.Option("--radii", help="L2 radii for certified accuracy (comma list).")
    ] = "0.1,0.3,0.5",
    sigma: Annotated[
        float, typer.Option("--sigma", help="Randomized smoothing noise σ.")
    ] = 0.25,
    attacks: Annotated[
        bool, typer.Option("--attacks/--no-attacks", help="FGSM/PGD robustness.")
    ] = True,
    certify: Annotated[
        bool, typer.Option("--certify/--no-certify", help="Certified accuracy by smoothing.")
    ] = True,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Beyond privacy, for a finished run: fairness per group, generalisation, robustness
    (FGSM/PGD) and certified accuracy; written into result.json and the report."""
    from deniable.evaluate import evaluate_run
    from deniable.report import report_command

    evaluation = evaluate_run(
        run_dir,
        group_column=group_column,
        radii=_list("--radii", radii, float),
        sigma=sigma,
        attacks=attacks,
        certify=certify,
        data_dir=data_dir,
    )
    report = report_command(run_dir)
    if as_json:
        print(json.dumps(evaluation))
        return
    table = Table(title=f"beyond privacy: {run_dir}")
    table.add_column("")
    table.add_column("value", justify="right")
    general = evaluation.get("generalisation")
    if isinstance(general, dict):
        table.add_row("train − test accuracy gap", f"{general['accuracy_gap']:.3f}")
        attack = general["membership_attack"]
        table.add_row("threshold attack: membership advantage", f"{attack['advantage']:.3f}")
    robust = evaluation.get("robustness")
    if isinstance(robust, dict):
        budget = f"L∞ ≤ {robust['epsilon']:g}"
        table.add_row("accuracy: clean", f"{robust['clean_accuracy']:.2%}")
        table.add_row(f"accuracy under FGSM ({budget})", f"{robust['fgsm_accuracy']:.2%}")
        table.add_row(f"accuracy under PGD ({budget})", f"{robust['pgd_accuracy']:.2%}")
    certified = evaluation.get("certified")
    if isinstance(certified, dict):
        for radius, value in certified["certified_accuracy"].items():
            label = f"certified accuracy, L2 radius {radius} (σ = {certified['sigma']:g})"
            table.add_row(label, f"{value:.2%}")
    console.print(table)
    console.print(f"written to {run_dir / 'result.json'}; report: {report}")


@app.command(name="report")
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Folder of a finished run (runs/<id>).")],
) -> None:
    """Render runs/<id>/report.html from its result.json."""
    from deniable.report import report_command

    print(report_command(run_dir))


@app.command(name="secrets")
def secrets_cmd(
    text: Annotated[Path, typer.Option("--text", help="Training text (UTF-8 file).")],
    template: Annotated[
        str, typer.Option("--template", help="Canary with one blank of '_', e.g. 'my pin is ____'.")
    ] = "my pin is ____",
    secret: Annotated[
        str | None, typer.Option("--secret", help="The filled secret (default: random).")
    ] = None,
    repeats: Annotated[
        str, typer.Option("--repeats", help="Insertions r of the secret; a comma list for a grid.")
    ] = "4",
    noise_multiplier: Annotated[
        str, typer.Option("--noise-multiplier", help="σ (0: no privacy); a comma list for a grid.")
    ] = "1.0",
    unit: Annotated[
        str, typer.Option("--unit", help="example, user (all r one unit), or both: example,user.")
    ] = "example",
    model: Annotated[str, typer.Option("--model", help="lstm or transformer.")] = "transformer",
    steps: Annotated[int, typer.Option("--steps", help="Training steps.")] = 300,
    max_chars: Annotated[
        int | None, typer.Option("--max-chars", help="Use only the first N characters.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed (canary choice, data, noise).")] = 0,
    out: Annotated[Path, typer.Option("--out", help="Folder for runs/<id>/.")] = Path("runs"),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Secret sharer (Carlini et al. 2019): insert a secret r times, train, measure its exposure
    and try to extract it; a grid of r, σ and units writes its table and plots to runs/<id>/."""
    from deniable.pipeline import new_run_dir
    from deniable.text.canary import CanaryFormat
    from deniable.text.chars import read_text
    from deniable.text.experiments import SecretSharerSetup
    from deniable.text.run import secret_sharer_run

    units = _list("--unit", unit, str)
    if any(u not in ("example", "user") for u in units):
        raise InvalidParameterError("--unit", unit, "example, user or example,user")
    counts = _list("--repeats", repeats, int)
    sigmas = _list("--noise-multiplier", noise_multiplier, float)
    fmt = CanaryFormat(template)
    setup = SecretSharerSetup(
        text=read_text(text, max_chars=max_chars),
        canary=fmt,
        secret=secret if secret is not None else fmt.random_secret(seed),
        model=model,
        steps=steps,
        seed=seed,
    )

    def show(row: SecretSharerRow) -> None:
        if as_json or quiet:
            return
        eps = "∞ (no DP)" if row.epsilon is None else f"{row.epsilon:.3f} at δ = {row.delta:g}"
        console.print(
            f"r = {row.repeats}, σ = {row.noise_multiplier:g} ({row.unit}): exposure "
            f"{row.exposure:.2f} of {row.max_exposure:.2f} bits (rank {row.rank:g}); extracted: "
            f"greedy {row.greedy_extracted}, beam {row.beam_extracted}; ε = {eps}"
        )

    document = secret_sharer_run(
        setup, new_run_dir(out), repeats=counts, noise_multipliers=sigmas, units=units,
        progress=show,
    )  # fmt: skip
    if as_json:
        print(json.dumps(document))
    elif not quiet:
        console.print(f"table and plots in {document['run_dir']}")


def _list(flag: str, text: str, kind: type[T]) -> list[T]:
    """A comma-separated flag value as a list of ``kind``; one-line error otherwise."""
    try:
        values = [kind(part.strip()) for part in text.split(",") if part.strip()]  # type: ignore[call-arg]
    except ValueError:
        raise InvalidParameterError(flag, text, f"a comma list of {kind.__name__}") from None
    if not values:
        raise InvalidParameterError(flag, text, "at least one value")
    return values


@app.command()
def demo(as_json: JsonOpt = False) -> None:
    """Plan a DP-SGD run on an MNIST-sized dataset: σ for each target ε, by every accountant."""
    from deniable.demo import accounting_demo

    accounting_demo(console, as_json=as_json)


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


_register_subcommands()


def _defaults(args: list[str]) -> tuple[list[str], dict[str, object] | None]:
    """``deniable --defaults FILE COMMAND ...``: a TOML file with one table per command (``[run]``,
    ``[secrets]``, ``[ledger.create]``, ...) whose keys are that command's options (``--max-chars``
    is ``max_chars``) gives their defaults; flags on the command line still win. So every flag of
    every command has a config key. Unknown tables or keys are one-line errors."""
    if not args or args[0] != "--defaults":
        return args, None
    if len(args) < 2:
        raise DeniableError("--defaults needs a TOML file")
    path = Path(args[1])
    if not path.exists():
        raise DeniableError(f"defaults file {path} does not exist")
    try:
        table = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise DeniableError(f"defaults file {path} is not valid TOML: {exc}") from None
    _check_defaults(typer.main.get_command(app), table, "")
    return args[2:], table


def _check_defaults(command: object, table: dict[str, object], where: str) -> None:
    """Every table names a command and every key one of its options."""
    subcommands = getattr(command, "commands", None)
    if isinstance(subcommands, dict):
        for name, value in table.items():
            if name not in subcommands or not isinstance(value, dict):
                known = ", ".join(sorted(subcommands))
                raise DeniableError(f"defaults: [{where}{name}] is not a command ({known})")
            _check_defaults(subcommands[name], value, f"{where}{name}.")
        return
    options = {p.name for p in getattr(command, "params", [])}
    for key in table:
        if key not in options:
            raise DeniableError(
                f"defaults: [{where.rstrip('.')}] has no option {key!r} "
                f"(options: {', '.join(sorted(o for o in options if o))})"
            )


def _usage_errors() -> tuple[type[Exception], ...]:
    """The exception type of command-line usage errors: typer's own since it vendors click
    (≥ 0.22), click's before (Flower, the ``fl`` extra, pins typer < 0.21)."""
    own = getattr(typer, "TyperException", None)
    if isinstance(own, type) and issubclass(own, Exception):
        return (own,)
    import click

    return (click.ClickException,)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; user errors become one line on stderr and exit code 2."""
    allocator.tune_for_command_line()  # freed memory reused, not page-faulted in every step
    args = sys.argv[1:] if argv is None else argv
    try:
        args, defaults = _defaults(list(args))
        app(args=args or ["--help"], standalone_mode=False, default_map=defaults)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        sys.exit(130)
    except _usage_errors() as exc:
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except DeniableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
