"""Character data: vocabulary, positional split, windows (each window one example)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deniable.errors import DeniableError
from deniable.text import CharWindows, Vocabulary, read_text, split_by_position, windows

TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"


def test_vocabulary_is_sorted_and_round_trips() -> None:
    vocab = Vocabulary.from_text("hello world", "0123")
    assert vocab.chars == " 0123dehlorw"
    ids = vocab.encode("hold 3")
    assert ids.dtype == np.int64
    assert ids.tolist() == [vocab.chars.index(c) for c in "hold 3"]
    assert vocab.decode(ids) == "hold 3"
    assert vocab.decode(torch.as_tensor(ids)) == "hold 3"


def test_unknown_character_is_named() -> None:
    with pytest.raises(DeniableError, match="'z' is not in the vocabulary") as info:
        Vocabulary.from_text("abc").encode("abz")
    assert "\n" not in str(info.value)
    with pytest.raises(DeniableError, match="empty"):
        Vocabulary.from_text("")


def test_read_text_errors(tmp_path: Path) -> None:
    with pytest.raises(DeniableError, match="does not exist"):
        read_text(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DeniableError, match="empty"):
        read_text(empty)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DeniableError, match="not UTF-8"):
        read_text(latin)
    ok = tmp_path / "ok.txt"
    ok.write_text("abcdef")
    assert read_text(ok, max_chars=3) == "abc"


def test_split_is_positional_and_deterministic() -> None:
    ids = np.arange(100)
    train, test = split_by_position(ids, 0.2)
    assert train.tolist() == list(range(80)) and test.tolist() == list(range(80, 100))
    with pytest.raises(DeniableError, match="test_fraction"):
        split_by_position(ids, 1.0)


def test_windows_predict_the_next_character_everywhere() -> None:
    ids = np.arange(23)
    data = windows(ids, 5)
    # Non-overlapping: starts 0, 5, 10, 15 (each needs context + 1 = 6 characters).
    assert len(data) == 4 and data.context == 5
    assert data.inputs[1].tolist() == [5, 6, 7, 8, 9]
    assert data.targets[1].tolist() == [6, 7, 8, 9, 10]
    assert torch.equal(data.targets[:, :-1], data.inputs[:, 1:])
    assert data.keys is None
    overlapping = windows(ids, 5, stride=1)
    assert len(overlapping) == 23 - 5
    with pytest.raises(DeniableError, match="context"):
        windows(np.arange(5), 5)


def test_char_windows_checks_shapes() -> None:
    x = torch.zeros(3, 4, dtype=torch.long)
    with pytest.raises(DeniableError, match="keys"):
        CharWindows(x, x, keys=np.arange(2))
    with pytest.raises(DeniableError, match=r"\(N, T\)"):
        CharWindows(x, x[:, :3])


def test_tinyshakespeare_slice() -> None:
    if not TEXT.exists():
        pytest.skip(f"{TEXT} is absent")
    text = read_text(TEXT, max_chars=20_000)
    vocab = Vocabulary.from_text(text)
    train, test = split_by_position(vocab.encode(text), 0.1)
    data = windows(train, 32)
    assert len(data) == (18_000 - 1) // 32
    assert vocab.decode(data.inputs[0]) == text[:32]
    assert len(windows(test, 32)) == (2_000 - 1) // 32
