"""Inputs that several layers read in one ghost pass (self-attention's query, key and value
projections: one tensor, three Linear layers).

Book-keeping keeps each Linear layer's input ``a`` until its weighted sum; an input read by k
layers is one tensor, kept once, so each reader's share of it is 1/k of its size. The Linear
rule counts that share when it chooses between the Gram and the explicit per-example gradient
(:func:`~deniable.grad.ghost_rules.grouped_linear_norm`), and the Gram A_i A_iᵀ, the same for
every reader, is computed once, as is w ⊙ A for their weighted sums. The engine
(:mod:`deniable.grad.ghost`) opens :func:`sharing` for one pass, after the forward has recorded
every layer's inputs, and again with the same readers around the weighted sums; outside them (a
rule called directly) every input has one reader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from torch import Tensor

Key = tuple[int, int, tuple[int, ...], tuple[int, ...], str]


def input_key(x: Tensor) -> Key:
    """Identity of the values a layer read: same storage, offset, shape, strides and dtype
    (``x.detach()`` copies share it; in-place changes after the forward are refused upstream)."""
    return (
        x.untyped_storage().data_ptr(),
        int(x.storage_offset()),
        tuple(x.shape),
        tuple(x.stride()),
        str(x.dtype),
    )


@dataclass
class SharedInputs:
    """How many layers read each input of one pass, and what was computed from it so far."""

    readers: dict[Key, int]
    stored: dict[tuple[str, Key], tuple[Tensor, int]] = field(default_factory=dict)  # value, left

    def readers_of(self, x: Tensor) -> int:
        return self.readers.get(input_key(x), 1)

    def once(self, kind: str, x: Tensor, compute: Callable[[], Tensor]) -> Tensor:
        """``compute()`` for the first reader of a shared ``x``, the stored result for the
        others; dropped after the last reader (or when the context closes, if one never asks).
        ``kind`` names what is computed ("gram": A_i A_iᵀ in the norm pass; "scaled": w ⊙ A for
        the weighted sums)."""
        key = input_key(x)
        readers = self.readers.get(key, 1)
        if readers < 2:
            return compute()
        value, left = (
            self.stored.pop((kind, key)) if (kind, key) in self.stored else (compute(), readers)
        )
        if left > 1:
            self.stored[(kind, key)] = (value, left - 1)
        return value

    def gram(self, x: Tensor, compute: Callable[[], Tensor]) -> Tensor:
        return self.once("gram", x, compute)


_current: ContextVar[SharedInputs | None] = ContextVar("ghost_shared_inputs", default=None)


def current() -> SharedInputs | None:
    """The open pass's shared inputs, or None outside a pass."""
    return _current.get()


def count_readers(inputs_by_layer: Sequence[Sequence[Tensor]]) -> dict[Key, int]:
    """How many layers read each input that more than one reads; ``inputs_by_layer[l]`` are
    the inputs layer l read (counted once per layer)."""
    readers: dict[Key, int] = {}
    for inputs in inputs_by_layer:
        for key in {input_key(x) for x in inputs}:
            readers[key] = readers.get(key, 0) + 1
    return {k: n for k, n in readers.items() if n > 1}


@contextmanager
def sharing(readers: dict[Key, int]) -> Iterator[SharedInputs]:
    """Open a pass (or the weighted sums after it) with these readers (:func:`count_readers`:
    keys, not tensors, which the context manager would keep alive to the end of the pass); what
    it stored is released when it closes."""
    shared = SharedInputs(readers)
    token = _current.set(shared)
    try:
        yield shared
    finally:
        _current.reset(token)
        shared.stored.clear()
