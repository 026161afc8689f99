"""Shadow models for membership inference: many small models, each on a known random half.

The *models* stage of the audit pipeline (models → signals → scores → metrics). Shadow ``s``
trains on the population examples where ``membership[s]`` is True, a Bernoulli(1/2) draw per
(shadow, example) (or, with ``balanced=True``, exactly ⌊S/2⌋ shadows per example as in the LiRA
code of Carlini et al. 2022). LiRA and RMIA (:mod:`deniable.audit.mia`) read the shadows'
signals together with that matrix.

Non-private shadows are trained all at once: their parameters are stacked along a model axis
(``torch.func.stack_module_state``) and one forward pass ``vmap(functional_call)`` serves every
shadow. Each epoch, shadow ``s`` shuffles its own members and splits them into the same number
of steps ``K = ceil(max_s |members_s| / batch_size)`` (``numpy.array_split``: sizes differ by at
most one, none above ``batch_size``); a step pads the shadows' batches to one width with
zero-weight rows, so each shadow's loss is the mean over its own real rows. The optimizer (SGD
with momentum or Adam, both elementwise) updates each shadow's slice exactly as if it were
trained alone; ``vectorise=False`` trains them one after another on the same plan, which the
tests use as the reference.

DP shadows (``ShadowConfig.dp``) mimic a DP-SGD target: each is trained with
:func:`~deniable.train.private.make_private` (Poisson sampling, clipping, noise) in a loop.

Caching: with ``cache_dir``, trained shadows are saved to ``shadows-<key>.pt`` where the key
hashes the configuration and a fingerprint of the population's arrays; a second call with the
same inputs loads them (``torch.load(weights_only=True)``) instead of training.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from deniable import __version__
from deniable.audit.signals import (
    DEFAULT_BATCH_SIZE,
    Augmentation,
    Signals,
    identity,
    signals_from_logits,
)
from deniable.config import TrainConfig
from deniable.data.dataset import ArrayDataset
from deniable.errors import DeniableError, InvalidParameterError, check_count, check_positive
from deniable.fleet import Backend, check_backend, items_done, run_shares
from deniable.models import build_model
from deniable.train.private import make_private

Progress = Callable[[int, int], None]
"""Called as ``progress(steps_done, steps_total)`` after every training step."""

CACHE_FORMAT = 1


@dataclass(frozen=True)
class ShadowDP:
    """Train shadows with DP-SGD: Poisson-sampled batches of expected size ``batch_size``, each
    example's gradient clipped to ``max_grad_norm``, Gaussian noise ``noise_multiplier · C``."""

    noise_multiplier: float
    max_grad_norm: float

    def __post_init__(self) -> None:
        check_positive("noise_multiplier", self.noise_multiplier)
        check_positive("max_grad_norm", self.max_grad_norm)


@dataclass(frozen=True)
class ShadowConfig:
    """How to train a shadow set. ``model`` is a :func:`~deniable.models.build_model` name.

    ``epochs`` passes over each shadow's members with batches of ``batch_size`` (the expected
    batch size under DP), ``optimizer`` ``"sgd"`` (with ``momentum``) or ``"adam"``; ``seed``
    fixes membership, initialisation and batch order; ``dp`` trains DP-SGD shadows instead.
    """

    model: str = "mlp"
    n_shadows: int = 16
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 0.1
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.9
    seed: int = 0
    balanced: bool = False
    dp: ShadowDP | None = None

    def __post_init__(self) -> None:
        check_count("n_shadows", self.n_shadows, 2)
        check_count("epochs", self.epochs)
        check_count("batch_size", self.batch_size)
        check_positive("learning_rate", self.learning_rate)
        if self.optimizer not in ("sgd", "adam"):
            raise InvalidParameterError("optimizer", self.optimizer, "'sgd' or 'adam'")
        if not 0 <= self.momentum < 1:
            raise InvalidParameterError("momentum", self.momentum, "in [0, 1)")
        check_count("seed", self.seed, 0)

    @classmethod
    def from_train_config(
        cls,
        config: TrainConfig,
        *,
        n_shadows: int,
        noise_multiplier: float | None = None,
        batch_size: int | None = None,
    ) -> ShadowConfig:
        """Shadows trained like the target of ``config``: DP-SGD with the target's clipping norm
        and ``noise_multiplier`` (pass the σ the target actually used), or, with
        ``noise_multiplier=None``, like its non-private baseline. ``batch_size`` defaults to the
        target's; halve it to keep the target's sample rate when shadows see half the data."""
        dp = None if noise_multiplier is None else ShadowDP(noise_multiplier, config.max_grad_norm)
        private = dp is not None
        epochs = config.epochs if private else (config.baseline_epochs or config.epochs)
        return cls(
            model=config.model,
            n_shadows=n_shadows,
            epochs=math.ceil(epochs),
            batch_size=batch_size or config.batch_size,
            learning_rate=config.learning_rate if private else config.baseline_learning_rate,
            optimizer=config.optimizer,
            momentum=config.momentum,
            seed=config.seed or 0,
            dp=dp,
        )


@dataclass(frozen=True, eq=False)
class ShadowSet:
    """Trained shadows: parameters stacked on a leading model axis, and who trained on what.

    ``membership``: bool ``(n_shadows, n_population)``; ``params``/``buffers``: the models'
    state, each tensor ``(n_shadows, ...)``; ``from_cache``: loaded rather than trained.
    """

    config: ShadowConfig
    membership: NDArray[np.bool_]
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    feature_shape: tuple[int, ...]
    num_classes: int
    from_cache: bool = False
    _base: nn.Module = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_base", self.model(0).to("meta"))

    @property
    def n_shadows(self) -> int:
        return int(self.membership.shape[0])

    def model(self, index: int) -> nn.Module:
        """Shadow ``index`` as an ordinary module (a copy of its weights)."""
        if not 0 <= index < self.n_shadows:
            raise InvalidParameterError("index", index, f"in [0, {self.n_shadows})")
        model = build_model(self.config.model, self.feature_shape, self.num_classes)
        state = {k: v[index] for k, v in {**self.params, **self.buffers}.items()}
        model.load_state_dict(state)
        return model

    def logits(
        self,
        inputs: torch.Tensor | ArrayLike,
        *,
        augmentations: Sequence[Augmentation] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> torch.Tensor:
        """Every shadow's logits on every query of every input: ``(n_shadows, n, n_queries, C)``
        (one vectorised forward pass per batch; eval mode, no gradients)."""
        x = torch.as_tensor(np.asarray(inputs) if not torch.is_tensor(inputs) else inputs)
        # Standard strides: a one-channel image batch from NumPy can be both contiguous and
        # channels-last, and GroupNorm under vmap cannot ask which (torch raises "NYI: querying
        # is_contiguous inside of vmap"); a copy with row-major strides is unambiguous.
        x = x.to(torch.float32, memory_format=torch.contiguous_format)
        queries = [identity] if augmentations is None else list(augmentations)
        if not queries:
            raise DeniableError("augmentations is empty; pass None for the single identity query")
        check_count("batch_size", batch_size)
        base = self._base.eval()

        def forward(
            p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor
        ) -> torch.Tensor:
            return functional_call(base, (p, b), (xb,))

        batched = vmap(forward, in_dims=(0, 0, None))
        chunks = []
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                batch = x[start : start + batch_size]
                outs = [batched(self.params, self.buffers, q(batch)) for q in queries]
                chunks.append(torch.stack(outs, dim=2))
        return torch.cat(chunks, dim=1)

    def signals(
        self,
        inputs: torch.Tensor | ArrayLike,
        labels: torch.Tensor | ArrayLike,
        *,
        augmentations: Sequence[Augmentation] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Signals:
        """:class:`~deniable.audit.signals.Signals` of every shadow, shapes
        ``(n_shadows, n, n_queries[, C])``; feed ``scaled_confidence`` to LiRA."""
        y = np.asarray(labels.numpy() if torch.is_tensor(labels) else labels, dtype=np.int64)
        logits = self.logits(inputs, augmentations=augmentations, batch_size=batch_size)
        return signals_from_logits(logits, y)


def train_shadows(
    population: ArrayDataset,
    config: ShadowConfig,
    *,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    vectorise: bool = True,
    workers: int = 1,
    backend: Backend = "processes",
) -> ShadowSet:
    """Train ``config.n_shadows`` shadows on random halves of ``population`` (or load them).

    ``vectorise=False`` trains non-private shadows one at a time with the same initialisation
    and batches (slower; the same weights up to float rounding). DP shadows always train one at
    a time. ``workers > 1`` splits the shadows into that many shares, each trained by one worker
    with one torch thread: a spawned process (``backend="processes"``) or a Ray task
    (``backend="ray"``, :mod:`deniable.fleet`; ``pip install 'deniable[ray]'``). Every shadow's
    membership, initialisation, batches and noise depend only on its index, so the result is the
    one-process result (DP and loop shadows exactly; vectorised ones up to float rounding), and
    the two backends give the same bits. With workers, ``progress`` counts finished shadows, not
    steps. ``workers=1`` trains here, whatever the backend.
    """
    check_count("workers", workers)
    check_backend(backend)
    if len(population) < 2:
        raise DeniableError(
            f"the shadow population needs at least 2 examples, got {len(population)}"
        )
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"shadows-{cache_key(population, config)}.pt"
        cached = _load(path, population, config)
        if cached is not None:
            return cached
    membership = draw_membership(config, len(population))
    everyone = list(range(config.n_shadows))
    if workers > 1:
        states = _train_in_workers(
            population, config, membership, vectorise, workers, backend, progress
        )
        models = [_init_model(config, population, s) for s in everyone]
        for model, state in zip(models, states, strict=True):
            model.load_state_dict(state)
    else:
        models = _train_subset(population, config, membership, everyone, vectorise, progress)
    params, buffers = _stack(models)
    shadows = ShadowSet(
        config=config,
        membership=membership,
        params={k: v.detach().clone() for k, v in params.items()},
        buffers={k: v.detach().clone() for k, v in buffers.items()},
        feature_shape=population.feature_shape,
        num_classes=population.num_classes,
    )
    if path is not None:
        _save(path, shadows)
    return shadows


def draw_membership(config: ShadowConfig, n_population: int) -> NDArray[np.bool_]:
    """The seeded ``(n_shadows, n_population)`` membership matrix of ``config``."""
    rng = np.random.default_rng([config.seed, 0])
    draws = rng.random((config.n_shadows, n_population))
    if not config.balanced:
        return np.asarray(draws < 0.5)
    ranks = draws.argsort(axis=0).argsort(axis=0)
    return np.asarray(ranks < config.n_shadows // 2)


def shadow_seed(config: ShadowConfig, index: int) -> int:
    """The torch seed that initialises shadow ``index`` (and seeds its DP sampler and noise)."""
    return int(np.random.SeedSequence([config.seed, 1, index]).generate_state(1)[0])


def epoch_batches(
    members: NDArray[np.int64], rng: np.random.Generator, steps: int
) -> list[NDArray[np.int64]]:
    """One epoch of a shadow: its members shuffled by ``rng`` and split into ``steps`` batches."""
    return [np.asarray(b, dtype=np.int64) for b in np.array_split(rng.permutation(members), steps)]


def data_fingerprint(data: ArrayDataset) -> str:
    """SHA-256 of a dataset's features, labels, keys and class count (not its name)."""
    digest = hashlib.sha256()
    for arr in (data.features, data.labels, data.keys):
        if arr is None:
            digest.update(b"none")
            continue
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    digest.update(str(data.num_classes).encode())
    return digest.hexdigest()


def cache_key(population: ArrayDataset, config: ShadowConfig) -> str:
    """The cache key: a hash of the configuration, the cache format, the package version (model
    definitions may change between versions) and the data fingerprint."""
    text = json.dumps(
        {"format": CACHE_FORMAT, "version": __version__, "config": asdict(config)}, sort_keys=True
    )
    digest = hashlib.sha256(text.encode())
    digest.update(data_fingerprint(population).encode())
    return digest.hexdigest()[:24]


def _init_model(config: ShadowConfig, population: ArrayDataset, index: int) -> nn.Module:
    torch.manual_seed(shadow_seed(config, index))
    return build_model(config.model, population.feature_shape, population.num_classes)


def _optimizer(params: Sequence[torch.Tensor], config: ShadowConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate)
    return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum)


def _plan(
    config: ShadowConfig, membership: NDArray[np.bool_]
) -> tuple[list[NDArray[np.int64]], int]:
    members = [np.flatnonzero(row).astype(np.int64) for row in membership]
    empty = [s for s, m in enumerate(members) if m.size == 0]
    if empty:
        raise DeniableError(f"shadow {empty[0]} drew no members; use a larger population")
    steps = math.ceil(max(m.size for m in members) / config.batch_size)
    return members, steps


def _batch_rngs(config: ShadowConfig) -> list[np.random.Generator]:
    return [np.random.default_rng([config.seed, 2, s]) for s in range(config.n_shadows)]


def _train_subset(
    population: ArrayDataset,
    config: ShadowConfig,
    membership: NDArray[np.bool_],
    indices: Sequence[int],
    vectorise: bool,
    progress: Progress | None = None,
) -> list[nn.Module]:
    """Train the shadows numbered ``indices``, each exactly as it trains among all of them: its
    own seed, members and batch generator, and the number of steps per epoch of the whole set."""
    models = [_init_model(config, population, s) for s in indices]
    all_members, steps = _plan(config, membership)
    members = [all_members[s] for s in indices]
    if config.dp is not None:
        _train_private(models, population, members, indices, config, config.dp, progress)
        return models
    rngs = [_batch_rngs(config)[s] for s in indices]
    x, y = population.to_tensors()
    if vectorise:
        return _train_vectorised(models, x, y, members, rngs, steps, config, progress)
    _train_loop(models, x, y, members, rngs, steps, config, progress)
    return models


def _worker_states(
    population: ArrayDataset,
    config: ShadowConfig,
    membership: NDArray[np.bool_],
    vectorise: bool,
    indices: list[int],
) -> list[dict[str, torch.Tensor]]:
    """One worker's share (one torch thread: the workers share the cores)."""
    torch.set_num_threads(1)
    models = _train_subset(population, config, membership, indices, vectorise)
    return [model.state_dict() for model in models]


def _train_in_workers(
    population: ArrayDataset,
    config: ShadowConfig,
    membership: NDArray[np.bool_],
    vectorise: bool,
    workers: int,
    backend: Backend,
    progress: Progress | None,
) -> list[dict[str, torch.Tensor]]:
    """Shadows split into ``workers`` contiguous shares, each trained by one worker."""
    count = config.n_shadows
    shares = [
        list(map(int, part)) for part in np.array_split(np.arange(count), workers) if part.size
    ]
    task = partial(_worker_states, population, config, membership, vectorise)
    results = run_shares(task, shares, backend=backend, done=items_done(shares, progress))
    return [state for states in results for state in states]


def _train_vectorised(
    models: list[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    members: list[NDArray[np.int64]],
    rngs: list[np.random.Generator],
    steps: int,
    config: ShadowConfig,
    progress: Progress | None,
) -> list[nn.Module]:
    params, buffers = _stack(models)
    base = copy.deepcopy(models[0]).to("meta")

    def forward(
        p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor
    ) -> torch.Tensor:
        return functional_call(base, (p, b), (xb,))

    batched = vmap(forward)
    optimizer = _optimizer(list(params.values()), config)
    count, total = len(models), config.epochs * steps
    done = 0
    for _ in range(config.epochs):
        plans = [epoch_batches(m, rng, steps) for m, rng in zip(members, rngs, strict=True)]
        for k in range(steps):
            chunks = [plan[k] for plan in plans]
            width = max(1, max(c.size for c in chunks))
            index = np.zeros((count, width), dtype=np.int64)
            weight = np.zeros((count, width), dtype=np.float32)
            for s, chunk in enumerate(chunks):
                index[s, : chunk.size] = chunk
                weight[s, : chunk.size] = 1.0
            idx = torch.from_numpy(index)
            w = torch.from_numpy(weight)
            logits = batched(params, buffers, x[idx])
            losses = nn.functional.cross_entropy(
                logits.reshape(count * width, -1), y[idx].reshape(-1), reduction="none"
            ).view(count, width)
            loss = ((losses * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if progress is not None:
                progress(done, total)
    trained = []
    for s, model in enumerate(models):
        state = {k: v[s].detach().clone() for k, v in {**params, **buffers}.items()}
        model.load_state_dict(state)
        trained.append(model)
    return trained


def _stack(models: list[nn.Module]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``stack_module_state`` with row-major strides: the conv nets keep their kernels
    channels-last, and GroupNorm under vmap cannot take channels-last activations (torch raises
    "NYI: querying is_contiguous inside of vmap")."""
    params, buffers = stack_module_state(models)

    def standard(t: torch.Tensor) -> torch.Tensor:
        return t.detach().contiguous().requires_grad_(t.requires_grad)

    return (
        {k: standard(v) for k, v in params.items()},
        {k: standard(v) for k, v in buffers.items()},
    )


def _train_loop(
    models: list[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    members: list[NDArray[np.int64]],
    rngs: list[np.random.Generator],
    steps: int,
    config: ShadowConfig,
    progress: Progress | None,
) -> None:
    total, done = len(models) * config.epochs * steps, 0
    for model, m, rng in zip(models, members, rngs, strict=True):
        optimizer = _optimizer(list(model.parameters()), config)
        model.train()
        for _ in range(config.epochs):
            for chunk in epoch_batches(m, rng, steps):
                optimizer.zero_grad(set_to_none=False)
                if chunk.size:
                    idx = torch.from_numpy(chunk)
                    nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                else:  # an empty batch is a zero gradient (the optimizer still steps)
                    for p in model.parameters():
                        p.grad = torch.zeros_like(p)
                optimizer.step()
                done += 1
                if progress is not None:
                    progress(done, total)


def _train_private(
    models: list[nn.Module],
    population: ArrayDataset,
    members: list[NDArray[np.int64]],
    indices: Sequence[int],
    config: ShadowConfig,
    dp: ShadowDP,
    progress: Progress | None,
) -> None:
    trainings = []
    for s, model, m in zip(indices, models, members, strict=True):
        part = population.subset(m)
        x, y = part.to_tensors()
        trainings.append(
            make_private(
                model,
                _optimizer(list(model.parameters()), config),
                nn.functional.cross_entropy,
                x,
                y,
                batch_size=min(config.batch_size, len(set(part.unit_keys().tolist()))),
                max_grad_norm=dp.max_grad_norm,
                noise_multiplier=dp.noise_multiplier,
                keys=part.keys,
                seed=shadow_seed(config, s),
            )
        )
    total = sum(math.ceil(config.epochs / t.sample_rate) for t in trainings)
    done = 0
    for training in trainings:
        for batch in training.batches(epochs=config.epochs):
            training.step(batch)
            done += 1
            if progress is not None:
                progress(done, total)


def _save(path: Path, shadows: ShadowSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CACHE_FORMAT,
        "config": json.dumps(asdict(shadows.config), sort_keys=True),
        "membership": torch.from_numpy(shadows.membership.copy()),
        "params": shadows.params,
        "buffers": shadows.buffers,
        "feature_shape": list(shadows.feature_shape),
        "num_classes": shadows.num_classes,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _load(path: Path, population: ArrayDataset, config: ShadowConfig) -> ShadowSet | None:
    """The cached shadow set at ``path``, or ``None`` (missing, unreadable or not ours: retrain)."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, weights_only=True)
        same = (
            payload["format"] == CACHE_FORMAT
            and payload["config"] == json.dumps(asdict(config), sort_keys=True)
            and tuple(payload["membership"].shape) == (config.n_shadows, len(population))
        )
        if not same:
            return None
        return ShadowSet(
            config=config,
            membership=payload["membership"].numpy().astype(bool),
            params=dict(payload["params"]),
            buffers=dict(payload["buffers"]),
            feature_shape=tuple(payload["feature_shape"]),
            num_classes=int(payload["num_classes"]),
            from_cache=True,
        )
    except Exception:  # a truncated or foreign file is a cache miss, never an error
        return None
