"""Secret-sharer experiments: exposure against the number of insertions and the noise.

One run (:func:`run_secret_sharer`) builds char windows from a text, inserts a secret canary r
times (:mod:`deniable.text.canary`), trains a char model — non-privately when the noise
multiplier σ is 0, else with DP-SGD through :func:`~deniable.train.private.make_private` — and
measures the secret's exposure and whether greedy decoding or beam search extracts it
(:mod:`deniable.text.secret_sharer`). ε is computed by the accountant from the steps actually
taken (PLD, Poisson sampling, add/remove-one of a privacy unit) and names its δ.

The privacy unit decides what ε protects: with ``unit="example"`` every insertion is its own
unit, so ε covers one insertion and r insertions only through group privacy (a weaker
guarantee, r·ε for pure DP); with ``unit="user"`` the r insertions share one key, are sampled
together and clipped together, so ε covers all of them jointly. Non-private runs (σ = 0) have
no unit: their rows say ``unit="none"`` and ``epsilon=None`` (ε = ∞). Runs are seeded for
reproducibility (model initialisation, sampling and noise from ``setup.seed``), so they are
experiments, not the secure mode of :func:`~deniable.train.private.make_private`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deniable.errors import DeniableError, InvalidParameterError, check_count, check_positive
from deniable.text.canary import PRIVACY_UNITS, CanaryFormat, canary_windows, insert_windows
from deniable.text.chars import CharWindows, Vocabulary, split_by_position, windows
from deniable.text.models import CHAR_MODELS, build_char_model, sequence_loss
from deniable.text.secret_sharer import beam_extract, greedy_extract, measure_exposure
from deniable.train.private import make_private

NON_PRIVATE = "none"


@dataclass(frozen=True)
class SecretSharerSetup:
    """The fixed part of a secret-sharer experiment (everything but r, σ and the unit)."""

    text: str
    canary: CanaryFormat
    secret: str
    model: str = "lstm"
    context: int = 32
    width: int = 64
    layers: int = 1
    steps: int = 300
    batch_size: int = 64
    learning_rate: float = 3e-3
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    test_fraction: float = 0.1
    exact_limit: int = 100_000
    samples: int = 10_000
    beam_width: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        self.canary.check_secret(self.secret)
        if self.model not in CHAR_MODELS:
            raise InvalidParameterError("model", self.model, f"one of {', '.join(CHAR_MODELS)}")
        if self.context < self.canary.length:
            raise InvalidParameterError(
                "context", self.context, f">= the canary length ({self.canary.length})"
            )
        check_count("steps", self.steps)
        check_count("batch_size", self.batch_size)
        check_positive("learning_rate", self.learning_rate)
        check_positive("max_grad_norm", self.max_grad_norm)


@dataclass(frozen=True)
class SecretSharerRow:
    """One run's result. ``epsilon`` (with its ``delta``, ``accountant`` and neighbouring
    ``relation``, for one privacy unit) is None for non-private runs (σ = 0)."""

    model: str
    repeats: int
    noise_multiplier: float
    unit: str
    epsilon: float | None
    delta: float
    accountant: str | None
    relation: str | None
    exposure: float
    max_exposure: float
    rank: float
    exposure_method: str
    greedy_extracted: bool
    beam_extracted: bool
    beam_rank: int | None
    test_bits_per_char: float
    train_windows: int
    privacy_units: int
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class ExposureTable:
    """Rows of an experiment, and the plot written for it (if any)."""

    rows: tuple[SecretSharerRow, ...]
    plot: Path | None = field(default=None)

    def to_dicts(self) -> list[dict[str, object]]:
        return [row.to_dict() for row in self.rows]


@dataclass(frozen=True)
class _Data:
    vocab: Vocabulary
    train_ids: np.ndarray
    train: CharWindows
    test: CharWindows


def _prepare(setup: SecretSharerSetup) -> _Data:
    fmt = setup.canary
    vocab = Vocabulary.from_text(setup.text, fmt.prefix + fmt.suffix, fmt.alphabet)
    train_ids, test_ids = split_by_position(vocab.encode(setup.text), setup.test_fraction)
    return _Data(
        vocab, train_ids, windows(train_ids, setup.context), windows(test_ids, setup.context)
    )


def run_secret_sharer(
    setup: SecretSharerSetup, *, repeats: int, noise_multiplier: float, unit: str = "example"
) -> SecretSharerRow:
    """Insert the secret ``repeats`` times (0: not at all), train, measure (module doc)."""
    return _run(setup, _prepare(setup), repeats, noise_multiplier, unit)


def _run(
    setup: SecretSharerSetup, data: _Data, repeats: int, sigma: float, unit: str
) -> SecretSharerRow:
    check_count("repeats", repeats, 0)
    if not math.isfinite(sigma) or sigma < 0:
        raise InvalidParameterError("noise_multiplier", sigma, "a finite number >= 0")
    if sigma > 0 and unit not in PRIVACY_UNITS:
        raise InvalidParameterError("unit", unit, f"one of {', '.join(PRIVACY_UNITS)}")
    train = data.train
    if repeats:
        extra = canary_windows(
            setup.canary,
            setup.secret,
            data.vocab,
            data.train_ids,
            repeats=repeats,
            context=setup.context,
            seed=setup.seed + 1,
        )
        train = insert_windows(train, extra, unit="user" if unit == "user" else "example")
    torch.manual_seed(setup.seed)
    model = build_char_model(
        setup.model, data.vocab.size, setup.context, width=setup.width, layers=setup.layers
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.learning_rate)
    start = time.perf_counter()
    epsilon: float | None = None
    accountant: str | None = None
    relation: str | None = None
    units = len(train)
    if sigma == 0:
        _train_non_private(model, optimizer, train, setup)
        unit = NON_PRIVATE
    else:
        keys = train.keys if unit == "user" else None
        units = len(np.unique(keys)) if keys is not None else len(train)
        private = make_private(
            model,
            optimizer,
            sequence_loss,
            train.inputs,
            train.targets,
            batch_size=setup.batch_size,
            max_grad_norm=setup.max_grad_norm,
            noise_multiplier=sigma,
            keys=keys,
            seed=setup.seed,
        )
        for batch in private.batches(steps=setup.steps):
            private.step(batch)
        spent = private.epsilon(setup.delta)
        epsilon, accountant, relation = spent.epsilon, spent.accountant, spent.relation.value
    seconds = time.perf_counter() - start
    exposure = measure_exposure(
        model,
        data.vocab,
        setup.canary,
        setup.secret,
        exact_limit=setup.exact_limit,
        samples=setup.samples,
        seed=setup.seed,
    )
    greedy = greedy_extract(model, data.vocab, setup.canary, setup.secret)
    beam = beam_extract(model, data.vocab, setup.canary, setup.secret, beam_width=setup.beam_width)
    return SecretSharerRow(
        model=setup.model,
        repeats=repeats,
        noise_multiplier=float(sigma),
        unit=unit,
        epsilon=epsilon,
        delta=setup.delta,
        accountant=accountant,
        relation=relation,
        exposure=exposure.exposure,
        max_exposure=exposure.max_exposure,
        rank=exposure.rank,
        exposure_method=exposure.method,
        greedy_extracted=greedy.found,
        beam_extracted=beam.found,
        beam_rank=beam.rank,
        test_bits_per_char=bits_per_char(model, data.test),
        train_windows=len(train),
        privacy_units=units,
        seconds=seconds,
    )


def _train_non_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: CharWindows,
    setup: SecretSharerSetup,
) -> None:
    """Ordinary minibatch training: the same steps, batch size and optimizer, no clipping or
    noise; batches drawn uniformly with replacement (seeded)."""
    generator = torch.Generator().manual_seed(setup.seed)
    model.train()
    for _ in range(setup.steps):
        index = torch.randint(len(train), (setup.batch_size,), generator=generator)
        loss = sequence_loss(model(train.inputs[index]), train.targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def bits_per_char(model: nn.Module, data: CharWindows, batch_size: int = 512) -> float:
    """Mean next-character cross-entropy over every position of ``data``, in bits."""
    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for x, y in zip(data.inputs.split(batch_size), data.targets.split(batch_size), strict=True):
            total += float(sequence_loss(model(x), y)) * x.shape[0]
    model.train(was_training)
    return total / len(data) / math.log(2)


def exposure_grid(
    setup: SecretSharerSetup,
    *,
    repeats: Sequence[int],
    noise_multipliers: Sequence[float],
    units: Sequence[str] = PRIVACY_UNITS,
    progress: Callable[[SecretSharerRow], None] | None = None,
) -> ExposureTable:
    """Every (r, σ, unit) combination; σ = 0 is run once per r (it has no unit).
    ``progress`` is called with each row as soon as it is done."""
    if not repeats or not noise_multipliers or not units:
        raise DeniableError("give at least one value each of repeats, noise_multipliers, units")
    data = _prepare(setup)
    rows = []
    for r in repeats:
        for sigma in noise_multipliers:
            for unit in units if sigma > 0 else units[:1]:
                rows.append(_run(setup, data, r, sigma, unit))
                if progress is not None:
                    progress(rows[-1])
    return ExposureTable(tuple(rows))


def exposure_vs_insertions(
    setup: SecretSharerSetup,
    *,
    repeats: Sequence[int] = (0, 1, 4, 16),
    noise_multiplier: float = 1.0,
    units: Sequence[str] = PRIVACY_UNITS,
    plot_dir: str | Path | None = None,
) -> ExposureTable:
    """Exposure for each number of insertions r at one σ, per privacy unit; with ``plot_dir``,
    also writes ``exposure_vs_insertions.png`` there."""
    table = exposure_grid(setup, repeats=repeats, noise_multipliers=[noise_multiplier], units=units)
    if plot_dir is None:
        return table
    return replace(table, plot=plot_exposure(table, plot_dir, x="repeats"))


def exposure_vs_sigma(
    setup: SecretSharerSetup,
    *,
    noise_multipliers: Sequence[float] = (0.0, 0.5, 1.0, 2.0),
    repeats: int = 16,
    units: Sequence[str] = PRIVACY_UNITS,
    plot_dir: str | Path | None = None,
) -> ExposureTable:
    """Exposure for each noise multiplier σ (0 = non-private) at r insertions, per privacy
    unit; with ``plot_dir``, also writes ``exposure_vs_sigma.png`` there."""
    table = exposure_grid(
        setup, repeats=[repeats], noise_multipliers=noise_multipliers, units=units
    )
    if plot_dir is None:
        return table
    return replace(table, plot=plot_exposure(table, plot_dir, x="noise_multiplier"))


def plot_exposure(
    table: ExposureTable, directory: str | Path, *, x: str, name: str | None = None
) -> Path:
    """Exposure against ``x`` ("repeats" or "noise_multiplier"), one line per privacy unit,
    non-private runs as stars, the maximum log₂|R| dashed; a PNG in ``directory`` (Agg), called
    ``name`` (default ``exposure_vs_insertions.png`` or ``exposure_vs_sigma.png``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = {"repeats": "insertions r", "noise_multiplier": "noise multiplier σ"}
    if x not in labels:
        raise InvalidParameterError("x", x, "'repeats' or 'noise_multiplier'")
    if not table.rows:
        raise DeniableError("nothing to plot: the table has no rows")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(5.0, 3.6))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for unit in dict.fromkeys(row.unit for row in table.rows):
        rows = sorted((r for r in table.rows if r.unit == unit), key=lambda r: getattr(r, x))
        xs = [getattr(r, x) for r in rows]
        ys = [r.exposure for r in rows]
        if unit == NON_PRIVATE:
            axes.plot(xs, ys, "k*", markersize=10, label="non-private")
        else:
            axes.plot(xs, ys, "o-", label=f"DP, {unit}-level")
    axes.axhline(table.rows[0].max_exposure, color="grey", linestyle="--", label="log₂|R|")
    axes.set_xlabel(labels[x])
    axes.set_ylabel("exposure (bits)")
    axes.set_ylim(bottom=0)
    axes.legend(fontsize="small")
    figure.tight_layout()
    path = out / (name or f"exposure_vs_{'insertions' if x == 'repeats' else 'sigma'}.png")
    figure.savefig(path, dpi=120)
    return path
