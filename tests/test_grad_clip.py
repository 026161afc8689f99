"""Clipping and summation against a brute-force per-unit reference."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from deniable.errors import DeniableError, InvalidParameterError
from deniable.grad import clip_and_sum, clip_factors, clip_sensitivity, per_sample_norms

C = 1.5


def _grads(units: int = 8, dtype: torch.dtype = torch.float64, seed: int = 0) -> dict[str, Tensor]:
    """Per-unit gradients with norms spread around C, and one all-zero unit."""
    gen = torch.Generator().manual_seed(seed)
    grads = {
        "a.weight": torch.randn(units, 3, 4, generator=gen, dtype=dtype),
        "a.bias": torch.randn(units, 3, generator=gen, dtype=dtype),
        "b.weight": torch.randn(units, 2, generator=gen, dtype=dtype),
    }
    scale = torch.logspace(-1, 1, units, dtype=dtype)  # norms from ~0.4 to ~40
    scale[0] = 0.0
    return {n: g * scale.view(-1, *[1] * (g.dim() - 1)) for n, g in grads.items()}


def _reference_flat(grads: dict[str, Tensor], bound: float) -> dict[str, Tensor]:
    """Σ_u min(1, C/‖g_u‖) g_u with one Python loop over units, in float64."""
    units = next(iter(grads.values())).shape[0]
    out = {n: torch.zeros(g.shape[1:], dtype=torch.float64) for n, g in grads.items()}
    for u in range(units):
        norm = math.sqrt(sum(float(g[u].double().pow(2).sum()) for g in grads.values()))
        scale = 1.0 if norm <= bound else bound / norm
        for n, g in grads.items():
            out[n] += scale * g[u].double()
    return out


def _reference_per_layer(grads: dict[str, Tensor], bound: float) -> dict[str, Tensor]:
    layer_bound = bound / math.sqrt(len(grads))
    out = {}
    for n, g in grads.items():
        total = torch.zeros(g.shape[1:], dtype=torch.float64)
        for u in range(g.shape[0]):
            norm = float(g[u].double().norm())
            total += (1.0 if norm <= layer_bound else layer_bound / norm) * g[u].double()
        out[n] = total
    return out


def _close(got: dict[str, Tensor], want: dict[str, Tensor], rtol: float = 1e-5) -> None:
    assert got.keys() == want.keys()
    for n in want:
        torch.testing.assert_close(got[n].double(), want[n], rtol=rtol, atol=1e-9, msg=n)


def test_flat_clipping_matches_reference() -> None:
    grads = _grads()
    result = clip_and_sum(grads, C)
    _close(result.summed, _reference_flat(grads, C))
    norms = per_sample_norms(grads)
    torch.testing.assert_close(result.norms, norms)
    assert result.clipped_fraction == pytest.approx(float((norms > C).double().mean()))
    assert 0 < result.clipped_fraction < 1
    assert result.num_units == 8
    assert result.sensitivity == C
    assert not result.per_layer


def test_per_layer_clipping_matches_reference() -> None:
    grads = _grads()
    result = clip_and_sum(grads, C, per_layer=True)
    _close(result.summed, _reference_per_layer(grads, C))
    assert result.sensitivity == C == clip_sensitivity(C, per_layer=True)
    torch.testing.assert_close(result.norms, per_sample_norms(grads))


def _clipped_units(grads: dict[str, Tensor], bound: float) -> dict[str, Tensor]:
    factors = clip_factors(per_sample_norms(grads), bound)
    return {n: g * factors.view(-1, *[1] * (g.dim() - 1)) for n, g in grads.items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clipped_norms_never_exceed_c_as_computed(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(1)
    grads = {
        "w": torch.randn(2000, 300, generator=gen).to(dtype) * 10,
        "b": torch.randn(2000, 7, generator=gen).to(dtype),
    }
    for bound in (0.1, 1.0, 3.7):
        norms = per_sample_norms(_clipped_units(grads, bound))
        assert bool((norms <= bound).all()), float(norms.max() - bound)


def test_per_layer_total_stays_within_c() -> None:
    grads = _grads(units=64, dtype=torch.float32, seed=4)
    layer_bound = C / math.sqrt(len(grads))
    total_sq = torch.zeros(64, dtype=torch.float64)
    for g in grads.values():
        layer_norms = g.flatten(1).norm(dim=1)
        clipped = g.flatten(1) * clip_factors(layer_norms, layer_bound).unsqueeze(1)
        assert bool((clipped.norm(dim=1) <= layer_bound).all())
        total_sq += clipped.double().pow(2).sum(1)
    assert bool((total_sq.sqrt() <= C).all())


def test_units_within_bound_are_unchanged() -> None:
    grads = _grads()
    small = per_sample_norms(grads) <= C
    assert 1 < int(small.sum()) < 8
    kept = {n: g[small] for n, g in grads.items()}
    result = clip_and_sum(kept, C)
    for n, g in kept.items():
        assert torch.equal(result.summed[n], g.sum(0)), n
    assert result.clipped_fraction == 0.0
    assert torch.equal(
        clip_factors(per_sample_norms(kept), C), torch.ones(int(small.sum()), dtype=torch.float64)
    )


def test_zero_gradient_unit_is_harmless() -> None:
    zeros = {"w": torch.zeros(3, 4)}
    result = clip_and_sum(zeros, C)
    assert torch.equal(result.summed["w"], torch.zeros(4))
    assert torch.equal(result.norms, torch.zeros(3))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InvalidParameterError, match="max_norm"):
        clip_and_sum(_grads(), 0.0)
    with pytest.raises(InvalidParameterError, match="max_norm"):
        clip_and_sum(_grads(), float("nan"))
    bad = _grads()
    bad["a.bias"][2, 0] = float("nan")
    with pytest.raises(DeniableError, match="not finite"):
        clip_and_sum(bad, C)
    with pytest.raises(DeniableError, match="no per-sample gradients"):
        clip_and_sum({}, C)
