"""The DP-SGD step: clipping, noise scale, averaging by the expected batch size, units,
microbatches, virtual steps, and the events it records. Statistical checks use fixed seeds and
state their false-failure rates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from deniable import accounting
from deniable.errors import DeniableError
from deniable.events import GaussianEvent, PoissonSampledEvent, SelfComposedEvent
from deniable.train.dp_step import Clipping, noisy_gradient, step_event
from deniable.train.noise import NoiseSource
from deniable.train.private import PrivateTraining, make_private


def linear_sum_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """loss = Σ outputs: for a bias-free Linear(d, 1) the per-example gradient is x itself."""
    return outputs.sum()


def make_linear(d: int) -> nn.Module:
    model = nn.Linear(d, 1, bias=False)
    nn.init.zeros_(model.weight)
    return model


def test_clipped_sum_noise_and_expected_batch_average() -> None:
    d, n = 400, 6
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    x[0] *= 0.01  # one example far below the clipping norm
    units = torch.arange(n)
    clip, sigma, expected = 1.0, 2.0, 12.5
    grads, stats_ = noisy_gradient(
        make_linear(d),
        linear_sum_loss,
        x,
        torch.zeros(n),
        units,
        clipping=Clipping(clip),
        noise_multiplier=sigma,
        expected_batch_units=expected,
        noise=NoiseSource(1),
    )
    norms = x.norm(dim=1, keepdim=True)
    clipped = x * torch.clamp(clip / norms, max=1.0)
    residual = grads["weight"].flatten() * expected - clipped.sum(0)
    # Residual noise must be N(0, (σC)²) per coordinate: KS at false-failure rate 1e-3.
    assert stats.kstest(residual.numpy(), stats.norm(scale=sigma * clip).cdf).pvalue > 1e-3
    assert stats_.units == n
    assert stats_.clipped_fraction == pytest.approx(5 / 6)


def test_units_are_clipped_as_a_whole_and_virtual_steps_match() -> None:
    d = 5
    x = torch.randn(8, d, generator=torch.Generator().manual_seed(2)) * 3
    units = torch.tensor([0, 0, 1, 2, 2, 2, 3, 3])
    kwargs = {
        "clipping": Clipping(1.0),
        "noise_multiplier": 1e-12,
        "expected_batch_units": 4.0,
    }
    whole, _ = noisy_gradient(
        make_linear(d), linear_sum_loss, x, torch.zeros(8), units, noise=NoiseSource(0), **kwargs
    )
    chunked, _ = noisy_gradient(
        make_linear(d),
        linear_sum_loss,
        x,
        torch.zeros(8),
        units,
        noise=NoiseSource(0),
        physical_batch_units=1,
        **kwargs,
    )
    expected = torch.zeros(d)
    for u in range(4):
        g = x[units == u].sum(0)
        expected += g * min(1.0, 1.0 / float(g.norm()))
    torch.testing.assert_close(whole["weight"].flatten(), expected / 4, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(chunked["weight"], whole["weight"], atol=1e-6, rtol=1e-6)


def test_empty_batch_releases_only_noise() -> None:
    grads, stats_ = noisy_gradient(
        make_linear(3),
        linear_sum_loss,
        torch.zeros(0, 3),
        torch.zeros(0),
        torch.zeros(0, dtype=torch.long),
        clipping=Clipping(1.0),
        noise_multiplier=1.0,
        expected_batch_units=10.0,
        noise=NoiseSource(0),
    )
    assert stats_.units == 0
    assert grads["weight"].abs().sum() > 0


def test_microbatches_double_the_sensitivity() -> None:
    assert step_event(Clipping(1.5), 2.0) == GaussianEvent(sigma=3.0, sensitivity=1.5)
    event = step_event(Clipping(1.5, microbatch_size=4), 2.0)
    assert event.sensitivity == 3.0
    assert event.noise_multiplier() == pytest.approx(1.0)  # σC / 2C


def _data(n: int = 200, d: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] > 0).long()
    return x, y


def private_linear(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs: object
) -> PrivateTraining:
    """make_private with SGD(lr=0.1) and cross-entropy, the set-up most tests here share."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return make_private(model, optimizer, nn.functional.cross_entropy, x, y, **kwargs)  # type: ignore[arg-type]


def test_recorded_events_are_what_the_accountant_is_given() -> None:
    x, y = _data()
    model = nn.Linear(4, 2)
    private = private_linear(
        model,
        x,
        y,
        batch_size=20,
        max_grad_norm=0.5,
        noise_multiplier=1.3,
        seed=0,
    )
    for batch in private.batches(steps=25):
        private.step(batch)
    step = PoissonSampledEvent(0.1, GaussianEvent(sigma=1.3 * 0.5, sensitivity=0.5))
    assert private.tracker.event() == SelfComposedEvent(step, 25)
    expected = accounting.epsilon(SelfComposedEvent(step, 25), 1e-5).epsilon
    assert private.epsilon(1e-5).epsilon == pytest.approx(expected, rel=1e-12)


def test_target_epsilon_is_reached_not_exceeded() -> None:
    x, y = _data()
    model = nn.Linear(4, 2)
    private = private_linear(
        model,
        x,
        y,
        batch_size=20,
        max_grad_norm=1.0,
        target_epsilon=2.0,
        delta=1e-5,
        epochs=3,
        seed=0,
    )
    for batch in private.batches(epochs=3):
        private.step(batch)
    eps = private.epsilon(1e-5).epsilon
    assert 2.0 * (1 - 1e-3) < eps <= 2.0


def test_user_level_units_and_fixed_size_batches() -> None:
    x, y = _data(120)
    keys = np.repeat(np.arange(30), 4)  # 30 users, 4 examples each
    model = nn.Linear(4, 2)
    private = private_linear(
        model,
        x,
        y,
        batch_size=6,
        max_grad_norm=1.0,
        noise_multiplier=1.0,
        keys=keys,
        fixed_size_batches=True,
        seed=1,
    )
    assert private.sample_rate == pytest.approx(6 / 30)
    batch = next(private.batches(steps=1))
    assert batch.inputs.shape[0] == 24  # every example of the 6 sampled users
    private.step(batch)
    result = private.epsilon(1e-5)
    assert result.accountant == "rdp" and result.relation.value == "replace_one"
    assert private.tracker.unit == "key"


def test_batches_must_come_in_order_from_the_sampler() -> None:
    x, y = _data()
    model = nn.Linear(4, 2)
    private = private_linear(
        model,
        x,
        y,
        batch_size=20,
        max_grad_norm=1.0,
        noise_multiplier=1.0,
        seed=0,
    )
    batches = list(private.batches(steps=2))
    with pytest.raises(DeniableError, match="next batch"):
        private.step(batches[1])


def test_batchnorm_models_are_refused() -> None:
    x, y = _data()
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    with pytest.raises(DeniableError, match="BatchNorm"):
        private_linear(
            model,
            x,
            y,
            batch_size=20,
            max_grad_norm=1.0,
            noise_multiplier=1.0,
        )


def test_realised_noise_matches_the_claimed_sigma_end_to_end() -> None:
    # Two trainings from the same seed differ only by noise when the data differ by nothing;
    # the update's std must equal lr·σC/(qU) per coordinate (KS, false-failure rate 1e-3).
    d, n = 300, 50
    x = torch.zeros(n, d)
    y = torch.zeros(n)
    model = make_linear(d)
    sigma, clip, batch, lr = 1.7, 0.8, 10, 1.0
    private = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=lr),
        linear_sum_loss,
        x,
        y,
        batch_size=batch,
        max_grad_norm=clip,
        noise_multiplier=sigma,
        seed=4,
        allow_unverified_layers=True,
    )
    private.step(next(private.batches(steps=1)))
    update = -model.weight.detach().flatten().numpy()
    scale = lr * sigma * clip / batch
    assert stats.kstest(update, stats.norm(scale=scale).cdf).pvalue > 1e-3
    assert math.isclose(float(np.std(update)), scale, rel_tol=0.15)


def test_ghost_and_per_sample_paths_release_the_same_gradient() -> None:
    from deniable.grad.clip import clip_and_sum
    from deniable.grad.per_sample import compute_per_sample

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.LayerNorm(16), nn.Linear(16, 3))
    x = torch.randn(40, 6) * 3
    y = torch.randint(0, 3, (40,))
    grads, stats_ = noisy_gradient(
        model,
        nn.functional.cross_entropy,
        x,
        y,
        torch.arange(40),
        clipping=Clipping(0.5),
        noise_multiplier=0.7,
        expected_batch_units=32.0,
        noise=NoiseSource(9),
    )
    assert stats_.method == "ghost"
    per_sample = compute_per_sample(model, nn.functional.cross_entropy, x, y)
    reference = clip_and_sum(per_sample.grads, 0.5)
    noise = NoiseSource(9)
    for name, value in reference.summed.items():
        expected = (value + noise.gaussian_like(value, 0.7 * 0.5)) / 32.0
        torch.testing.assert_close(grads[name], expected, atol=1e-5, rtol=1e-4)


def test_two_pass_ghost_step_equals_the_book_keeping_step() -> None:
    """``ghost_two_pass`` changes memory and time, not the released gradient (same noise)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 3)).double()
    x, y = torch.randn(12, 6, dtype=torch.float64), torch.randint(0, 3, (12,))
    out = {
        two_pass: _ce_step(model, x, y, 3, ghost_two_pass=two_pass)[0] for two_pass in (False, True)
    }
    for name in out[False]:
        torch.testing.assert_close(out[True][name], out[False][name], msg=name)
    training = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        nn.functional.cross_entropy,
        x,
        y,
        batch_size=4,
        max_grad_norm=1.0,
        noise_multiplier=1.0,
        seed=0,
        ghost_two_pass=True,
    )
    assert training.ghost_two_pass


def test_book_keeping_out_of_memory_continues_in_two_passes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An allocation failure in book-keeping ghost clipping retries the batch in two passes
    (same released gradient) and keeps the model there; other errors are not swallowed."""
    import deniable.train.clipped_sum as clipped_sum

    real = clipped_sum.ghost_clipped_sum
    calls: list[bool] = []

    def tight(*args: object, two_pass: bool = False, **kwargs: object) -> object:
        calls.append(two_pass)
        if not two_pass:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to ...")
        return real(*args, two_pass=two_pass, **kwargs)  # type: ignore[arg-type]

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 3)).double()
    x, y = torch.randn(12, 6, dtype=torch.float64), torch.randint(0, 3, (12,))

    want, _ = _ce_step(model, x, y, 3)  # book-keeping, enough memory
    monkeypatch.setattr(clipped_sum, "ghost_clipped_sum", tight)
    with caplog.at_level("WARNING", logger="deniable.train.clipped_sum"):
        got, method = _ce_step(model, x, y, 3)
        _ce_step(model, x, y, 4)
    assert method == "ghost" and calls == [False, True, True]
    assert clipped_sum.switched_to_two_pass(model)
    assert clipped_sum.ghost_mode(model, False) == "two-pass after out-of-memory"
    fresh = nn.Linear(2, 2)
    assert clipped_sum.ghost_mode(fresh, False) == "book-keeping"
    assert clipped_sum.ghost_mode(fresh, True) == "two-pass"
    assert sum("ran out of memory" in r.getMessage() for r in caplog.records) == 1
    for name in want:
        torch.testing.assert_close(got[name], want[name], msg=name)

    other = nn.Sequential(nn.Linear(6, 3)).double()

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(clipped_sum, "ghost_clipped_sum", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        _ce_step(other, x, y, 0)


def _ce_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
    **kwargs: object,
) -> tuple[dict[str, torch.Tensor], str]:
    """One noisy gradient of cross-entropy, C = 0.5, σ = 1, every example in the batch."""
    grads, stats_ = noisy_gradient(
        model,
        nn.functional.cross_entropy,
        x,
        y,
        torch.arange(len(x)),
        clipping=Clipping(0.5),
        noise_multiplier=1.0,
        expected_batch_units=float(len(x)),
        noise=NoiseSource(seed),
        **kwargs,  # type: ignore[arg-type]
    )
    return grads, stats_.method
