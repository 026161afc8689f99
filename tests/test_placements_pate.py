"""PATE: unit-keyed partitions, the aggregators' behaviour, and the whole pipeline on digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from deniable import accounting
from deniable.accounting import rdp
from deniable.data import ArrayDataset, load_digits
from deniable.errors import InvalidParameterError
from deniable.mechanisms import RandomSource
from deniable.placements import Fit
from deniable.placements.pate import (
    UNANSWERED,
    ConfidentGNMax,
    GNMax,
    LNMax,
    teacher_assignment,
    train_pate,
)
from deniable.train.trainer import accuracy


def test_partition_is_a_function_of_the_unit_key_only() -> None:
    keys = np.arange(2000, dtype=np.int64) * 7 + 3
    full = teacher_assignment(keys, 10, seed=4)
    # removing units never moves the others (add/remove changes one partition only)
    keep = np.random.default_rng(0).random(2000) < 0.5
    np.testing.assert_array_equal(teacher_assignment(keys[keep], 10, seed=4), full[keep])
    # balanced: each count is Binomial(2000, 1/10), 200 ± 4.5 sd; the bound fails w.p. < 1e-5
    counts = np.bincount(full, minlength=10)
    assert counts.min() > 200 - 4.5 * math.sqrt(180) and counts.max() < 200 + 4.5 * math.sqrt(180)
    assert not np.array_equal(teacher_assignment(keys, 10, seed=5), full)


def test_examples_of_one_user_go_to_one_teacher() -> None:
    user = np.repeat(np.arange(50, dtype=np.int64), 4)
    assignment = teacher_assignment(user, 7, seed=0)
    for u in range(50):
        assert len(set(assignment[user == u])) == 1


def test_aggregators_return_the_plurality_when_noise_is_tiny() -> None:
    rng = np.random.default_rng(1)
    votes = rng.multinomial(30, rng.dirichlet(np.ones(5), size=1)[0], size=200)
    unique_top = np.sort(votes, axis=1)[:, -1] > np.sort(votes, axis=1)[:, -2]
    plurality = np.argmax(votes, axis=1)
    for agg in (
        GNMax(1e-3),
        LNMax(1e-3),
        ConfidentGNMax(threshold=0, sigma_threshold=1e-3, sigma=1e-3),
    ):
        out = agg.aggregate(votes, RandomSource(2))
        assert out.answered.all()
        np.testing.assert_array_equal(out.labels[unique_top], plurality[unique_top])


def test_confident_gnmax_answered_fraction_follows_the_threshold() -> None:
    rng = np.random.default_rng(3)
    votes = np.stack([rng.multinomial(50, rng.dirichlet(np.ones(10) * 0.3)) for _ in range(2000)])
    sigma1 = 5.0
    fractions = []
    for threshold in (15, 30, 45):
        out = ConfidentGNMax(threshold=threshold, sigma_threshold=sigma1, sigma=2.0).aggregate(
            votes, RandomSource(threshold)
        )
        expected = stats.norm.sf((threshold - votes.max(axis=1)) / sigma1)
        # answered count is a sum of independent Bernoullis: 4.5 sd fails w.p. < 1e-5
        sd = math.sqrt(np.sum(expected * (1 - expected)))
        assert abs(out.answered_count - expected.sum()) < 4.5 * sd
        assert np.all(out.labels[~out.answered] == UNANSWERED)
        fractions.append(out.answered_count / len(votes))
    assert fractions[0] > fractions[1] > fractions[2]


def test_confident_gnmax_stops_after_max_answered() -> None:
    votes = np.tile([40, 5, 5], (100, 1))
    agg = ConfidentGNMax(threshold=30, sigma_threshold=1.0, sigma=1.0, max_answered=10)
    out = agg.aggregate(votes, RandomSource(0))
    assert out.answered_count == 10
    assert out.checked.sum() == 10 and not out.checked[10:].any()
    assert out.event == agg.run_event(100, 3)
    ref = accounting.epsilon(agg.run_event(100, 3), 1e-5, accountant="rdp").epsilon
    assert out.epsilon(1e-5, accountant="rdp").epsilon == ref


def test_aggregators_refuse_bad_votes() -> None:
    with pytest.raises(InvalidParameterError):
        GNMax(1.0).aggregate(np.array([[1.5, 2.0]]))
    with pytest.raises(InvalidParameterError):
        GNMax(-1.0)


FAST = Fit(epochs=15, learning_rate=0.2, batch_size=256)  # full-batch Adam: small partitions


def _digits_private_public() -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
    split = load_digits(seed=0, test_fraction=0.4)
    order = np.random.default_rng(0).permutation(len(split.test))
    half = len(order) // 2
    public = split.test.subset(np.sort(order[:half]))
    held_out = split.test.subset(np.sort(order[half:]))
    return split.train, public, held_out


def test_pate_end_to_end_on_digits() -> None:
    private, public, held_out = _digits_private_public()
    done: list[int] = []
    result = train_pate(
        private,
        public.features,
        num_teachers=20,
        aggregator=GNMax(sigma=4.0),
        teacher_fit=FAST,
        student_fit=Fit(epochs=30, learning_rate=0.2, batch_size=256),
        rng=RandomSource(1),
        progress=lambda i, n: done.append(i),
    )
    assert done == list(range(1, 21))
    assert result.teachers.partition_sizes.sum() == len(private)
    student_accuracy = accuracy(result.student, held_out)
    assert student_accuracy > 0.6  # chance is 0.1
    claim = result.epsilon(1e-5, accountant="rdp")
    assert claim.guarantee == "central-dp" and claim.unit.startswith("example")
    # the claim is the accountant's, on len(public) = 359 GNMax queries at α/σ² each
    queries = len(public)
    orders = np.array(rdp.DEFAULT_ORDERS)
    closed = rdp.rdp_to_epsilon(orders, queries * orders / 16, 1e-5)[0]
    assert claim.epsilon == pytest.approx(closed, rel=1e-12)
    assert result.epsilon(1e-5).epsilon <= claim.epsilon  # pld is tighter than rdp
    dependent = result.data_dependent_rdp().epsilon(1e-5)
    assert dependent.epsilon <= claim.epsilon
    assert dependent.details["publishable"] == "no"


def test_pate_with_user_keys_and_confident_gnmax() -> None:
    private, public, held_out = _digits_private_public()
    users = ArrayDataset(
        features=private.features,
        labels=private.labels,
        num_classes=10,
        name="digits-users",
        keys=np.arange(len(private), dtype=np.int64) // 3,
    )
    result = train_pate(
        users,
        public.features,
        num_teachers=10,
        aggregator=ConfidentGNMax(threshold=7, sigma_threshold=1.5, sigma=2.0),
        teacher_fit=FAST,
        student_fit=Fit(epochs=30, learning_rate=0.2, batch_size=256),
        rng=RandomSource(2),
    )
    assert result.epsilon(1e-5).unit.startswith("user")
    ans = result.aggregation.answered
    assert 0 < ans.sum() < len(public)
    # answered (confident) queries are labelled more accurately than the teachers' average
    label_acc = float(np.mean(result.aggregation.labels[ans] == public.labels[ans]))
    assert label_acc > 0.85
    assert accuracy(result.student, held_out) > 0.6
    dependent = result.data_dependent_rdp()
    assert np.all(dependent.rdp <= dependent.data_independent_rdp * (1 + 1e-12))


def test_teachers_fitted_in_worker_processes_equal_the_one_process_ensemble() -> None:
    """Five teachers over two spawned processes: each depends only on its partition and seed,
    so the weights are bit-identical; progress counts teachers as each share finishes."""
    from deniable.placements.pate import train_teachers

    data = load_digits(seed=0).train
    fit = Fit(model="logreg", epochs=3)
    one = train_teachers(data, num_teachers=5, fit=fit)
    seen: list[tuple[int, int]] = []
    two = train_teachers(
        data, num_teachers=5, fit=fit, workers=2, progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (5, 5)
    np.testing.assert_array_equal(one.assignment, two.assignment)
    for a, b in zip(one.models, two.models, strict=True):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(x, y), name
