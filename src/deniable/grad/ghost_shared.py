"""Inputs that several layers read in one ghost pass (self-attention's query, key and value
projections: one tensor, three Linear layers).

Book-keeping keeps each Linear layer's input ``a`` until its weighted sum; an input read by k
layers is one tensor, kept once, so each reader's share of it is 1/k of its size. The Linear
rule counts that share when it chooses between the Gram and the explicit per-example gradient
(:func:`~deniable.grad.ghost_rules.grouped_linear_norm`), and the Gram A_i A_iᵀ, the same for
every reader, is computed once. The engine (:mod:`deniable.grad.ghost`) opens :func:`sharing`
for one pass, after the forward has recorded every layer's inputs; outside a pass (a rule
called directly) every input has one reader.
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
    """How many layers read each input of one pass, and the Grams computed so far."""

    readers: dict[Key, int]
    grams: dict[Key, Tensor] = field(default_factory=dict)

    def readers_of(self, x: Tensor) -> int:
        return self.readers.get(input_key(x), 1)

    def gram(self, x: Tensor, compute: Callable[[], Tensor]) -> Tensor:
        """``compute()`` for the first reader of a shared ``x``, the stored result after."""
        key = input_key(x)
        if self.readers.get(key, 1) < 2:
            return compute()
        if key not in self.grams:
            self.grams[key] = compute()
        return self.grams[key]


_current: ContextVar[SharedInputs | None] = ContextVar("ghost_shared_inputs", default=None)


def current() -> SharedInputs | None:
    """The open pass's shared inputs, or None outside a pass."""
    return _current.get()


@contextmanager
def sharing(inputs_by_layer: Sequence[Sequence[Tensor]]) -> Iterator[SharedInputs]:
    """Open a pass in which ``inputs_by_layer[l]`` are the inputs layer l read (each counted
    once per layer); the stored Grams are released when it closes."""
    readers: dict[Key, int] = {}
    for inputs in inputs_by_layer:
        for key in {input_key(x) for x in inputs}:
            readers[key] = readers.get(key, 0) + 1
    shared = SharedInputs({k: n for k, n in readers.items() if n > 1})
    token = _current.set(shared)
    try:
        yield shared
    finally:
        _current.reset(token)
        shared.grams.clear()
