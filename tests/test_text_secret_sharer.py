"""The secret sharer: canary formats, ranks and exposure against brute force, skew-normal
extrapolation against exact enumeration, extraction, and memorisation by a trained model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deniable.errors import DeniableError
from deniable.text import (
    CanaryFormat,
    SecretSharerSetup,
    Vocabulary,
    beam_extract,
    build_char_model,
    canary_windows,
    exact_exposure,
    greedy_extract,
    insert_windows,
    log_perplexities,
    measure_exposure,
    rank_of,
    read_text,
    run_secret_sharer,
    sequence_loss,
    skew_normal_exposure,
    split_by_position,
    windows,
)
from deniable.text.exposure import exposure_from_rank
from deniable.text.secret_sharer import candidate_log_perplexities

TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"


@pytest.fixture(scope="module")
def shakespeare() -> str:
    if not TEXT.exists():
        pytest.skip(f"{TEXT} is absent")
    return read_text(TEXT, max_chars=20_000)


# --- canary formats ------------------------------------------------------------------------


def test_canary_format_parts_and_indexing() -> None:
    fmt = CanaryFormat("my pin is ____ ok")
    assert (fmt.prefix, fmt.width, fmt.suffix) == ("my pin is ", 4, " ok")
    assert fmt.space_size == 10_000 and fmt.log2_space == pytest.approx(math.log2(10_000))
    assert fmt.fill("0123") == "my pin is 0123 ok"
    assert [fmt.candidate(i) for i in (0, 9, 10, 9999)] == ["0000", "0009", "0010", "9999"]
    assert all(fmt.index_of(fmt.candidate(i)) == i for i in range(0, 10_000, 137))
    hex_fmt = CanaryFormat("key=__", alphabet="0123456789abcdef")
    assert hex_fmt.space_size == 256 and hex_fmt.candidate(255) == "ff"
    secret = fmt.random_secret(3)
    assert fmt.random_secret(3) == secret and fmt.check_secret(secret) == secret


@pytest.mark.parametrize(
    ("template", "alphabet", "message"),
    [
        ("my pin is 1234", "0123456789", "exactly one blank"),
        ("pin __ and __", "0123456789", "exactly one blank"),
        ("", "0123456789", "exactly one blank"),
        ("my pin is ____", "", "randomness space is empty"),
        ("my pin is ____", "0012", "distinct"),
        ("my pin is ____", "0_1", "distinct"),
        ("my pin is ____", "7", "one secret"),
    ],
)
def test_bad_canary_formats_raise_one_line(template: str, alphabet: str, message: str) -> None:
    with pytest.raises(DeniableError, match=message) as info:
        CanaryFormat(template, alphabet)
    assert "\n" not in str(info.value)


def test_bad_secrets_and_vocabulary_are_named() -> None:
    fmt = CanaryFormat("pin ___")
    for secret in ("12", "1234", "12a"):
        with pytest.raises(DeniableError, match="secret must be 3 characters"):
            fmt.fill(secret)
    with pytest.raises(DeniableError, match="not in the vocabulary"):
        fmt.check_vocabulary(Vocabulary.from_text("pin 0123"))
    vocab = Vocabulary.from_text("pin ", fmt.alphabet)
    ids = fmt.encode_candidates(vocab, np.array([0, 42, 999]))
    assert [vocab.decode(row) for row in ids] == ["pin 000", "pin 042", "pin 999"]


def test_canary_windows_and_their_privacy_unit() -> None:
    fmt = CanaryFormat("pin ___")
    vocab = Vocabulary.from_text("abcdefgh ", fmt.prefix, fmt.alphabet)
    text = vocab.encode("abcdefgh" * 10)
    base = windows(text, 10)
    extra = canary_windows(fmt, "042", vocab, text, repeats=3, context=10, seed=0)
    assert len(extra) == 3
    for row_in, row_out in zip(extra.inputs, extra.targets, strict=True):
        assert vocab.decode(row_in).startswith("pin 042")
        assert vocab.decode(row_out).startswith("in 042")
    example = insert_windows(base, extra, unit="example")
    user = insert_windows(base, extra, unit="user")
    n = len(base)
    assert example.keys is not None and user.keys is not None
    assert len(np.unique(example.keys)) == n + 3
    assert len(np.unique(user.keys)) == n + 1 and set(user.keys[n:]) == {n}
    with pytest.raises(DeniableError, match="canary length"):
        canary_windows(fmt, "042", vocab, text, repeats=1, context=6, seed=0)
    with pytest.raises(DeniableError, match="unit"):
        insert_windows(base, extra, unit="group")  # type: ignore[arg-type]


# --- ranks and exposure from scores ---------------------------------------------------------


def test_rank_matches_a_brute_force_sort() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.normal(size=rng.integers(2, 300))
        i = int(rng.integers(scores.size))
        brute = sorted(range(scores.size), key=lambda j: scores[j]).index(i) + 1
        assert rank_of(scores[i], np.delete(scores, i)) == brute
        result = exact_exposure(scores[i], np.delete(scores, i))
        assert result.rank == brute and result.space_size == scores.size
        assert result.exposure == pytest.approx(math.log2(scores.size) - math.log2(brute))


def test_ties_count_half() -> None:
    assert rank_of(1.0, np.ones(9)) == 5.5
    assert exact_exposure(1.0, np.ones(9)).exposure == pytest.approx(math.log2(10 / 5.5))
    assert rank_of(1.0, np.array([0.0, 1.0, 2.0])) == 2.5
    with pytest.raises(DeniableError, match="finite"):
        rank_of(float("nan"), np.ones(3))
    with pytest.raises(DeniableError, match="rank"):
        exposure_from_rank(0.5, 10)


def test_skew_normal_recovers_a_known_skew_normal_tail() -> None:
    """Scores drawn from a skew-normal: the fitted CDF matches the true one (α = 4)."""
    from scipy import stats

    sample = stats.skewnorm.rvs(4.0, loc=20, scale=3, size=20_000, random_state=1)
    for x in (19.0, 20.0, 21.0):
        expected = -stats.skewnorm.logcdf(x, 4.0, loc=20, scale=3) / math.log(2)
        got = skew_normal_exposure(x, sample, 10**9)
        assert got.method == "skew-normal"
        assert got.exposure == pytest.approx(expected, abs=0.25)
    capped = skew_normal_exposure(0.0, sample, 1000)
    assert capped.exposure == pytest.approx(math.log2(1000)) and capped.rank == 1.0


# --- models: log-perplexity, exact exposure, extraction -------------------------------------


def _brute_log_perplexity(model: nn.Module, ids: torch.Tensor) -> float:
    """−Σ log₂ Pr(x_i | x_<i), one forward pass per character (no batching, no gathering)."""
    total = 0.0
    model.eval()
    with torch.no_grad():
        for i in range(1, ids.numel()):
            probs = torch.softmax(model(ids[None, :i])[0, -1].double(), dim=0)
            total -= math.log2(float(probs[int(ids[i])]))
    return total


@pytest.fixture(scope="module")
def small_space() -> tuple[nn.Module, Vocabulary, CanaryFormat]:
    fmt = CanaryFormat("pin __!")
    vocab = Vocabulary.from_text("the quick brown fox\n", fmt.prefix + fmt.suffix, fmt.alphabet)
    torch.manual_seed(3)
    return build_char_model("lstm", vocab.size, 16, width=8), vocab, fmt


def test_log_perplexities_match_a_per_character_loop(
    small_space: tuple[nn.Module, Vocabulary, CanaryFormat],
) -> None:
    model, vocab, fmt = small_space
    ids = fmt.encode_candidates(vocab, np.array([0, 17, 99]))
    batched = log_perplexities(model, ids, batch_size=2)
    brute = [_brute_log_perplexity(model, row) for row in ids]
    np.testing.assert_allclose(batched, brute, rtol=1e-5)


def test_exact_exposure_and_exhaustive_beam_match_brute_force(
    small_space: tuple[nn.Module, Vocabulary, CanaryFormat],
) -> None:
    model, vocab, fmt = small_space
    strings = [vocab.encode(fmt.fill(fmt.candidate(i))) for i in range(fmt.space_size)]
    brute = np.array([_brute_log_perplexity(model, torch.as_tensor(s)) for s in strings])
    order = sorted(range(fmt.space_size), key=lambda j: brute[j])
    for secret_index in (order[0], order[7], order[60]):
        secret = fmt.candidate(secret_index)
        rank = order.index(secret_index) + 1
        result = measure_exposure(model, vocab, fmt, secret, batch_size=33)
        assert result.method == "exact" and result.rank == rank
        assert result.exposure == pytest.approx(math.log2(100) - math.log2(rank))
        beam = beam_extract(model, vocab, fmt, secret, beam_width=fmt.space_size)
        assert beam.found and beam.rank == rank
        assert list(beam.candidates) == [fmt.candidate(j) for j in order]
    greedy = greedy_extract(model, vocab, fmt, fmt.candidate(order[0]))
    ids = torch.as_tensor(vocab.encode(fmt.prefix))
    digits = torch.as_tensor(vocab.encode(fmt.alphabet))
    expected = ""
    for _ in range(fmt.width):
        with torch.no_grad():
            logits = model(ids[None])[0, -1]
        best = int(digits[logits[digits].argmax()])
        expected += vocab.chars[best]
        ids = torch.cat([ids, torch.tensor([best])])
    assert greedy.candidates == (expected,)
    assert greedy.found == (expected == fmt.candidate(order[0]))


def _train(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, steps: int) -> None:
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        index = torch.randint(len(inputs), (32,), generator=generator)
        loss = sequence_loss(model(inputs[index]), targets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_skew_normal_estimate_is_within_one_bit_of_exact(shakespeare: str, name: str) -> None:
    """|R| = 10³ and 20 000 sampled candidates: for secrets of rank 10 to 700 (exposure 6.6 to
    0.5 bits) the extrapolation is within 1 bit of enumeration. At rank 1 to 3 the exact
    exposure is the discrete top of the scale (9.97, 8.97, 8.38 bits) and the fitted tail lies
    at or below it: 9.97 / 7.77 / 7.73 (LSTM) and 8.07 / 7.58 / 7.34 (transformer) with this
    seed, i.e. the extrapolation underestimates the most exposed secrets by up to 1.9 bits, the
    extreme-tail error Carlini et al. note."""
    fmt = CanaryFormat("my pin is ___")
    vocab = Vocabulary.from_text(shakespeare, fmt.prefix, fmt.alphabet)
    data = windows(vocab.encode(shakespeare), 32)
    torch.manual_seed(0)
    model = build_char_model(name, vocab.size, 32, width=32)
    _train(model, data.inputs, data.targets, steps=50)
    scores = candidate_log_perplexities(model, vocab, fmt, np.arange(fmt.space_size))
    order = np.argsort(scores)
    # The sample estimated_exposure draws (seed 0), scored once from the enumeration.
    sample = scores[np.random.default_rng(0).integers(0, fmt.space_size, size=20_000)]
    for rank in (1, 2, 3, 10, 30, 100, 300, 700):
        index = int(order[rank - 1])
        exact = exact_exposure(scores[index], np.delete(scores, index))
        estimate = skew_normal_exposure(scores[index], sample, fmt.space_size)
        assert exact.rank == rank
        if rank <= 3:
            assert 0.0 <= exact.exposure - estimate.exposure < 2.0, (rank, exact, estimate)
        else:
            assert abs(estimate.exposure - exact.exposure) < 1.0, (rank, exact, estimate)
    secret = fmt.candidate(int(order[29]))
    exact = measure_exposure(model, vocab, fmt, secret)
    estimate = measure_exposure(model, vocab, fmt, secret, exact_limit=999, samples=20_000)
    assert exact.method == "exact" and exact.rank == 30
    assert estimate.method == "skew-normal" and estimate.candidates_scored == 20_000
    expected = skew_normal_exposure(scores[int(order[29])], sample, fmt.space_size)
    assert estimate.exposure == pytest.approx(expected.exposure, abs=1e-4)


def test_inserted_secret_is_memorised_and_extracted(shakespeare: str) -> None:
    """Non-private training with the secret inserted 32 times against the same training without
    it: exposure near log₂|R| (> 5 bits above), and greedy and beam search extract it."""
    fmt = CanaryFormat("my pin is ____")
    setup = SecretSharerSetup(
        text=shakespeare,
        canary=fmt,
        secret=fmt.random_secret(1),
        model="lstm",
        context=32,
        width=32,
        steps=250,
        batch_size=32,
    )
    without = run_secret_sharer(setup, repeats=0, noise_multiplier=0.0)
    inserted = run_secret_sharer(setup, repeats=32, noise_multiplier=0.0)
    assert without.unit == inserted.unit == "none" and inserted.epsilon is None
    assert inserted.exposure > without.exposure + 5, (without, inserted)
    assert inserted.exposure > 0.9 * inserted.max_exposure
    assert inserted.greedy_extracted and inserted.beam_extracted and inserted.beam_rank == 1
    assert not without.greedy_extracted and not without.beam_extracted


def test_vocabulary_used_for_scoring_must_hold_the_candidates(shakespeare: str) -> None:
    fmt = CanaryFormat("my pin is ____")
    vocab = Vocabulary.from_text(shakespeare)  # only the digit '3' occurs in the text
    train, _ = split_by_position(vocab.encode(shakespeare), 0.1)
    model = build_char_model("lstm", vocab.size, 32, width=8)
    assert len(train) > 0
    with pytest.raises(DeniableError, match="not in the vocabulary"):
        measure_exposure(model, vocab, fmt, "3333")
