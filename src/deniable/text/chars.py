"""Character-level data: a vocabulary from any text, a positional train/test split, and windows.

Each window is ``context + 1`` consecutive characters ``c_0 … c_T``: the input is ``c_0 … c_{T-1}``
and the target at position t is the next character ``c_{t+1}`` (every position is predicted;
:func:`~deniable.text.models.last_char_loss` scores only the last one). Privacy unit: one window is
one example. Windows do not overlap by default (stride = context), so each character of the text is
a target in exactly one window and one example's removal removes each character at most once;
overlapping windows (stride < context) put a character in several units, which example-level DP
then protects only as a group. Optional ``keys`` (one per window) make any group of windows one
unit (user-level DP through :func:`~deniable.train.private.make_private`'s ``keys``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deniable.errors import DeniableError, InvalidParameterError, check_count


def read_text(path: str | Path, *, max_chars: int | None = None) -> str:
    """The UTF-8 text of ``path`` (its first ``max_chars`` characters when given)."""
    file = Path(path)
    if not file.is_file():
        raise DeniableError(f"text file {file} does not exist; give the path of a UTF-8 text file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DeniableError(
            f"text file {file} is not UTF-8 (byte {error.start}); convert it to UTF-8"
        ) from None
    if max_chars is not None:
        text = text[: check_count("max_chars", max_chars)]
    if not text:
        raise DeniableError(f"text file {file} is empty; give a file with some text")
    return text


@dataclass(frozen=True)
class Vocabulary:
    """The characters a model reads and predicts, in sorted order (id = position)."""

    chars: str

    def __post_init__(self) -> None:
        if not self.chars:
            raise DeniableError("vocabulary is empty; build it from a non-empty text")
        if len(set(self.chars)) != len(self.chars):
            raise DeniableError("vocabulary characters must be distinct")

    @staticmethod
    def from_text(*texts: str) -> Vocabulary:
        """Every character that occurs in ``texts`` (pass a canary's alphabet too, so that the
        candidates a secret is ranked against can be encoded even if the text never uses them)."""
        return Vocabulary("".join(sorted(set("".join(texts)))))

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Character ids (int64) of ``text``; a DeniableError names the first unknown character."""
        index = {c: i for i, c in enumerate(self.chars)}
        try:
            return np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as error:
            raise DeniableError(
                f"character {error.args[0]!r} is not in the vocabulary; build the vocabulary "
                "from a text that contains it"
            ) from None

    def decode(self, ids: np.ndarray | torch.Tensor | list[int]) -> str:
        values = ids.tolist() if isinstance(ids, np.ndarray | torch.Tensor) else ids
        return "".join(self.chars[int(i)] for i in values)


def split_by_position(ids: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The first ``1 − test_fraction`` of the text for training, the rest for testing.

    Deterministic and contiguous, so no test window shares characters with a training window.
    """
    if not 0 < test_fraction < 1:
        raise InvalidParameterError("test_fraction", test_fraction, "in the open interval (0, 1)")
    cut = round(len(ids) * (1 - test_fraction))
    return ids[:cut], ids[cut:]


@dataclass(frozen=True)
class CharWindows:
    """Training windows: ``inputs`` and ``targets`` (N, T) int64, and optional unit ``keys``."""

    inputs: torch.Tensor
    targets: torch.Tensor
    keys: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.inputs.shape != self.targets.shape or self.inputs.dim() != 2:
            raise DeniableError(
                f"inputs and targets must both be (N, T), got {tuple(self.inputs.shape)} and "
                f"{tuple(self.targets.shape)}"
            )
        if self.keys is not None and self.keys.shape != (len(self),):
            raise DeniableError(f"keys must have one entry per window ({len(self)})")

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def context(self) -> int:
        return int(self.inputs.shape[1])


def windows(ids: np.ndarray, context: int, *, stride: int | None = None) -> CharWindows:
    """Windows of ``context`` inputs and their next-character targets, every ``stride`` chars
    (default ``context``: non-overlapping, see the module doc)."""
    check_count("context", context)
    step = check_count("stride", stride if stride is not None else context)
    if len(ids) < context + 1:
        raise InvalidParameterError(
            "context", context, f"< the text length ({len(ids)} characters); use a longer text"
        )
    starts = np.arange(0, len(ids) - context, step)
    rows = np.asarray(ids, dtype=np.int64)[starts[:, None] + np.arange(context + 1)]
    chunk = torch.from_numpy(rows)
    return CharWindows(chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous())
