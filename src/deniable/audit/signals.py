"""Per-example signals of a model on examples: the *signals* stage of the audit pipeline.

models → **signals** → scores → metrics. A signal is what an attack reads from a model for one
example ``(x, y)``; every one here is computed from the logits ``z = f(x)``, in float64:

- ``probabilities``: ``softmax(z)``;
- ``loss``: the cross-entropy ``−log p_y`` (the LOSS attack of Yeom et al. 2018 thresholds it);
- ``confidence``: the true-class probability ``p_y`` (RMIA's ``Pr(x|θ)``);
- ``scaled_confidence``: ``φ(p_y) = log(p_y / (1 − p_y))``, which LiRA models as Gaussian
  (Carlini, Chien, Nasr, Song, Terzis & Tramèr 2022, "Membership inference attacks from first
  principles", §IV-B). It is computed as ``z_y − logsumexp_{y'≠y} z_{y'}``, which equals
  ``log p_y − log Σ_{y'≠y} p_{y'}`` without forming ``1 − p_y``, so it stays exact when the model
  is confident (``p_y`` within float rounding of 1), exactly where members sit.

Queries: a model can be asked about an example several times through deterministic
*augmentations* (the identity, a horizontal flip, small shifts: :func:`image_queries`), giving
signals of shape ``(n, n_queries)``; LiRA averages over them. Without augmentations there is one
query, the example itself. Models are evaluated in eval mode without gradients, in batches, and
put back into the mode they were in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn

from deniable.errors import DeniableError, check_count, check_positive

Augmentation = Callable[[torch.Tensor], torch.Tensor]
"""A deterministic map from a batch of inputs to a batch of the same shape."""

DEFAULT_BATCH_SIZE = 1024


@dataclass(frozen=True, eq=False)
class Signals:
    """Signals of one model (or a stack of models) on ``n`` examples under ``n_queries`` queries.

    Shapes: ``logits`` and ``probabilities`` are ``(*models, n, n_queries, num_classes)``;
    ``loss``, ``confidence`` and ``scaled_confidence`` are ``(*models, n, n_queries)``; ``labels``
    is ``(n,)``. ``models`` is empty for one model and ``(n_models,)`` for a shadow set.
    """

    logits: NDArray[np.float64]
    probabilities: NDArray[np.float64]
    loss: NDArray[np.float64]
    confidence: NDArray[np.float64]
    scaled_confidence: NDArray[np.float64]
    labels: NDArray[np.int64]

    @property
    def n_queries(self) -> int:
        """The number of queries per example (1 without augmentations)."""
        return int(self.loss.shape[-1])

    @property
    def correct(self) -> NDArray[np.bool_]:
        """Whether each query is classified correctly (argmax of the logits equals the label)."""
        return np.asarray(self.logits.argmax(axis=-1) == self.labels[:, None])


def signals_from_logits(logits: torch.Tensor | ArrayLike, labels: ArrayLike) -> Signals:
    """All signals from logits shaped ``(*models, n, n_queries, C)`` and labels shaped ``(n,)``.

    >>> s = signals_from_logits([[[2.0, 0.0]]], [0])
    >>> round(float(s.scaled_confidence[0, 0]), 6), round(float(s.loss[0, 0]), 6)
    (2.0, 0.126928)
    """
    z = torch.as_tensor(np.asarray(logits) if not torch.is_tensor(logits) else logits)
    z = z.detach().to(torch.float64).cpu()
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if z.ndim < 3 or y.ndim != 1 or z.shape[-3] != y.shape[0]:
        raise DeniableError(
            f"logits need shape (..., n, n_queries, classes) with n = {y.shape[0]} labels, "
            f"got {tuple(z.shape)}"
        )
    classes = z.shape[-1]
    if classes < 2:
        raise DeniableError(f"logits need at least 2 classes, got {classes}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise DeniableError(
            f"labels must lie in [0, {classes}), got {int(y.min())}..{int(y.max())}"
        )
    index = y.view(-1, 1, 1).expand(*z.shape[:-1], 1)
    log_p = torch.log_softmax(z, dim=-1)
    log_p_true = log_p.gather(-1, index).squeeze(-1)
    true_logit = z.gather(-1, index).squeeze(-1)
    others = z.scatter(-1, index, float("-inf"))
    phi = true_logit - torch.logsumexp(others, dim=-1)
    return Signals(
        logits=z.numpy(),
        probabilities=log_p.exp().numpy(),
        loss=(-log_p_true).numpy(),
        confidence=log_p_true.exp().numpy(),
        scaled_confidence=phi.numpy(),
        labels=y.numpy(),
    )


def model_logits(
    model: nn.Module,
    inputs: torch.Tensor | ArrayLike,
    *,
    augmentations: Sequence[Augmentation] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> torch.Tensor:
    """Logits shaped ``(n, n_queries, C)``: ``model`` on each augmentation of each input.

    ``augmentations=None`` means one query, the input itself. Eval mode, no gradients.
    """
    x = _as_inputs(inputs)
    queries = _queries(augmentations)
    check_count("batch_size", batch_size)
    was_training = model.training
    model.eval()
    try:
        chunks = []
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                batch = x[start : start + batch_size]
                chunks.append(torch.stack([model(q(batch)) for q in queries], dim=1))
    finally:
        model.train(was_training)
    return torch.cat(chunks, dim=0)


def compute_signals(
    model: nn.Module,
    inputs: torch.Tensor | ArrayLike,
    labels: torch.Tensor | ArrayLike,
    *,
    augmentations: Sequence[Augmentation] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Signals:
    """:class:`Signals` of ``model`` on ``(inputs, labels)``, shapes ``(n, n_queries[, C])``."""
    y = _as_labels(labels)
    x = _as_inputs(inputs)
    if x.shape[0] != y.shape[0]:
        raise DeniableError(f"{x.shape[0]} inputs but {y.shape[0]} labels; give one label each")
    logits = model_logits(model, x, augmentations=augmentations, batch_size=batch_size)
    return signals_from_logits(logits, y)


def label_only_queries(
    model: nn.Module,
    inputs: torch.Tensor | ArrayLike,
    labels: torch.Tensor | ArrayLike,
    *,
    noise_std: float = 0.0,
    noise_queries: int = 0,
    augmentations: Sequence[Augmentation] | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> NDArray[np.bool_]:
    """Whether each perturbed query of each example is still classified correctly.

    The queries of the label-only attack of Choquette-Choo, Tramèr, Carlini & Papernot (2021),
    "Label-only membership inference attacks" (ICML): first the ``augmentations`` (each a
    deterministic map; none by default), then ``noise_queries`` copies of the input with
    i.i.d. Gaussian noise of standard deviation ``noise_std`` added to every feature (seeded by
    ``seed``; the draws depend on ``batch_size`` too). Only predicted labels are used.

    Returns a bool array ``(n, len(augmentations) + noise_queries)``.
    """
    x = _as_inputs(inputs)
    y = _as_labels(labels)
    if x.shape[0] != y.shape[0]:
        raise DeniableError(f"{x.shape[0]} inputs but {y.shape[0]} labels; give one label each")
    augs = list(augmentations or [])
    check_count("noise_queries", noise_queries, 0)
    if noise_queries:
        check_positive("noise_std", noise_std)
    if not augs and not noise_queries:
        raise DeniableError("label-only queries need augmentations or noise_queries >= 1")
    check_count("batch_size", batch_size)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    rows = []
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                batch = x[start : start + batch_size]
                target = y[start : start + batch_size]
                queries = [aug(batch) for aug in augs]
                for _ in range(noise_queries):
                    noise = torch.randn(batch.shape, generator=generator, dtype=batch.dtype)
                    queries.append(batch + noise_std * noise)
                hits = [model(q).argmax(dim=-1) == target for q in queries]
                rows.append(torch.stack(hits, dim=1))
    finally:
        model.train(was_training)
    return torch.cat(rows, dim=0).numpy()


def identity(x: torch.Tensor) -> torch.Tensor:
    """The example itself."""
    return x


def horizontal_flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror images shaped ``(..., height, width)`` left to right."""
    return x.flip(-1)


@dataclass(frozen=True)
class Shift:
    """Translate images shaped ``(..., height, width)`` by ``(dy, dx)`` pixels, filling with 0."""

    dy: int
    dx: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        if abs(self.dy) >= height or abs(self.dx) >= width:
            raise DeniableError(
                f"shift ({self.dy}, {self.dx}) moves a {height}×{width} image out of view"
            )
        out = torch.zeros_like(x)
        dst_y, src_y = _span(self.dy, height)
        dst_x, src_x = _span(self.dx, width)
        out[..., dst_y, dst_x] = x[..., src_y, src_x]
        return out


@dataclass(frozen=True)
class Compose:
    """Apply ``first`` and then ``second``."""

    first: Augmentation
    second: Augmentation

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def image_queries(max_shift: int = 1, *, flip: bool = True) -> list[Augmentation]:
    """The identity, then every shift in ``[−max_shift, max_shift]²`` (and its mirror image).

    LiRA's augmented queries (Carlini et al. 2022 query the flips and shifts used in training);
    ``image_queries(0)`` is ``[identity, horizontal_flip]`` and ``image_queries(1)`` has 18.
    Only for images whose label does not change under these maps (not digits 2/5 under a flip:
    use ``flip=False`` there).
    """
    check_count("max_shift", max_shift, 0)
    shifts: list[Augmentation] = [identity]
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            if (dy, dx) != (0, 0):
                shifts.append(Shift(dy, dx))
    if not flip:
        return shifts
    return shifts + [
        horizontal_flip if s is identity else Compose(s, horizontal_flip) for s in shifts
    ]


def _span(offset: int, size: int) -> tuple[slice, slice]:
    """Destination and source slices of a 1-D translation by ``offset`` within ``size``."""
    if offset >= 0:
        return slice(offset, size), slice(0, size - offset)
    return slice(0, size + offset), slice(-offset, size)


def _queries(augmentations: Sequence[Augmentation] | None) -> list[Augmentation]:
    if augmentations is None:
        return [identity]
    queries = list(augmentations)
    if not queries:
        raise DeniableError("augmentations is empty; pass None for the single identity query")
    return queries


def _as_inputs(inputs: torch.Tensor | ArrayLike) -> torch.Tensor:
    x = inputs if torch.is_tensor(inputs) else torch.as_tensor(np.asarray(inputs))
    assert isinstance(x, torch.Tensor)
    if x.ndim < 2 or x.shape[0] < 1:
        raise DeniableError(f"inputs need shape (n >= 1, *features), got {tuple(x.shape)}")
    return x if x.is_floating_point() else x.to(torch.float32)


def _as_labels(labels: torch.Tensor | ArrayLike) -> torch.Tensor:
    y = labels if torch.is_tensor(labels) else torch.as_tensor(np.asarray(labels))
    assert isinstance(y, torch.Tensor)
    if y.ndim != 1:
        raise DeniableError(f"labels need shape (n,), got {tuple(y.shape)}")
    return y.to(torch.long)
