"""Canaries for the secret sharer (Carlini, Liu, Erlingsson, Kos & Song 2019, "The Secret
Sharer: Evaluating and Testing Unintended Memorization in Neural Networks").

A canary format is a sentence with one blank, e.g. ``"my pin is ____"``: each ``_`` is one
character drawn from ``alphabet``, so the randomness space R holds |alphabet|^width fillings
(4 digits → |R| = 10⁴). A secret is one filling; it is inserted r times into the training data,
each time as its own window (the canary at the start of the window, followed by real text), and
the exposure of the secret then measures how much the model prefers it over the other fillings.

Privacy unit of the inserted windows: ``"example"`` makes each insertion its own unit (a DP
guarantee then covers one insertion, and r insertions only as a group of r); ``"user"`` gives all
r insertions one shared key, so user-level DP bounds their joint contribution (McMahan et al.
2018).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from deniable.errors import DeniableError, InvalidParameterError, check_count
from deniable.text.chars import CharWindows, Vocabulary

PrivacyUnit = Literal["example", "user"]
PRIVACY_UNITS: tuple[PrivacyUnit, ...] = ("example", "user")

BLANK = "_"


@dataclass(frozen=True)
class CanaryFormat:
    """A template with one blank (a run of ``_``) and the alphabet each blank character takes.

    >>> fmt = CanaryFormat("my pin is ____")
    >>> fmt.space_size, fmt.fill("0042"), fmt.candidate(42)
    (10000, 'my pin is 0042', '0042')
    """

    template: str
    alphabet: str = "0123456789"

    def __post_init__(self) -> None:
        runs = re.findall(f"{BLANK}+", self.template)
        if len(runs) != 1:
            raise DeniableError(
                f"canary format must contain exactly one blank (a run of '{BLANK}', e.g. "
                f"'my pin is ____'), got {self.template!r} with {len(runs)}"
            )
        if not self.alphabet:
            raise DeniableError("canary alphabet is empty, so the randomness space is empty")
        if len(set(self.alphabet)) != len(self.alphabet) or BLANK in self.alphabet:
            raise DeniableError(
                f"canary alphabet must be distinct characters without '{BLANK}', "
                f"got {self.alphabet!r}"
            )
        if len(self.alphabet) == 1:
            raise DeniableError(
                "canary alphabet has one character, so the randomness space has one secret; "
                "give at least two"
            )

    @property
    def prefix(self) -> str:
        return self.template[: self.template.index(BLANK)]

    @property
    def width(self) -> int:
        return self.template.count(BLANK)

    @property
    def suffix(self) -> str:
        return self.template[len(self.prefix) + self.width :]

    @property
    def space_size(self) -> int:
        """|R| = |alphabet|^width."""
        return len(self.alphabet) ** self.width

    @property
    def log2_space(self) -> float:
        return self.width * math.log2(len(self.alphabet))

    @property
    def length(self) -> int:
        return len(self.template)

    def check_secret(self, secret: str) -> str:
        """``secret`` (a filling of the blank) if valid, else a DeniableError naming the fix."""
        if len(secret) != self.width or any(c not in self.alphabet for c in secret):
            raise DeniableError(
                f"secret must be {self.width} characters from {self.alphabet!r}, got {secret!r}"
            )
        return secret

    def fill(self, secret: str) -> str:
        """The full canary string with the blank filled by ``secret``."""
        return self.prefix + self.check_secret(secret) + self.suffix

    def candidate(self, index: int) -> str:
        """The filling with index ``index`` in [0, |R|) (mixed radix, first character highest)."""
        if not 0 <= index < self.space_size:
            raise InvalidParameterError("index", index, f"in [0, {self.space_size})")
        return "".join(self.alphabet[d] for d in self.digits(np.array([index]))[0])

    def index_of(self, secret: str) -> int:
        """The index of a filling: the inverse of :meth:`candidate`."""
        value = 0
        for c in self.check_secret(secret):
            value = value * len(self.alphabet) + self.alphabet.index(c)
        return value

    def digits(self, indices: np.ndarray) -> np.ndarray:
        """(n, width) alphabet positions of the fillings with the given indices."""
        base = len(self.alphabet)
        powers = base ** np.arange(self.width - 1, -1, -1, dtype=np.int64)
        return (np.asarray(indices, dtype=np.int64)[:, None] // powers) % base

    def random_secret(self, seed: int) -> str:
        """A secret drawn uniformly from R."""
        rng = np.random.default_rng(seed)
        return "".join(self.alphabet[i] for i in rng.integers(0, len(self.alphabet), self.width))

    def encode_candidates(self, vocab: Vocabulary, indices: np.ndarray) -> torch.Tensor:
        """(n, length) vocabulary ids of the full canaries with the given filling indices."""
        ids = self.check_vocabulary(vocab)
        prefix, alphabet, suffix = ids
        blank = alphabet[self.digits(indices)]
        n = blank.shape[0]
        rows = np.concatenate(
            [
                np.broadcast_to(prefix, (n, prefix.size)),
                blank,
                np.broadcast_to(suffix, (n, suffix.size)),
            ],
            axis=1,
        )
        return torch.from_numpy(np.ascontiguousarray(rows))

    def check_vocabulary(self, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ids of the prefix, the alphabet and the suffix; a DeniableError if one is missing."""
        missing = sorted({c for c in self.prefix + self.alphabet + self.suffix} - set(vocab.chars))
        if missing:
            raise DeniableError(
                f"canary characters {''.join(missing)!r} are not in the vocabulary; build it "
                "with Vocabulary.from_text(text, canary.template, canary.alphabet)"
            )
        return vocab.encode(self.prefix), vocab.encode(self.alphabet), vocab.encode(self.suffix)


def canary_windows(
    fmt: CanaryFormat,
    secret: str,
    vocab: Vocabulary,
    text_ids: np.ndarray,
    *,
    repeats: int,
    context: int,
    seed: int,
) -> CharWindows:
    """``repeats`` windows of length ``context``, each the canary followed by real text drawn at a
    random position of ``text_ids`` (the canary starts the window, as it starts a scored string)."""
    check_count("repeats", repeats)
    canary = vocab.encode(fmt.fill(secret))
    tail = context + 1 - canary.size
    if tail < 1:
        raise InvalidParameterError(
            "context", context, f">= the canary length ({canary.size}) so a window can hold it"
        )
    if len(text_ids) < tail:
        raise DeniableError(f"text too short ({len(text_ids)} chars) to fill a canary window")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(text_ids) - tail + 1, size=repeats)
    rows = np.stack([np.concatenate([canary, text_ids[s : s + tail]]) for s in starts])
    chunk = torch.from_numpy(rows.astype(np.int64))
    return CharWindows(chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous())


def insert_windows(base: CharWindows, extra: CharWindows, *, unit: PrivacyUnit) -> CharWindows:
    """``base`` plus ``extra`` windows, with keys that make each base window its own unit and the
    extra windows either one unit each (``"example"``) or one shared unit (``"user"``)."""
    if base.keys is not None:
        raise DeniableError("insert canaries into windows without keys (one unit per window)")
    if base.context != extra.context:
        raise DeniableError(f"window lengths differ: {base.context} and {extra.context}")
    n, r = len(base), len(extra)
    if unit == "example":
        keys = np.arange(n + r, dtype=np.int64)
    elif unit == "user":
        keys = np.concatenate([np.arange(n, dtype=np.int64), np.full(r, n, dtype=np.int64)])
    else:
        raise InvalidParameterError("unit", unit, f"one of {', '.join(PRIVACY_UNITS)}")
    return CharWindows(
        torch.cat([base.inputs, extra.inputs]), torch.cat([base.targets, extra.targets]), keys
    )
