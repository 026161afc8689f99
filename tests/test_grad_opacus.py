"""Cross-check per-sample gradients against Opacus's GradSampleModule (test-only dependency)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from deniable.grad import clip_and_sum, ghost_norms, per_sample_gradients, per_sample_norms

opacus = pytest.importorskip("opacus")


def ce_sum(outputs: Tensor, targets: Tensor) -> Tensor:
    return nnf.cross_entropy(outputs, targets, reduction="sum")


def _models() -> list[tuple[str, nn.Module, Tensor]]:
    torch.manual_seed(0)
    mlp = nn.Sequential(
        nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)
    )
    cnn = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.GroupNorm(4, 8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 4),
    )
    embed = nn.Sequential(nn.Embedding(20, 8), nn.LayerNorm(8), nn.Flatten(), nn.Linear(40, 4))
    return [
        ("mlp", mlp, torch.randn(12, 10)),
        ("cnn", cnn, torch.randn(12, 1, 8, 8)),
        ("embedding", embed, torch.randint(0, 20, (12, 5))),
    ]


def _opacus_grads(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    from opacus import GradSampleModule

    wrapped = GradSampleModule(model, loss_reduction="sum")
    ce_sum(wrapped(x), y).backward()
    out = {}
    for name, p in model.named_parameters():
        sample = getattr(p, "grad_sample", None)
        assert sample is not None, name
        out[name] = sample.detach().clone()
    wrapped._close()
    return out


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
@pytest.mark.parametrize("index", [0, 1, 2], ids=["mlp", "cnn", "embedding"])
def test_per_sample_gradients_match_opacus(index: int) -> None:
    _, model, x = _models()[index]
    y = torch.randint(0, 4, (x.shape[0],))
    ours, _ = per_sample_gradients(model, ce_sum, x, y)
    theirs = _opacus_grads(model, x, y)
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=1e-4, msg=name)
    torch.testing.assert_close(ghost_norms(model, ce_sum, x, y).norms, per_sample_norms(theirs))
    ours_clipped, theirs_clipped = clip_and_sum(ours, 0.1), clip_and_sum(theirs, 0.1)
    assert ours_clipped.clipped_fraction == theirs_clipped.clipped_fraction > 0
    for name in ours:
        torch.testing.assert_close(
            ours_clipped.summed[name], theirs_clipped.summed[name], atol=1e-5, rtol=1e-4
        )
