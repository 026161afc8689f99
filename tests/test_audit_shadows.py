"""Shadow-model fleets: vectorised training equals one-at-a-time training; caching; DP shadows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from deniable.audit.shadows import (
    ShadowConfig,
    ShadowDP,
    cache_key,
    draw_membership,
    train_shadows,
)
from deniable.audit.signals import compute_signals, image_queries
from deniable.config import TrainConfig
from deniable.data import ArrayDataset
from deniable.errors import DeniableError, InvalidParameterError


def population(n: int = 96, seed: int = 0, shape: tuple[int, ...] = (12,)) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    return ArrayDataset(
        features=rng.normal(size=(n, *shape)).astype(np.float32),
        labels=rng.integers(0, 4, n),
        num_classes=4,
        name="synthetic",
    )


@pytest.mark.parametrize(
    ("model", "optimizer"), [("mlp", "sgd"), ("logreg", "adam"), ("mlp", "adam")]
)
def test_vectorised_training_equals_training_each_shadow_alone(model: str, optimizer: str) -> None:
    data = population()
    config = ShadowConfig(
        model=model,
        n_shadows=5,
        epochs=2,
        batch_size=16,
        learning_rate=0.05,
        optimizer=optimizer,  # type: ignore[arg-type]
        seed=3,
    )
    together = train_shadows(data, config)
    alone = train_shadows(data, config, vectorise=False)
    np.testing.assert_array_equal(together.membership, alone.membership)
    for name, stacked in together.params.items():
        torch.testing.assert_close(stacked, alone.params[name], atol=1e-5, rtol=0)
    # And training moved the weights (the comparison is not between two initialisations).
    untrained = train_shadows(data, replace(config, epochs=1), vectorise=False)
    assert any(not torch.allclose(untrained.params[k], together.params[k]) for k in together.params)


def test_a_shadow_never_trains_on_its_non_members() -> None:
    data = population()
    config = ShadowConfig(n_shadows=4, epochs=3, batch_size=16, seed=5)
    first = train_shadows(data, config)
    outsider = int(np.flatnonzero(~first.membership[0])[0])
    features = data.features.copy()
    features[outsider] += 100.0
    labels = data.labels.copy()
    labels[outsider] = (labels[outsider] + 1) % 4
    second = train_shadows(replace(data, features=features, labels=labels), config)
    for name, stacked in first.params.items():
        torch.testing.assert_close(stacked[0], second.params[name][0], atol=1e-6, rtol=0)
    changed = [s for s in range(4) if second.membership[s, outsider]]
    assert changed and not torch.allclose(
        first.params["layers.1.weight"][changed[0]], second.params["layers.1.weight"][changed[0]]
    )


def test_membership_is_seeded_bernoulli_or_balanced() -> None:
    config = ShadowConfig(n_shadows=16, seed=7)
    a, b = draw_membership(config, 500), draw_membership(config, 500)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, draw_membership(replace(config, seed=8), 500))
    # 8000 fair coins: mean 1/2, sd 0.0056; |mean − 1/2| < 0.025 (4.5 sd) fails w.p. < 1e-5.
    assert abs(a.mean() - 0.5) < 0.025
    balanced = draw_membership(replace(config, balanced=True), 500)
    assert (balanced.sum(axis=0) == 8).all()


def test_cache_hit_returns_identical_weights_without_training(tmp_path: Path) -> None:
    data = population()
    config = ShadowConfig(n_shadows=3, epochs=2, batch_size=32, seed=1)
    steps: list[tuple[int, int]] = []
    first = train_shadows(
        data, config, cache_dir=tmp_path, progress=lambda i, n: steps.append((i, n))
    )
    assert steps and steps[-1][0] == steps[-1][1] and not first.from_cache
    trained_steps = len(steps)
    second = train_shadows(
        data, config, cache_dir=tmp_path, progress=lambda i, n: steps.append((i, n))
    )
    assert len(steps) == trained_steps  # no training step ran
    assert second.from_cache
    np.testing.assert_array_equal(first.membership, second.membership)
    for name, stacked in first.params.items():
        assert torch.equal(stacked, second.params[name])
    assert len(list(tmp_path.glob("shadows-*.pt"))) == 1
    # Another seed or other data is another key; a corrupt file is a miss, not an error.
    assert cache_key(data, config) != cache_key(data, replace(config, seed=2))
    assert cache_key(data, config) != cache_key(population(seed=1), config)
    path = next(tmp_path.glob("shadows-*.pt"))
    path.write_bytes(b"not a torch file")
    third = train_shadows(data, config, cache_dir=tmp_path)
    assert not third.from_cache
    for name, stacked in first.params.items():
        assert torch.equal(stacked, third.params[name])


def test_shadow_set_signals_match_each_model() -> None:
    data = population(n=40, shape=(1, 4, 4))
    shadows = train_shadows(data, ShadowConfig(model="logreg", n_shadows=3, epochs=1, seed=0))
    x, y = data.to_tensors()
    queries = image_queries(1, flip=False)
    stacked = shadows.signals(x, y, augmentations=queries, batch_size=16)
    assert stacked.scaled_confidence.shape == (3, 40, 9)
    for s in range(3):
        alone = compute_signals(shadows.model(s), x, y, augmentations=queries)
        np.testing.assert_allclose(stacked.scaled_confidence[s], alone.scaled_confidence, atol=1e-5)
    with pytest.raises(InvalidParameterError):
        shadows.model(3)


def test_shadow_set_logits_of_one_channel_images_with_channels_last_strides() -> None:
    # MNIST from load_mnist: (n, 1, 28, 28) with strides (784, 1, 28, 1), both contiguous and
    # channels-last; GroupNorm ("cnn") under vmap used to raise "NYI: querying is_contiguous".
    data = population(n=24, shape=(1, 8, 8))
    shadows = train_shadows(data, ShadowConfig(model="cnn", n_shadows=2, epochs=1, seed=0))
    x, y = data.to_tensors()
    ambiguous = x.clone().as_strided(x.shape, (64, 1, 8, 1))
    assert ambiguous.is_contiguous() and ambiguous.is_contiguous(memory_format=torch.channels_last)
    logits = shadows.logits(ambiguous, augmentations=image_queries(1, flip=False))
    assert logits.shape == (2, 24, 9, 4)
    alone = compute_signals(shadows.model(1), x, y)
    np.testing.assert_allclose(
        shadows.signals(ambiguous, y).scaled_confidence[1], alone.scaled_confidence, atol=1e-5
    )


def test_dp_shadows_train_through_make_private_and_are_seeded() -> None:
    data = population(n=64)
    config = ShadowConfig(
        model="logreg", n_shadows=2, epochs=2, batch_size=8, seed=0, dp=ShadowDP(1.0, 0.5)
    )
    steps: list[tuple[int, int]] = []
    first = train_shadows(data, config, progress=lambda i, n: steps.append((i, n)))
    assert steps[-1][0] == steps[-1][1] > 0
    second = train_shadows(data, config)
    for name, stacked in first.params.items():
        assert torch.equal(stacked, second.params[name])
    plain = train_shadows(data, replace(config, dp=None))
    assert not torch.allclose(first.params["linear.weight"], plain.params["linear.weight"])


def test_config_from_train_config_and_validation() -> None:
    train = TrainConfig.model_validate(
        {
            "noise_multiplier": 1.1,
            "target_epsilon": None,
            "epochs": 3.5,
            "batch_size": 64,
            "learning_rate": 0.3,
        }
    )
    private = ShadowConfig.from_train_config(train, n_shadows=8, noise_multiplier=1.1)
    assert private.dp == ShadowDP(1.1, train.max_grad_norm)
    assert (private.epochs, private.learning_rate, private.batch_size) == (4, 0.3, 64)
    plain = ShadowConfig.from_train_config(train, n_shadows=8, batch_size=32)
    assert plain.dp is None and plain.learning_rate == train.baseline_learning_rate
    assert plain.batch_size == 32
    bad: dict[str, Any]
    for bad in ({"n_shadows": 1}, {"epochs": 0}, {"optimizer": "rmsprop"}, {"momentum": 1.0}):
        with pytest.raises(DeniableError) as info:
            ShadowConfig(**bad)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["dp", "vectorised", "loop"])
def test_shadows_trained_in_worker_processes_equal_the_one_process_set(kind: str) -> None:
    """Five shadows split over two spawned processes: each trains with its own seed, members
    and batches and the whole set's steps per epoch, so DP and loop shadows are bit-identical to
    one process, and vectorised ones equal up to float rounding."""
    data = population(n=64)
    config = ShadowConfig(
        model="logreg",
        n_shadows=5,
        epochs=2,
        batch_size=8,
        seed=1,
        dp=ShadowDP(1.0, 0.5) if kind == "dp" else None,
    )
    vectorise = kind != "loop"
    one = train_shadows(data, config, vectorise=vectorise)
    seen: list[tuple[int, int]] = []
    two = train_shadows(
        data, config, vectorise=vectorise, workers=2, progress=lambda i, n: seen.append((i, n))
    )
    assert seen[-1] == (5, 5) and len(seen) == 2  # one report per finished share
    np.testing.assert_array_equal(one.membership, two.membership)
    for name, stacked in one.params.items():
        if kind == "vectorised":
            torch.testing.assert_close(two.params[name], stacked, atol=1e-5, rtol=0)
        else:
            assert torch.equal(two.params[name], stacked), name


def test_shadows_trained_as_ray_tasks_equal_the_process_backend() -> None:
    """The Ray backend (skipped without Ray) trains the same shares with the same arguments as
    the process backend: three shadows over two workers give bit-identical sets. Vectorised
    shadows are compared with the process backend itself (one process differs from it by float
    rounding); DP and loop shadows with the one-process set, which
    test_shadows_trained_in_worker_processes_equal_the_one_process_set shows bit-identical to
    the process backend (and one Ray start serves all three)."""
    ray = pytest.importorskip("ray", reason="Ray (deniable[ray]) is not installed")
    data = population(n=48)

    def config(kind: str) -> ShadowConfig:
        dp = ShadowDP(1.0, 0.5) if kind == "dp" else None
        return ShadowConfig(model="logreg", n_shadows=3, epochs=2, batch_size=8, seed=2, dp=dp)

    reference = {
        "vectorised": train_shadows(data, config("vectorised"), workers=2),
        "dp": train_shadows(data, config("dp")),
        "loop": train_shadows(data, config("loop"), vectorise=False),
    }
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        for kind, expected in reference.items():
            seen: list[tuple[int, int]] = []
            on_ray = train_shadows(
                data,
                config(kind),
                vectorise=kind != "loop",
                workers=2,
                backend="ray",
                progress=lambda i, n, seen=seen: seen.append((i, n)),
            )
            assert len(seen) == 2 and seen[-1] == (3, 3), kind  # one report per share
            np.testing.assert_array_equal(on_ray.membership, expected.membership)
            for name, stacked in expected.params.items():
                assert torch.equal(on_ray.params[name], stacked), (kind, name)
    finally:
        ray.shutdown()


def test_backend_is_checked_before_any_training(monkeypatch: pytest.MonkeyPatch) -> None:
    data = population(n=16)
    config = ShadowConfig(model="logreg", n_shadows=2, epochs=1)
    with pytest.raises(InvalidParameterError, match="'processes' or 'ray'"):
        train_shadows(data, config, backend="threads")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="workers"):
        train_shadows(data, config, workers=0)
    monkeypatch.setattr("deniable.fleet.importlib.util.find_spec", lambda name: None)
    with pytest.raises(DeniableError) as info:
        train_shadows(data, config, backend="ray")
    assert str(info.value) == "backend 'ray' needs Ray: pip install 'deniable[ray]'"
