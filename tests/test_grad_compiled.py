"""The torch.compile'd per-example path: the same clipped sum as the eager one, padded rows
contribute nothing, every clipped row stays within C, and non-finite gradients are refused."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from deniable.errors import DeniableError
from deniable.grad.clip import clip_and_sum
from deniable.grad.compiled import compiled_clipped_sum
from deniable.grad.per_sample import compute_per_sample
from deniable.train.clipped_sum import Clipping, clipped_sum

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="torch.compile (inductor) needs a C compiler; the step falls back to eager",
)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.Tanh(), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    )


@pytest.mark.parametrize("n", [5, 32, 37])
def test_compiled_equals_eager_for_any_batch_size(n: int) -> None:
    """n = 5 and 37 are padded (to 32 and 64 rows), 32 is not; same sum, norms and losses."""
    net = model()
    g = torch.Generator().manual_seed(n)
    x, y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)
    loss = nn.functional.cross_entropy
    summed, norms, losses = compiled_clipped_sum(net, loss, x, y, 0.5, bucket=32)
    eager = compute_per_sample(net, loss, x, y)
    expected = clip_and_sum(eager.grads, 0.5)
    assert norms.shape == (n,) and losses.shape == (n,)
    torch.testing.assert_close(norms, expected.norms, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(losses, eager.losses, atol=1e-5, rtol=1e-5)
    for name, value in expected.summed.items():
        torch.testing.assert_close(summed[name], value, atol=1e-5, rtol=1e-4)
    assert expected.clipped_fraction > 0  # the bound bites


def test_a_single_example_sum_never_exceeds_the_bound() -> None:
    """One example at a time: the compiled clipped gradient's norm is at most C."""
    net = model()
    g = torch.Generator().manual_seed(9)
    for _ in range(5):
        x, y = torch.randn(1, 1, 8, 8, generator=g) * 10, torch.randint(0, 3, (1,), generator=g)
        summed, norms, _ = compiled_clipped_sum(net, nn.functional.cross_entropy, x, y, 0.01)
        total = torch.sqrt(sum((v**2).sum() for v in summed.values()))
        assert float(norms[0]) > 0.01 and float(total) <= 0.01


def test_the_step_uses_it_when_asked_and_refuses_nan() -> None:
    net = model()
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 3, (20,))
    units = torch.arange(20)
    clip = Clipping(1.0)
    fast = clipped_sum(net, nn.functional.cross_entropy, x, y, units, clipping=clip, compiled=True)
    slow = clipped_sum(net, nn.functional.cross_entropy, x, y, units, clipping=clip)
    assert fast.method == "compiled" and slow.method == "ghost"
    for name, value in slow.summed.items():
        torch.testing.assert_close(fast.summed[name], value, atol=1e-5, rtol=1e-4)
    assert fast.clipped_units == slow.clipped_units
    x[3] = float("nan")
    with pytest.raises(DeniableError, match="not finite"):
        clipped_sum(net, nn.functional.cross_entropy, x, y, units, clipping=clip, compiled=True)


def test_a_compiler_failure_falls_back_to_the_eager_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the compiler fails (here: made to), the step warns once and takes the eager path."""
    import deniable.train.clipped_sum as module

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no C compiler")

    monkeypatch.setattr(module, "compiled_clipped_sum", broken)
    net = model()
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 3, (6,))
    units = torch.arange(6)
    out = clipped_sum(
        net, nn.functional.cross_entropy, x, y, units, clipping=Clipping(1.0), compiled=True
    )
    assert out.method == "ghost" and net in module._not_compilable
