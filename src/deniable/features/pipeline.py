"""ScatterNet + linear model (or small CNN) trained with DP-SGD: Tramèr & Boneh (2021).

The pipeline: scattering features, computed once (:func:`scatter_images`); a normalisation
(:class:`GroupNormalization`, free, or :class:`PrivateNormalization`, whose Gaussian event is
composed with DP-SGD's); then DP-SGD through :func:`deniable.train.private.make_private`, with σ
calibrated so that the *composed* run spends the target ε (:func:`noise_multiplier_after`). The
ε reported is computed from the events that happened: the normalisation's and the training's.

    result = train_on_scattering(train_x, train_y, test_x, test_y, ScatterNetConfig())
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as nnf
from torch import nn

from deniable.accounting import epsilon as account_epsilon
from deniable.errors import DeniableError, InvalidParameterError, check_count, check_positive
from deniable.events import ComposedEvent, NoOpEvent, PrivacyEvent
from deniable.features.normalize import (
    group_normalize,
    noise_multiplier_after,
    private_channel_stats,
    standardize,
)
from deniable.features.scattering import Scattering2D
from deniable.mechanisms import RandomSource
from deniable.train.private import make_private

MODELS: tuple[str, ...] = ("linear", "cnn")


def scatter_images(
    images: torch.Tensor, *, J: int = 2, L: int = 8, chunk_size: int = 8
) -> torch.Tensor:
    """Scattering features of (n, C, H, W) images: (n, C·K, H/2^J, W/2^J), without autograd.

    Small chunks are faster on CPU (the intermediate tensors stay in cache).
    """
    if images.dim() != 4:
        raise InvalidParameterError("images", f"shape {tuple(images.shape)}", "(n, C, H, W)")
    scattering = Scattering2D((int(images.shape[2]), int(images.shape[3])), J=J, L=L)
    with torch.no_grad():
        chunks = images.float().split(check_count("chunk_size", chunk_size))
        parts = [scattering(part) for part in chunks]
    return torch.cat(parts)


@dataclass(frozen=True)
class GroupNormalization:
    """Per-example GroupNorm of the channels in ``num_groups`` groups: costs no privacy."""

    num_groups: int = 27


@dataclass(frozen=True)
class PrivateNormalization:
    """Per-channel standardisation with private statistics (:func:`private_channel_stats`).

    ``mean_clip`` and ``square_clip`` must be chosen without the private data.
    """

    mean_clip: float
    square_clip: float
    noise_multiplier: float = 8.0


Normalization = GroupNormalization | PrivateNormalization | None


@dataclass(frozen=True)
class ScatterNetConfig:
    """DP-SGD on scattering features. Defaults: Tramèr & Boneh's MNIST linear model (batch 4096,
    SGD lr 8, momentum 0.9, C = 0.1, 40 epochs, ε = 3 at δ = 1e-5), without normalisation."""

    target_epsilon: float = 3.0
    delta: float = 1e-5
    epochs: float = 40.0
    batch_size: int = 4096
    learning_rate: float = 8.0
    momentum: float = 0.9
    max_grad_norm: float = 0.1
    normalization: Normalization = None
    model: str = "linear"
    seed: int | None = 0
    accountant: str = "pld"

    def __post_init__(self) -> None:
        check_positive("target_epsilon", self.target_epsilon)
        check_positive("epochs", self.epochs)
        check_count("batch_size", self.batch_size)
        check_positive("learning_rate", self.learning_rate)
        check_positive("max_grad_norm", self.max_grad_norm)
        if not 0 <= self.momentum < 1:
            raise InvalidParameterError("momentum", self.momentum, "in [0, 1)")
        if self.model not in MODELS:
            raise InvalidParameterError("model", self.model, f"one of {', '.join(MODELS)}")


@dataclass(frozen=True)
class ScatterNetResult:
    """Accuracy and the privacy spent; every ε here comes from the accountant."""

    test_accuracy: float
    train_accuracy: float
    epsilon: float
    epsilon_training: float
    epsilon_normalization: float
    delta: float
    accountant: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    seconds: float
    normalization: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def scatter_model(channels: int, spatial: tuple[int, int], classes: int, kind: str) -> nn.Module:
    """``linear``: one linear layer on the flattened features. ``cnn``: the authors' small tanh
    CNN on 7 × 7 scattering maps (conv 3×3/2 → 16, conv 3×3 → 32, linear 512 → 32 → classes)."""
    if kind == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(channels * spatial[0] * spatial[1], classes))
    if kind == "cnn":
        side = (spatial[0] + 1) // 2, (spatial[1] + 1) // 2
        return nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=3, stride=2, padding=1),
            nn.Tanh(),
            nn.Conv2d(16, 32, kernel_size=3, stride=1, padding=1),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(32 * side[0] * side[1], 32),
            nn.Tanh(),
            nn.Linear(32, classes),
        )
    raise InvalidParameterError("model", kind, f"one of {', '.join(MODELS)}")


def normalize_features(
    train_x: torch.Tensor,
    test_x: torch.Tensor,
    normalization: Normalization,
    rng: RandomSource | None,
) -> tuple[torch.Tensor, torch.Tensor, PrivacyEvent, dict[str, object]]:
    """Normalised train and test features, the event spent on the training data, and details."""
    if normalization is None:
        return train_x, test_x, NoOpEvent(), {"kind": "none"}
    if isinstance(normalization, GroupNormalization):
        groups = normalization.num_groups
        details: dict[str, object] = {"kind": "group", "num_groups": groups}
        return (
            group_normalize(train_x, groups),
            group_normalize(test_x, groups),
            NoOpEvent(),
            details,
        )
    stats = private_channel_stats(
        train_x,
        noise_multiplier=normalization.noise_multiplier,
        mean_clip=normalization.mean_clip,
        square_clip=normalization.square_clip,
        rng=rng,
    )
    details = {"kind": "private", **stats.details}
    return standardize(train_x, stats), standardize(test_x, stats), stats.event, details


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum(
            int((model(xb).argmax(dim=1) == yb).sum())
            for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True)
        )
    return correct / max(len(y), 1)


def train_on_scattering(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    config: ScatterNetConfig,
    *,
    num_classes: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScatterNetResult:
    """Normalise, calibrate σ for the composed run, train with DP-SGD, evaluate.

    ``train_x``/``test_x``: scattering features (n, K, h, w). The privacy unit is one training
    example (add/remove-one). ``config.seed`` seeds the model, the sampler and all noise;
    ``None`` draws them from the OS CSPRNG.
    """
    if train_x.dim() != 4 or test_x.shape[1:] != train_x.shape[1:]:
        raise InvalidParameterError(
            "features",
            f"{tuple(train_x.shape)} / {tuple(test_x.shape)}",
            "(n, K, h, w) with equal (K, h, w) for train and test",
        )
    start = time.perf_counter()
    seed = config.seed
    norm_rng = None if seed is None else RandomSource(seed + 2)
    train_n, test_n, prior, details = normalize_features(
        train_x, test_x, config.normalization, norm_rng
    )
    n = int(train_x.shape[0])
    if config.batch_size > n:
        raise InvalidParameterError("batch_size", config.batch_size, f"<= the {n} examples")
    sample_rate = config.batch_size / n
    steps = math.ceil(config.epochs / sample_rate)
    sigma = noise_multiplier_after(
        prior,
        target_epsilon=config.target_epsilon,
        delta=config.delta,
        sample_rate=sample_rate,
        steps=steps,
        accountant=config.accountant,
    )
    if seed is not None:
        torch.manual_seed(seed)
    classes = num_classes if num_classes is not None else int(train_y.max()) + 1
    channels, height, width = (int(s) for s in train_x.shape[1:])
    model = scatter_model(channels, (height, width), classes, config.model)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.learning_rate, momentum=config.momentum
    )
    private = make_private(
        model,
        optimizer,
        nnf.cross_entropy,
        train_n,
        train_y,
        batch_size=config.batch_size,
        max_grad_norm=config.max_grad_norm,
        noise_multiplier=sigma,
        seed=seed,
    )
    for batch in private.batches(steps=steps):
        private.step(batch)
        if progress is not None:
            progress(private.steps_done, steps)
    if private.steps_done != steps:
        raise DeniableError(f"training stopped after {private.steps_done} of {steps} steps")
    training_event = private.tracker.event()
    total = (
        training_event if isinstance(prior, NoOpEvent) else ComposedEvent([prior, training_event])
    )
    eps_total = account_epsilon(total, config.delta, accountant=config.accountant).epsilon
    eps_norm = (
        0.0
        if isinstance(prior, NoOpEvent)
        else account_epsilon(prior, config.delta, accountant=config.accountant).epsilon
    )
    return ScatterNetResult(
        test_accuracy=accuracy(model, test_n, test_y),
        train_accuracy=accuracy(model, train_n, train_y),
        epsilon=eps_total,
        epsilon_training=private.epsilon(config.delta, config.accountant).epsilon,
        epsilon_normalization=eps_norm,
        delta=config.delta,
        accountant=config.accountant,
        noise_multiplier=sigma,
        sample_rate=sample_rate,
        steps=steps,
        seconds=time.perf_counter() - start,
        normalization=details,
    )
