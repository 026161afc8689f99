"""FGSM and PGD: exact on a linear model, effective on a small MLP, and inside their balls."""

from __future__ import annotations

import doctest
import functools

import numpy as np
import pytest
import torch
from torch import nn

from deniable.data import ArrayDataset
from deniable.errors import DeniableError
from deniable.evaluate import L2Ball, LinfBall, fgsm, pgd, robust_accuracy, robustness


def test_doctests() -> None:
    assert doctest.testmod(robustness).failed == 0


def _blobs(n: int, d: int, seed: int) -> ArrayDataset:
    """Two classes in [0, 1]^d: means 0.5 ∓ 0.05 per coordinate, noise 0.1, clipped."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = 0.5 + np.where(y[:, None] == 1, 0.05, -0.05) + 0.1 * rng.normal(size=(n, d))
    return ArrayDataset(features=np.clip(x, 0, 1), labels=y, num_classes=2, name="blobs")


def _fit(data: ArrayDataset, hidden: int | None = 32, steps: int = 150) -> nn.Module:
    torch.manual_seed(0)
    x, y = data.to_tensors()
    d = x.shape[1]
    model: nn.Module = nn.Linear(d, 2)
    if hidden is not None:
        model = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.mark.parametrize(("ball", "dual"), [(LinfBall(0.05), 1), (L2Ball(0.3), 2)])
def test_one_step_attacks_are_optimal_on_a_linear_model(ball: LinfBall | L2Ball, dual: int) -> None:
    # logit difference v·x + c: the best attack in the ball lowers the signed margin by
    # radius · ‖v‖_dual (‖·‖₁ for L∞, ‖·‖₂ for L2), so the exact robust accuracy is known
    data = _blobs(500, 20, seed=2)
    model = _fit(data, hidden=None, steps=50)
    assert isinstance(model, nn.Linear)
    x, y = data.to_tensors()
    with torch.no_grad():
        v = model.weight[1] - model.weight[0]
        margin = (x @ v + model.bias[1] - model.bias[0]) * (2 * y - 1)
    robust = margin > ball.radius * torch.linalg.vector_norm(v, ord=dual)
    exact = int(robust.sum()) / len(robust)
    one_step = robust_accuracy(model, data, functools.partial(fgsm, ball=ball))
    many = robust_accuracy(model, data, functools.partial(pgd, ball=ball, steps=10))
    restarted = functools.partial(pgd, ball=ball, steps=10, random_starts=3, seed=1)
    assert one_step.robust_accuracy == pytest.approx(exact)
    assert many.robust_accuracy == pytest.approx(exact)
    # no attack beats the optimum, however many random starts it tries
    assert robust_accuracy(model, data, restarted).robust_accuracy == pytest.approx(exact)
    assert 0.0 < exact < one_step.clean_accuracy  # the case is not degenerate


def test_attacks_lower_accuracy_and_pgd_is_at_least_as_strong_as_fgsm() -> None:
    train, test = _blobs(600, 20, seed=0), _blobs(300, 20, seed=1)
    model = _fit(train)
    bounds = (0.0, 1.0)
    for ball in (LinfBall(0.06), L2Ball(0.25)):
        one = robust_accuracy(model, test, functools.partial(fgsm, ball=ball, bounds=bounds))
        multi = robust_accuracy(model, test, functools.partial(pgd, ball=ball, bounds=bounds))
        assert one.clean_accuracy > 0.95
        assert one.robust_accuracy < one.clean_accuracy - 0.3, ball
        assert multi.robust_accuracy <= one.robust_accuracy, ball
        assert multi.to_dict()["n"] == 300


def test_perturbations_stay_in_the_ball_and_the_box() -> None:
    data = _blobs(64, 12, seed=3)
    model = _fit(data, steps=20)
    x, y = data.to_tensors()
    for ball, norm in ((LinfBall(0.1), torch.inf), (L2Ball(0.4), 2)):
        for adv in (
            fgsm(model, x, y, ball, bounds=(0.0, 1.0)),
            pgd(model, x, y, ball, steps=7, random_starts=2, bounds=(0.0, 1.0), seed=5),
        ):
            sizes = torch.linalg.vector_norm((adv - x).flatten(1), ord=norm, dim=1)
            assert float(sizes.max()) <= ball.radius * (1 + 1e-5)
            assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    first = pgd(model, x, y, LinfBall(0.1), steps=3, seed=9)
    assert torch.equal(first, pgd(model, x, y, LinfBall(0.1), steps=3, seed=9))  # seeded
    assert model.training  # put back in the mode it was in


def test_random_start_in_l2_ball_is_inside_it() -> None:
    sample = L2Ball(2.0).sample(torch.zeros(500, 3, 4, 4), torch.Generator().manual_seed(0))
    norms = sample.flatten(1).norm(dim=1)
    assert float(norms.max()) <= 2.0 + 1e-6 and float(norms.min()) > 0.5  # mass near the rim


def test_attack_arguments_are_checked() -> None:
    model = nn.Linear(3, 2)
    x, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(DeniableError, match="radius"):
        LinfBall(0.0)
    with pytest.raises(DeniableError, match="bounds"):
        fgsm(model, x, y, LinfBall(0.1), bounds=(1.0, 0.0))
    with pytest.raises(DeniableError, match="labels"):
        pgd(model, x, y[:3], LinfBall(0.1))
    with pytest.raises(DeniableError, match="steps"):
        pgd(model, x, y, LinfBall(0.1), steps=0)
