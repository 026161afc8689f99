"""Empirical adversarial robustness: FGSM and PGD in L∞ and L2 balls, and robust accuracy.

- FGSM (Goodfellow, Shlens & Szegedy 2015): one step of size ε along the sign of the input
  gradient of the loss (L∞); in an L2 ball the same step along the normalised gradient ("FGM").
- PGD (Madry, Makelov, Schmidt, Tsipras & Vladu 2018): ``steps`` ascent steps of size
  ``step_size`` (default 2.5·ε/steps, their choice), each projected back onto the ball and onto
  the input box ``bounds``, from the input itself and from ``random_starts`` random points of the
  ball; every example keeps the iterate that misclassifies it (or, failing that, has the largest
  loss), so more steps or starts never make it weaker.

An attack is any ``(model, x, y) → x_adv``; fix the ball and options with ``functools.partial``:

>>> import functools, torch
>>> attack = functools.partial(pgd, ball=LinfBall(0.1), steps=5, bounds=(0.0, 1.0))

Robust accuracy is the fraction of examples still classified correctly after the attack (an
upper bound on the true robust accuracy: a stronger attack may do better). For certified
guarantees see :mod:`deniable.evaluate.smoothing` and :mod:`deniable.evaluate.pixeldp`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from torch import nn

from deniable.data import ArrayDataset
from deniable.errors import DeniableError, InvalidParameterError, check_count, check_positive
from deniable.evaluate._common import DEFAULT_BATCH_SIZE

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(model, inputs, labels) → adversarial inputs`` of the same shape."""

Bounds = tuple[float, float]


class Ball(Protocol):
    """A norm ball of perturbations ``δ`` around each input (per example)."""

    norm: ClassVar[str]

    @property
    def radius(self) -> float:
        """The ball's radius ε."""
        ...

    def step(self, grad: torch.Tensor, size: float) -> torch.Tensor:
        """The steepest-ascent step of norm ``size`` for gradient ``grad``."""
        ...

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        """``delta`` projected onto the ball."""
        ...

    def sample(self, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random perturbation in the ball, shaped like ``like``."""
        ...


@dataclass(frozen=True)
class LinfBall:
    """``‖δ‖∞ ≤ radius``: every feature moves by at most ``radius``."""

    radius: float
    norm: ClassVar[str] = "linf"

    def __post_init__(self) -> None:
        check_positive("radius", self.radius)

    def step(self, grad: torch.Tensor, size: float) -> torch.Tensor:
        """``size · sign(grad)``."""
        return size * grad.sign()

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        """Clip every coordinate to ``[−radius, radius]``."""
        return delta.clamp(-self.radius, self.radius)

    def sample(self, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Uniform in the cube."""
        u = torch.rand(like.shape, generator=generator, dtype=like.dtype)
        return (2 * u - 1) * self.radius


@dataclass(frozen=True)
class L2Ball:
    """``‖δ‖₂ ≤ radius`` over all features of one example."""

    radius: float
    norm: ClassVar[str] = "l2"

    def __post_init__(self) -> None:
        check_positive("radius", self.radius)

    def step(self, grad: torch.Tensor, size: float) -> torch.Tensor:
        """``size · grad / ‖grad‖₂`` (zero where the gradient vanishes)."""
        return size * grad / _norms(grad).clamp_min(1e-12)

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        """Scale ``delta`` down onto the ball where it lies outside."""
        return delta * (self.radius / _norms(delta).clamp_min(1e-12)).clamp(max=1.0)

    def sample(self, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Uniform in the ball: a Gaussian direction times ``radius · U^(1/d)``."""
        direction = torch.randn(like.shape, generator=generator, dtype=like.dtype)
        d = math.prod(like.shape[1:])
        u = torch.rand((like.shape[0],), generator=generator, dtype=like.dtype)
        scale = self.radius * u.pow(1.0 / d) / _norms(direction).flatten().clamp_min(1e-12)
        return direction * scale.view(-1, *([1] * (like.dim() - 1)))


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ball: Ball,
    *,
    bounds: Bounds | None = None,
) -> torch.Tensor:
    """One step of norm ``ball.radius`` up the loss gradient, clipped to ``bounds``."""
    _check(x, y, bounds)
    grad, _, _ = _loss_grad(model, x, y)
    return _clip(x + ball.step(grad, ball.radius), bounds).detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ball: Ball,
    *,
    steps: int = 20,
    step_size: float | None = None,
    random_starts: int = 1,
    bounds: Bounds | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Projected gradient ascent on the cross-entropy within ``ball`` (and ``bounds``).

    Runs ``1 + random_starts`` trajectories: one from ``x`` itself and ``random_starts`` from
    uniform random points of the ball (Madry et al.'s random start, seeded by ``seed``). Returns,
    per example, the best iterate of all (starts included): one that is misclassified if any is,
    else the one with the largest loss.
    """
    _check(x, y, bounds)
    check_count("steps", steps)
    check_count("random_starts", random_starts, 0)
    if step_size is None:
        size = 2.5 * ball.radius / steps
    else:
        size = check_positive("step_size", step_size)
    generator = torch.Generator().manual_seed(seed)
    x = x.detach()
    best = x.clone()
    best_wrong = torch.zeros(x.shape[0], dtype=torch.bool)
    best_loss = torch.full((x.shape[0],), -math.inf, dtype=x.dtype)
    for start in range(1 + random_starts):
        delta = ball.sample(x, generator) if start else torch.zeros_like(x)
        current = _clip(x + delta, bounds)
        for i in range(steps + 1):
            grad, loss, wrong = _loss_grad(model, current, y)
            better = (wrong & ~best_wrong) | ((wrong == best_wrong) & (loss > best_loss))
            best[better] = current[better]
            best_wrong = best_wrong | wrong
            best_loss = torch.where(better, loss, best_loss)
            if i < steps:
                delta = ball.project(current - x + ball.step(grad, size))
                current = _clip(x + delta, bounds).detach()
    return best


@dataclass(frozen=True)
class RobustAccuracy:
    """Accuracy on clean inputs and under one attack, on ``n`` examples."""

    clean_accuracy: float
    robust_accuracy: float
    n: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return {
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "n": self.n,
        }


def robust_accuracy(
    model: nn.Module,
    data: ArrayDataset,
    attack: Attack,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> RobustAccuracy:
    """Fraction of ``data`` classified correctly before and after ``attack`` (in batches)."""
    check_count("batch_size", batch_size)
    x, y = data.to_tensors()
    clean = robust = 0
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(y), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            adv = attack(model, xb, yb)
            with torch.no_grad():
                clean += int((model(xb).argmax(dim=1) == yb).sum())
                robust += int((model(adv).argmax(dim=1) == yb).sum())
    finally:
        model.train(was_training)
    return RobustAccuracy(clean / len(y), robust / len(y), len(y))


def _loss_grad(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input gradient of the summed loss, per-example loss, and whether each is misclassified."""
    was_training = model.training
    model.eval()
    try:
        inputs = x.detach().clone().requires_grad_(True)
        logits = model(inputs)
        losses = nn.functional.cross_entropy(logits, y, reduction="none")
        (grad,) = torch.autograd.grad(losses.sum(), inputs)
    finally:
        model.train(was_training)
    wrong = logits.detach().argmax(dim=1) != y
    return grad, losses.detach(), wrong


def _norms(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norms, shaped to broadcast against ``t``."""
    flat = t.reshape(t.shape[0], -1).norm(dim=1)
    return flat.view(-1, *([1] * (t.dim() - 1)))


def _clip(x: torch.Tensor, bounds: Bounds | None) -> torch.Tensor:
    return x if bounds is None else x.clamp(bounds[0], bounds[1])


def _check(x: torch.Tensor, y: torch.Tensor, bounds: Bounds | None) -> None:
    if x.dim() < 2 or y.dim() != 1 or x.shape[0] != y.shape[0]:
        raise DeniableError(
            f"attacks need inputs (n, ...) and n labels, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if bounds is not None and not (
        len(bounds) == 2 and all(math.isfinite(b) for b in bounds) and bounds[0] < bounds[1]
    ):
        raise InvalidParameterError(
            "bounds", bounds, "a pair (low, high) of finite numbers, low < high"
        )
