"""Inputs read by several layers in one ghost pass: counted, one Gram, same clipped sums."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from deniable.grad import (
    clip_and_sum,
    ghost_clipped_sum,
    ghost_shared,
    per_sample_gradients,
    per_sample_norms,
)
from deniable.grad.ghost_shared import SharedInputs, count_readers, sharing


class ThreeReaders(nn.Module):
    """Three Linear layers read the same (B, T, d) tensor, like q/k/v projections, and a
    fourth reads its own: a (B, T, d) → (B, 3) classifier."""

    def __init__(self, d: int = 6, out: int = 6) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(d, out) for _ in range(3))
        self.alone = nn.Linear(d, out)
        self.head = nn.Linear(out, 3)

    def forward(self, x: Tensor) -> Tensor:
        mixed = self.q(x) * torch.tanh(self.k(x)) + self.v(x) + self.alone(torch.sin(x))
        return self.head(mixed.mean(1))


def _ce(outputs: Tensor, targets: Tensor) -> Tensor:
    return nnf.cross_entropy(outputs, targets, reduction="sum")


def test_readers_are_counted_by_the_values_read_not_the_tensor_object() -> None:
    x, other = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    with sharing(count_readers([[x], [x.detach()], [x[:, :2]], [other], [x, x]])) as shared:
        assert shared.readers_of(x) == 3  # the last layer read it twice: one reader
        assert shared.readers_of(x[:, :2]) == 1  # another view: other values
        assert shared.readers_of(other) == 1
        assert ghost_shared.current() is shared
    assert ghost_shared.current() is None


def test_a_shared_gram_is_computed_once_and_released_with_the_pass() -> None:
    x, y = torch.randn(2, 3), torch.randn(2, 3)
    computed: list[str] = []

    def compute(name: str) -> Tensor:
        computed.append(name)
        return torch.full((1,), float(len(computed)))

    with sharing(count_readers([[x], [x], [y]])) as shared:
        first = shared.gram(x, lambda: compute("x"))
        again = shared.gram(x.detach(), lambda: compute("x again"))
        assert again is first
        assert shared.stored == {}  # both readers had it: released
        shared.gram(y, lambda: compute("y"))
        shared.gram(y, lambda: compute("y again"))  # one reader: never stored
        assert shared.stored == {}
        shared.gram(x, lambda: compute("x, next step"))  # a reader that never comes back
        assert list(shared.stored) != []
    assert computed == ["x", "y", "y again", "x, next step"]
    assert shared.stored == {}  # released with the pass


@pytest.mark.parametrize(
    ("steps", "method", "alone"),
    [
        # Gram iff d_in·d_out·readers ≥ T·(d_in + d_out·readers): 108 ≥ 24·T for q, k and v,
        # 36 ≥ 12·T for the layer reading its own input
        (2, "gram", "gram"),
        (4, "gram", "explicit"),  # the shared input tips the choice
        (5, "explicit", "explicit"),
    ],
)
def test_shared_readers_match_vmap(
    steps: int, method: str, alone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Norms and the clipped sum equal whole-model vmap (1e-5) whichever rule the shared
    readers take; the Gram of their input is computed once per pass, and so is w ⊙ a for their
    weighted sums (d_in = 6 < d_out·readers = 18: a is the one scaled)."""
    computed: list[tuple[str, int]] = []
    original = SharedInputs.once

    def counting(self: SharedInputs, kind: str, x: Tensor, compute):  # type: ignore[no-untyped-def]
        def counted() -> Tensor:
            computed.append((kind, x.data_ptr()))
            return compute()

        return original(self, kind, x, counted)

    monkeypatch.setattr(SharedInputs, "once", counting)
    torch.manual_seed(0)
    model = ThreeReaders().double()
    x, y = torch.randn(5, steps, 6, dtype=torch.float64), torch.randint(0, 3, (5,))
    grads, _ = per_sample_gradients(model, _ce, x, y)
    norms = per_sample_norms(grads)
    bound = float(norms.median())
    got = ghost_clipped_sum(model, _ce, x, y, bound)
    torch.testing.assert_close(got.norms, norms, rtol=1e-5, atol=1e-10)
    want = clip_and_sum(grads, bound)
    for name, value in want.summed.items():
        torch.testing.assert_close(got.summed[name], value, rtol=1e-5, atol=1e-10)
    assert [got.layer_methods[f"{n}.weight"] for n in "qkv"] == [method] * 3
    assert got.layer_methods["alone.weight"] == alone
    assert computed.count(("gram", x.data_ptr())) == (1 if method == "gram" else 0)
    assert computed.count(("scaled", x.data_ptr())) == (1 if method == "gram" else 0)


class NormAndLinear(nn.Module):
    """A LayerNorm and one Linear layer read the same input; only the Linear keeps it."""

    def __init__(self, d: int = 6) -> None:
        super().__init__()
        self.norm, self.proj, self.head = nn.LayerNorm(d), nn.Linear(d, d), nn.Linear(d, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head((self.norm(x) + self.proj(x)).mean(1))


def test_a_layer_that_keeps_no_input_is_not_a_reader() -> None:
    """T = 4: with one reader 36 < 4·(6 + 6), explicit; counting the LayerNorm as a second
    reader would have made it Gram (72 ≥ 4·(6 + 12)) on memory nobody keeps."""
    torch.manual_seed(1)
    model = NormAndLinear().double()
    x, y = torch.randn(5, 4, 6, dtype=torch.float64), torch.randint(0, 3, (5,))
    got = ghost_clipped_sum(model, _ce, x, y, 0.1)
    assert got.layer_methods["proj.weight"] == "explicit"
    grads, _ = per_sample_gradients(model, _ce, x, y)
    torch.testing.assert_close(got.norms, per_sample_norms(grads), rtol=1e-5, atol=1e-10)
