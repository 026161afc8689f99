"""Model validation names every unsafe module and why; repair fixes what it can."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from deniable.errors import DeniableError, UnsupportedModuleError
from deniable.train.validate import find_problems, repair, repair_model, validate_model


def _cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 48, 3, padding=1), nn.BatchNorm2d(48), nn.ReLU()),
        nn.Flatten(),
        nn.Linear(48 * 4 * 4, 10),
        nn.BatchNorm1d(10),
    )


def test_batchnorm_is_rejected_with_path_and_reason() -> None:
    with pytest.raises(UnsupportedModuleError) as info:
        validate_model(_cnn())
    message = str(info.value)
    assert "`0.1` (BatchNorm2d)" in message
    assert "`3` (BatchNorm1d)" in message
    assert "mixes the examples" in message
    assert "GroupNorm" in message and "repair_model" in message
    assert "\n" not in message


def test_repair_replaces_batchnorm_and_then_validates() -> None:
    torch.manual_seed(0)
    model = _cnn()
    with torch.no_grad():
        model[0][1].weight.uniform_(0.5, 2.0)
    result = repair(model)
    validate_model(result.model)
    norm = result.model[0][1]
    assert isinstance(norm, nn.GroupNorm)
    assert (norm.num_groups, norm.num_channels) == (16, 48)  # gcd(48, 32)
    assert torch.equal(norm.weight, model[0][1].weight)  # affine scale kept
    head = result.model[3]
    assert isinstance(head, nn.GroupNorm) and (head.num_groups, head.num_channels) == (2, 10)
    assert len(result.changes) == 2
    assert "`0.1`: BatchNorm2d(48) → GroupNorm(16 groups, 48 channels)" in result.changes
    assert isinstance(model[0][1], nn.BatchNorm2d)  # the original is untouched
    out = result.model(torch.randn(4, 3, 4, 4))
    assert out.shape == (4, 10)


def test_in_place_activation_is_named_and_repaired() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Dropout(0.1, inplace=True))
    with pytest.raises(UnsupportedModuleError) as info:
        validate_model(model)
    message = str(info.value)
    assert "`1` (ReLU): inplace=True" in message
    assert "`2` (Dropout): inplace=True" in message
    assert "torch.func" in message
    fixed = repair_model(model)
    validate_model(fixed)
    assert fixed[1].inplace is False and model[1].inplace is True


def test_instance_norm_running_stats_are_rejected_and_dropped() -> None:
    model = nn.Sequential(
        nn.Conv1d(2, 4, 1), nn.InstanceNorm1d(4, affine=True, track_running_stats=True)
    )
    with pytest.raises(
        UnsupportedModuleError, match=r"`1` \(InstanceNorm1d\): track_running_stats"
    ):
        validate_model(model)
    fixed = repair(model)
    validate_model(fixed.model)
    assert not fixed.model[1].track_running_stats
    assert isinstance(fixed.model[1], nn.InstanceNorm1d)
    validate_model(nn.InstanceNorm2d(3, affine=True))


def test_embedding_flags_that_mix_examples() -> None:
    model = nn.Embedding(5, 3, scale_grad_by_freq=True)
    with pytest.raises(UnsupportedModuleError, match="scale_grad_by_freq"):
        validate_model(model)
    validate_model(repair_model(model))
    with pytest.raises(UnsupportedModuleError, match="sparse"):
        validate_model(nn.Embedding(5, 3, sparse=True))


class Scaler(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(3))
        self.proj = nn.Linear(3, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x * self.gain)


def test_unverified_trainable_module_is_named_with_an_escape() -> None:
    model = nn.Sequential(nn.Linear(3, 3), Scaler())
    with pytest.raises(UnsupportedModuleError) as info:
        validate_model(model)
    message = str(info.value)
    assert "`1` (Scaler): trainable parameters (gain)" in message
    assert "allow_unverified=True" in message
    assert "1.proj" not in message
    validate_model(model, allow_unverified=True)
    model[1].gain.requires_grad_(False)
    validate_model(model)  # frozen parameters are not trained, so nothing to verify


def test_subclass_overriding_forward_is_unverified() -> None:
    class Centered(nn.Linear):
        def forward(self, x: Tensor) -> Tensor:
            return super().forward(x - x.mean(0))  # mixes examples

    class Renamed(nn.Linear):
        pass

    with pytest.raises(UnsupportedModuleError, match="Centered"):
        validate_model(Centered(3, 2))
    validate_model(Renamed(3, 2))


def test_every_problem_is_reported_at_once() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.ReLU(inplace=True), Scaler())
    problems = find_problems(model)
    assert [p.path for p in problems] == ["1", "2", "3"]
    assert find_problems(repair_model(model), allow_unverified=True) == []


def test_safe_models_pass() -> None:
    validate_model(
        nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)
        )
    )
    validate_model(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True))
    validate_model(nn.LSTM(3, 4))


def test_root_batchnorm_and_lazy_batchnorm() -> None:
    fixed = repair(nn.BatchNorm1d(6, affine=False))
    assert isinstance(fixed.model, nn.GroupNorm) and not fixed.model.affine
    assert fixed.changes == ("`<root>`: BatchNorm1d(6) → GroupNorm(2 groups, 6 channels)",)
    with pytest.raises(DeniableError, match="forward pass first"):
        repair(nn.Sequential(nn.LazyBatchNorm1d()))


def test_repair_keeps_dtype_and_mode() -> None:
    model = nn.Sequential(nn.BatchNorm2d(8)).double().eval()
    fixed = repair_model(model)
    assert fixed[0].weight.dtype == torch.float64
    assert not fixed[0].training


def test_repair_swaps_attention_for_the_ghost_clippable_one() -> None:
    from deniable.grad import check_ghost_supported
    from deniable.models.attention import DPMultiheadAttention

    torch.manual_seed(1)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False))
    result = repair(model)
    assert "`0.layers.1.self_attn`: MultiheadAttention → DPMultiheadAttention" in result.changes
    assert isinstance(result.model[0].layers[0].self_attn, DPMultiheadAttention)
    check_ghost_supported(result.model)
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(result.model(x), model(x))
