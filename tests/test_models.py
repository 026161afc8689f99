"""Reference models: shapes on every dataset shape, DP-SGD compatibility, sizes and errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from deniable.errors import DeniableError, InvalidParameterError
from deniable.models import (
    MLP,
    MODELS,
    LogisticRegression,
    SmallCNN,
    TemperedSigmoid,
    TemperedSigmoidCNN,
    build_model,
)

IMAGE_SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (1, 5, 7)]
FLAT_SHAPES = [(104,), (61,), (2, 3)]


def test_names() -> None:
    assert MODELS == (
        "mlp",
        "cnn",
        "tanh-cnn",
        "papernot-cnn",
        "logreg",
        "unit-ball-logreg",
        "papernot-gn-cnn",
        "papernot-ws-gn-cnn",
    )


CASES = [
    (name, shape)
    for name in MODELS
    for shape in IMAGE_SHAPES + ([] if name.endswith("cnn") else FLAT_SHAPES)
    if not name.startswith("papernot") or min(shape[1:]) >= 16  # strided 8×8 kernel: 16×16
]


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_forward_shapes(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_model(name, shape, 10)
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_no_batchnorm_and_no_in_place_activations(name: str) -> None:
    model = build_model(name, (1, 28, 28), 10)
    for module in model.modules():
        assert not isinstance(module, _BatchNorm)
        assert not getattr(module, "inplace", False)
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert (len(norms) == 2) == (name in ("cnn", "papernot-gn-cnn", "papernot-ws-gn-cnn"))


@pytest.mark.parametrize("name", [m for m in MODELS if m.endswith("cnn") and m != "cnn"])
def test_conv_nets_run_channels_last(name: str) -> None:
    """Kernels and activations are NHWC (faster on CPU), whatever layout the input has; the
    small GroupNorm net ("cnn") stays row-major (its GroupNorm is slower on NHWC)."""
    model = build_model(name, (3, 16, 16), 10)
    kernels = [p for p in model.parameters() if p.dim() == 4]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    assert not all(p.is_contiguous() for p in kernels)
    x = torch.randn(2, 3, 16, 16)
    first = model.features[0](x)
    assert first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous()
    reloaded = build_model(name, (3, 16, 16), 10)
    reloaded.load_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
    torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=0)
    assert all(p.is_contiguous() for p in build_model("cnn", (3, 16, 16), 10).parameters())


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_architecture() -> None:
    conv = (1 * 16 * 9 + 16) + (16 * 32 * 9 + 32)
    norms = 2 * 16 + 2 * 32
    head = (32 * 7 * 7 * 32 + 32) + (32 * 10 + 10)
    assert _count(SmallCNN(1, 10, 28)) == conv + norms + head
    assert _count(TemperedSigmoidCNN(1, 10, 28)) == conv + head
    assert _count(SmallCNN(1, 10, 8)) == conv + norms + (32 * 2 * 2 * 32 + 32) + 330
    assert _count(build_model("logreg", (1, 28, 28), 10)) == 784 * 10 + 10
    assert _count(build_model("mlp", (104,), 2)) == 104 * 128 + 128 + 128 * 2 + 2
    assert _count(MLP(10, 3, hidden=(5, 4), activation="tanh")) == 55 + 24 + 15
    assert 10_000 < _count(build_model("cnn", (1, 28, 28), 10)) < 100_000


def test_tempered_sigmoid_defaults_to_tanh_and_follows_its_formula() -> None:
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    assert torch.allclose(TemperedSigmoid()(x), torch.tanh(x), atol=1e-12)
    phi = TemperedSigmoid(scale=1.5, temperature=0.5, offset=0.25)
    assert torch.allclose(phi(x), 1.5 / (1 + torch.exp(-0.5 * x)) - 0.25, atol=1e-12)
    acts = [
        m
        for m in TemperedSigmoidCNN(1, 10, 8, temperature=3.0).modules()
        if isinstance(m, TemperedSigmoid)
    ]
    assert len(acts) == 3 and all(a.temperature == 3.0 for a in acts)


@pytest.mark.parametrize("name", MODELS)
def test_per_sample_gradients_with_torch_func_match_a_loop(name: str) -> None:
    torch.manual_seed(1)
    side = 16 if name.startswith("papernot") else 8
    model = build_model(name, (1, side, side), 3)
    x, y = torch.randn(3, 1, side, side), torch.tensor([0, 2, 1])
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, p, (xi.unsqueeze(0),))
        return nn.functional.cross_entropy(logits, yi.unsqueeze(0))

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    for i in range(3):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for key, param in model.named_parameters():
            assert param.grad is not None
            assert torch.allclose(per_sample[key][i], param.grad, atol=1e-6)


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (
            lambda: build_model("resnet", (1, 8, 8), 10),
            ["model", "mlp, cnn, tanh-cnn, papernot-cnn, logreg"],
        ),
        (lambda: build_model("cnn", (104,), 2), ["feature_shape", "(channels, height, width)"]),
        (lambda: build_model("mlp", (0, 3), 2), ["feature_shape"]),
        (lambda: build_model("mlp", (4,), 1), ["num_classes", ">= 2"]),
        (lambda: SmallCNN(1, 10, 3), ["image_size", ">= 4"]),
        (lambda: SmallCNN(0, 10, 8), ["in_channels"]),
        (lambda: MLP(4, 2, hidden=(0,)), ["hidden"]),
        (lambda: MLP(4, 2, activation="gelu"), ["activation", "relu, tanh"]),
        (lambda: LogisticRegression(0, 2), ["in_features"]),
        (lambda: TemperedSigmoid(temperature=0.0), ["temperature"]),
    ],
)
def test_bad_parameters_raise_one_line_errors(build: object, words: list[str]) -> None:
    with pytest.raises(InvalidParameterError) as exc:
        build()  # type: ignore[operator]
    text = str(exc.value)
    assert isinstance(exc.value, DeniableError) and "\n" not in text
    for word in words:
        assert word in text, (word, text)


def test_models_flatten_so_logreg_and_mlp_accept_images() -> None:
    model = build_model("logreg", (1, 8, 8), 10)
    assert isinstance(model, LogisticRegression)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert math.prod((1, 8, 8)) == model.linear.in_features


def test_papernot_cnn_shapes_and_parameter_count() -> None:
    import torch

    model = build_model("papernot-cnn", (1, 28, 28), 10)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    # Conv 1→16 (8×8) + conv 16→32 (4×4) + Linear 512→32 + Linear 32→10, with biases.
    expected = (16 * 64 + 16) + (32 * 16 * 16 + 32) + (512 * 32 + 32) + (32 * 10 + 10)
    assert sum(p.numel() for p in model.parameters()) == expected
    with pytest.raises(InvalidParameterError):
        build_model("papernot-cnn", (1, 8, 8), 10)


def test_unit_ball_linear_projects_inputs_and_has_no_bias() -> None:
    """Logits of x/max(1, ‖x‖): scaling an input beyond the ball changes nothing; binary models
    keep one weight vector with logits [0, wᵀx]."""
    import torch

    from deniable.models.linear import UnitBallLinear

    torch.manual_seed(0)
    binary = UnitBallLinear(4, 2)
    with torch.no_grad():
        binary.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 0.0]]))
    x = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.1, 0.2, 0.0, 0.0]])
    out = binary(x)
    assert out.shape == (2, 2) and torch.all(out[:, 0] == 0)
    assert torch.allclose(out[:, 1], torch.tensor([(3 - 8) / 5, 0.1 - 0.4]))
    assert torch.allclose(binary(10 * x[:1]), out[:1])
    multi = UnitBallLinear(4, 3)
    assert multi.weight.shape == (3, 4) and torch.all(multi(x) == 0)  # zero-initialised
