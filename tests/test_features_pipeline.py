"""ScatterNet + DP-SGD end to end on 500 MNIST images; the reported ε is the composed one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from deniable import accounting
from deniable.events import ComposedEvent, GaussianEvent, PoissonSampledEvent, SelfComposedEvent
from deniable.features.pipeline import (
    GroupNormalization,
    PrivateNormalization,
    ScatterNetConfig,
    scatter_images,
    scatter_model,
    train_on_scattering,
)

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def mnist_features() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if not MNIST.is_dir():
        pytest.skip(f"MNIST not found at {MNIST}")
    from deniable.data import load_mnist

    split = load_mnist(MNIST)
    train_x = scatter_images(torch.as_tensor(split.train.features[:500]))
    test_x = scatter_images(torch.as_tensor(split.test.features[:500]))
    train_y = torch.as_tensor(split.train.labels[:500])
    test_y = torch.as_tensor(split.test.labels[:500])
    assert train_x.shape == (500, 81, 7, 7)
    return train_x, train_y, test_x, test_y


SMALL = {"batch_size": 250, "epochs": 20.0, "learning_rate": 4.0, "target_epsilon": 3.0}


def test_private_normalisation_is_composed_into_the_reported_epsilon(mnist_features) -> None:
    norm = PrivateNormalization(mean_clip=0.3, square_clip=0.15, noise_multiplier=8.0)
    result = train_on_scattering(
        *mnist_features, ScatterNetConfig(normalization=norm, **SMALL), num_classes=10
    )
    assert result.test_accuracy > 0.5  # chance is 0.1; measured 0.78 (seed 0)
    assert result.steps == math.ceil(20 / (250 / 500)) == 40
    # The total is calibrated to the target and exceeds each part.
    assert 2.99 < result.epsilon <= 3.0 + 1e-9
    assert 0 < result.epsilon_normalization < result.epsilon
    assert result.epsilon_training < result.epsilon
    # Recomputed independently from the events the run performed.
    events = ComposedEvent(
        [
            ComposedEvent([GaussianEvent(8.0 * 0.3, 0.3), GaussianEvent(8.0 * 0.15, 0.15)]),
            SelfComposedEvent(
                PoissonSampledEvent(0.5, GaussianEvent(result.noise_multiplier * 0.1, 0.1)), 40
            ),
        ]
    )
    assert accounting.epsilon(events, 1e-5).epsilon == pytest.approx(result.epsilon, rel=1e-6)
    assert result.normalization["kind"] == "private"


def test_group_normalisation_costs_nothing_extra(mnist_features) -> None:
    result = train_on_scattering(
        *mnist_features,
        ScatterNetConfig(normalization=GroupNormalization(27), **SMALL),
        num_classes=10,
    )
    assert result.epsilon_normalization == 0.0
    assert result.epsilon == result.epsilon_training
    assert 2.99 < result.epsilon <= 3.0 + 1e-9
    assert result.test_accuracy > 0.5
    assert result.to_dict()["normalization"] == {"kind": "group", "num_groups": 27}


def test_cnn_on_scattering_features_has_the_authors_shape() -> None:
    model = scatter_model(81, (7, 7), 10, "cnn")
    assert model(torch.zeros(2, 81, 7, 7)).shape == (2, 10)
    params = sum(p.numel() for p in model.parameters())
    assert params == (81 * 9 * 16 + 16) + (16 * 9 * 32 + 32) + (512 * 32 + 32) + (32 * 10 + 10)


def test_cnn_trains_through_make_private(mnist_features) -> None:
    config = ScatterNetConfig(
        normalization=GroupNormalization(27),
        model="cnn",
        epochs=1.0,
        batch_size=250,
        learning_rate=1.0,
    )
    result = train_on_scattering(*mnist_features, config, num_classes=10)
    assert result.steps == 2
    assert 2.99 < result.epsilon <= 3.0 + 1e-9
    assert 0.0 <= result.test_accuracy <= 1.0


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="model"):
        ScatterNetConfig(model="resnet")
    with pytest.raises(ValueError, match="momentum"):
        ScatterNetConfig(momentum=1.0)
