"""The secret sharer on a character model: log-perplexities, exposure, and extraction.

Carlini, Liu, Erlingsson, Kos & Song 2019, "The Secret Sharer: Evaluating and Testing
Unintended Memorization in Neural Networks". The log-perplexity of a string x₁…x_n is

    Px(x) = −Σ_{i=2..n} log₂ Pr(x_i | x₁…x_{i−1}),

(the first character has no context and is the same for every candidate, so it is left out);
candidates are the full canary strings, the blank filled with every r ∈ R.

- :func:`measure_exposure` scores the secret and every candidate (|R| ≤ ``exact_limit``,
  batched) or a uniform random sample of candidates (skew-normal extrapolation), see
  :mod:`deniable.text.exposure`.
- :func:`greedy_extract` and :func:`beam_extract` try to recover the secret from the prefix by
  search over the blank (the model's most likely character, or the ``beam_width`` most likely
  partial fillings, one blank character at a time); the finished fillings are ranked by the
  log-perplexity of the full canary and the report says whether the secret is among them and at
  which rank.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from deniable.errors import InvalidParameterError, check_count
from deniable.text.canary import CanaryFormat
from deniable.text.chars import Vocabulary
from deniable.text.exposure import Exposure, exact_exposure, skew_normal_exposure

BATCH = 4096


def log_perplexities(model: nn.Module, ids: Tensor, *, batch_size: int = BATCH) -> np.ndarray:
    """Px (bits) of each row of ``ids`` (n, L), L ≥ 2, in eval mode without gradients."""
    if ids.dim() != 2 or ids.shape[1] < 2:
        raise InvalidParameterError("ids", tuple(ids.shape), "(n, L) with L >= 2")
    out = []
    with _evaluating(model), torch.no_grad():
        device = _device(model)
        for part in torch.split(ids, check_count("batch_size", batch_size)):
            part = part.to(device)
            logp = nnf.log_softmax(model(part[:, :-1]).float(), dim=-1)
            picked = logp.gather(-1, part[:, 1:, None]).squeeze(-1)
            out.append((-picked.sum(1) / math.log(2)).cpu())
    return torch.cat(out).numpy().astype(np.float64)


def measure_exposure(
    model: nn.Module,
    vocab: Vocabulary,
    fmt: CanaryFormat,
    secret: str,
    *,
    exact_limit: int = 100_000,
    samples: int = 10_000,
    seed: int = 0,
    batch_size: int = BATCH,
) -> Exposure:
    """The secret's exposure: exact when |R| ≤ ``exact_limit``, else the skew-normal estimate
    from ``samples`` candidates drawn uniformly (with replacement, seeded). ``method`` in the
    result says which."""
    index = fmt.index_of(secret)
    if fmt.space_size <= check_count("exact_limit", exact_limit):
        scores = candidate_log_perplexities(
            model, vocab, fmt, np.arange(fmt.space_size), batch_size=batch_size
        )
        return exact_exposure(float(scores[index]), np.delete(scores, index))
    return estimated_exposure(
        model, vocab, fmt, secret, samples=samples, seed=seed, batch_size=batch_size
    )


def estimated_exposure(
    model: nn.Module,
    vocab: Vocabulary,
    fmt: CanaryFormat,
    secret: str,
    *,
    samples: int = 10_000,
    seed: int = 0,
    batch_size: int = BATCH,
) -> Exposure:
    """The skew-normal estimate of the exposure from ``samples`` uniformly drawn candidates."""
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, fmt.space_size, size=check_count("samples", samples, 10))
    sample = candidate_log_perplexities(model, vocab, fmt, drawn, batch_size=batch_size)
    secret_score = candidate_log_perplexities(
        model, vocab, fmt, np.array([fmt.index_of(secret)]), batch_size=batch_size
    )[0]
    return skew_normal_exposure(float(secret_score), sample, fmt.space_size)


def candidate_log_perplexities(
    model: nn.Module,
    vocab: Vocabulary,
    fmt: CanaryFormat,
    indices: np.ndarray,
    *,
    batch_size: int = BATCH,
) -> np.ndarray:
    """Px (bits) of the full canaries filled with the candidates of the given indices."""
    out = [
        log_perplexities(model, fmt.encode_candidates(vocab, part), batch_size=batch_size)
        for part in np.array_split(
            np.asarray(indices), max(1, math.ceil(len(indices) / batch_size))
        )
        if part.size
    ]
    return np.concatenate(out)


@dataclass(frozen=True)
class Extraction:
    """An extraction attempt: the fillings it produced (most likely first, with their Px in
    bits), whether the secret is among them and its 1-based rank there (None if absent)."""

    method: str
    candidates: tuple[str, ...]
    log_perplexities: tuple[float, ...]
    found: bool
    rank: int | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def greedy_extract(
    model: nn.Module, vocab: Vocabulary, fmt: CanaryFormat, secret: str
) -> Extraction:
    """Fill the blank one character at a time with the model's most likely alphabet character."""
    return _search(model, vocab, fmt, secret, 1, "greedy")


def beam_extract(
    model: nn.Module, vocab: Vocabulary, fmt: CanaryFormat, secret: str, *, beam_width: int = 16
) -> Extraction:
    """Beam search over the blank: keep the ``beam_width`` partial fillings with the highest
    log-probability; rank the finished ones by the full canary's log-perplexity."""
    return _search(model, vocab, fmt, secret, check_count("beam_width", beam_width), "beam")


def _search(
    model: nn.Module, vocab: Vocabulary, fmt: CanaryFormat, secret: str, width: int, method: str
) -> Extraction:
    fmt.check_secret(secret)
    prefix, alphabet, _ = fmt.check_vocabulary(vocab)
    device = _device(model)
    allowed = torch.as_tensor(alphabet, device=device)
    beams = torch.as_tensor(prefix, device=device)[None, :]
    scores = torch.zeros(1, device=device)
    fill = torch.zeros(1, 0, dtype=torch.long, device=device)
    with _evaluating(model), torch.no_grad():
        for _ in range(fmt.width):
            if beams.shape[1] == 0:
                # No prefix: the first character has no context; every choice scores alike.
                step = torch.zeros(1, allowed.numel(), device=device)
            else:
                logits = model(beams)[:, -1].float()
                step = nnf.log_softmax(logits, dim=-1)[:, allowed]
            total = (scores[:, None] + step).flatten()
            keep = torch.topk(total, min(width, total.numel())).indices
            parent, choice = keep // allowed.numel(), keep % allowed.numel()
            scores = total[keep]
            fill = torch.cat([fill[parent], choice[:, None]], dim=1)
            beams = torch.cat([beams[parent], allowed[choice][:, None]], dim=1)
    fillings = ["".join(fmt.alphabet[int(i)] for i in row) for row in fill.cpu()]
    indices = np.array([fmt.index_of(f) for f in fillings])
    px = candidate_log_perplexities(model, vocab, fmt, indices)
    order = np.argsort(px, kind="stable")
    ranked = tuple(fillings[i] for i in order)
    found = [i for i, f in enumerate(ranked) if f == secret]
    return Extraction(
        method,
        ranked,
        tuple(float(px[i]) for i in order),
        bool(found),
        found[0] + 1 if found else None,
    )


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode for a block; the model's previous mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
