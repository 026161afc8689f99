"""Augmentation multiplicity and parameter averaging (De et al. 2022): exact against brute
force, free in privacy (the step's event is unchanged), and resumable from checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from deniable.config import TrainConfig
from deniable.data import load_dataset
from deniable.errors import InvalidParameterError
from deniable.train.augment import Augmentation, random_crop
from deniable.train.clipped_sum import Clipping, clipped_sum
from deniable.train.ema import ParameterAverage
from deniable.train.private import make_private
from deniable.train.trainer import train_private


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4))


def test_random_crop_shifts_each_image_uniformly_within_the_padding() -> None:
    """One bright pixel at (4, 4) of an 8×8 image lands at (4 + p − dy, 4 + p − dx) with dy, dx
    uniform on {0, …, 2p}. χ² test of the 25 offsets over 5000 images (false failure 1e-3)."""
    n, pad = 5000, 2
    images = torch.zeros(n, 1, 8, 8)
    images[:, 0, 4, 4] = 1.0
    out = random_crop(images, pad, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    assert torch.all(out.sum(dim=(1, 2, 3)) == 1.0)  # the pixel is never cropped away
    where = out[:, 0].flatten(1).argmax(dim=1)
    rows, cols = where // 8 - 4, where % 8 - 4
    assert rows.abs().max() <= pad and cols.abs().max() <= pad
    counts = np.bincount(((rows + pad) * (2 * pad + 1) + cols + pad).numpy(), minlength=25)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_crop_flip_flips_half_the_images() -> None:
    images = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(2000, 1, 1, 1)
    out = Augmentation("crop-flip", 1, pad=0).transform(images, torch.Generator().manual_seed(1))
    flipped = int((out[:, 0, 0, 0] == 3.0).sum())
    assert stats.binomtest(flipped, 2000, 0.5).pvalue > 1e-3
    assert torch.all((out[:, 0, 0, 0] == 0.0) | (out[:, 0, 0, 0] == 3.0))


def test_unit_gradient_is_the_clipped_mean_over_its_copies_brute_force() -> None:
    """clipped_sum over the K-fold expanded batch with loss/K equals, per example, the mean of
    its K copies' gradients computed one backward pass at a time, clipped to C, summed."""
    model = small_cnn()
    gen = torch.Generator().manual_seed(3)
    x, y = torch.rand(5, 1, 8, 8, generator=gen), torch.tensor([0, 1, 2, 3, 0])
    units = torch.arange(5)
    aug = Augmentation("shift", multiplicity=3, pad=1)
    xs, ys, us = aug.expand(x, y, units, torch.Generator().manual_seed(4))
    assert xs.shape == (15, 1, 8, 8) and torch.equal(us, units.repeat_interleave(3))

    def loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(out, t) / 3

    clip = 0.5
    fast = clipped_sum(model, loss, xs, ys, us, clipping=Clipping(clip))
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(5):
        grads = []
        for j in range(3):
            model.zero_grad()
            row = 3 * i + j
            nn.functional.cross_entropy(model(xs[row : row + 1]), ys[row : row + 1]).backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters()})  # type: ignore[union-attr]
        mean = {n: sum(g[n] for g in grads) / 3 for n in expected}
        norm = torch.sqrt(sum((g**2).sum() for g in mean.values()))
        for n in expected:
            expected[n] += mean[n] * min(1.0, clip / float(norm))
    for n in expected:
        torch.testing.assert_close(fast.summed[n], expected[n], atol=1e-5, rtol=1e-5)
    assert fast.units == 5


def test_identical_copies_give_exactly_the_plain_step_and_the_same_event() -> None:
    """K copies without a transform: the mean of K equal gradients is the gradient, so the
    step, its noise and its recorded event are those of plain DP-SGD."""
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    y = torch.randint(0, 4, (64,), generator=torch.Generator().manual_seed(6))
    params = []
    events = []
    for aug in (None, Augmentation("none", multiplicity=4)):
        model = small_cnn()
        training = make_private(
            model, torch.optim.SGD(model.parameters(), lr=0.5), nn.functional.cross_entropy,
            x, y, batch_size=16, max_grad_norm=1.0, noise_multiplier=1.0, seed=7,
            augmentation=aug,
        )  # fmt: skip
        for batch in training.batches(steps=3):
            stats_ = training.step(batch)
            assert stats_.loss > 0
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        events.append(training.tracker.state_dict())
    torch.testing.assert_close(params[0], params[1], atol=1e-5, rtol=1e-5)
    assert events[0] == events[1]


def test_augmentation_rejects_bad_settings_in_one_line() -> None:
    with pytest.raises(InvalidParameterError, match="augmentation_multiplicity"):
        Augmentation("shift", 0)
    with pytest.raises(InvalidParameterError, match="image inputs"):
        Augmentation("shift", 2).transform(torch.zeros(3, 5), torch.Generator())


def test_parameter_average_follows_its_recursion() -> None:
    """θ̄_t = d_t θ̄_{t−1} + (1 − d_t) θ_t with d_t = min(d, (1 + t)/(10 + t)), θ̄_0 = θ_0."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = ParameterAverage(model, decay=0.5)
    expected = 0.0
    for t, value in enumerate([1.0, 2.0, 4.0, 8.0]):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update(model)
        d = min(0.5, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * value
    assert float(average.averaged(model).weight.detach()) == pytest.approx(expected)
    assert float(model.weight.detach()) == 8.0  # the model itself is untouched
    with pytest.raises(InvalidParameterError, match="ema_decay"):
        ParameterAverage(model, decay=1.0)


def test_train_with_both_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """A crash after a checkpoint, then a resume, ends with the same averaged model (and the
    same reported accuracy) as one uninterrupted run; the ε is the same as without them."""
    split = load_dataset("digits")
    config = TrainConfig(
        model="cnn", epochs=0.6, batch_size=128, noise_multiplier=1.0, target_epsilon=None,
        augmentation="shift", augmentation_multiplicity=2, augmentation_pad=1, ema_decay=0.9,
        checkpoint_every=1,
    )  # fmt: skip
    whole = train_private(split, config)

    class CrashError(Exception):
        pass

    def crash(step: int, *_: object) -> None:
        if step == 2:
            raise CrashError

    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(CrashError):
        train_private(split, config, checkpoint=checkpoint, on_step=crash)
    resumed = train_private(split, config, checkpoint=checkpoint)
    assert resumed.training.steps_done == whole.training.steps_done
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert resumed.test_accuracy == whole.test_accuracy
    plain = config.model_copy(
        update={"augmentation": "none", "augmentation_multiplicity": 1, "ema_decay": None}
    )
    assert (
        whole.training.epsilon(1e-5).epsilon
        == train_private(split, plain).training.epsilon(1e-5).epsilon
    )
