"""Data poisoning with k examples, its success rate, and what group privacy says about it.

Attacks (each returns :class:`PoisonedData`: the poisoned training set and what changed):

- :func:`label_flip`: ``k`` training examples (of ``source``, or of any class but ``target``)
  get the label ``target``; the examples are *replaced* by their flipped versions.
- :func:`backdoor`: ``k`` copies of non-``target`` training examples carry a
  :class:`PatchTrigger` (a small square of fixed pixel value in a corner) and the label
  ``target``; they are *added* to the training set (BadNets, Gu, Dolan-Gavitt & Garg 2017).

Success: :func:`label_flip_success_rate` is the fraction of test examples of the source classes
predicted as ``target``; :func:`backdoor_success_rate` the fraction of non-``target`` test
examples predicted as ``target`` once the trigger is stamped on them.

Group privacy (why DP bounds poisoning, and when it stops doing so). An (ε, δ)-DP algorithm is
(kε, δ_k)-DP for datasets that differ in ``k`` units, with

    δ_k = δ · Σ_{i<k} e^{iε} = δ (e^{kε} − 1)/(e^ε − 1) ≤ k e^{(k−1)ε} δ,

by chaining k neighbours: Dwork & Roth 2014, "The algorithmic foundations of differential
privacy", Thm 2.2 (δ = 0) and the remark after it (the ``k e^{(k−1)ε} δ`` form); Vadhan 2017,
"The complexity of differential privacy", §2 (group privacy). :func:`group_privacy` reports
``δ_k = k e^{(k−1)ε} δ`` (the usual stated form) and the geometric sum it bounds. So for every
test input and every outcome, over the training randomness,

    P[attack succeeds | poisoned] ≤ e^{kε} · P[attack succeeds | clean] + δ_k,

and by averaging the same holds for the expected success rate (Ma, Zhu & Hsu 2019, "Data poisoning
against differentially-private learners", IJCAI). The guarantee *covers* the poison when that
bound is below 1; with kε of a few units or more it is vacuous, and DP says nothing.

The group size ``k`` counts units of the accountant's neighbouring relation: adding k examples
is k add/remove steps, while replacing k examples (label flips) is 2k add/remove steps (remove
the original, add the flipped one) or k replace-one steps. :meth:`PoisonedData.group_size` does
that count. Example-level ε says nothing about poison from one *user* contributing many examples
unless the privacy unit is the user.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from torch import nn

from deniable.data import ArrayDataset
from deniable.errors import DeniableError, InvalidParameterError, check_count, check_delta
from deniable.evaluate._common import DEFAULT_BATCH_SIZE, json_number, predictions_on
from deniable.events import Neighbouring


@dataclass(frozen=True, eq=False)
class PoisonedData:
    """A poisoned training set: ``data``, the positions of its poisoned examples ``poisoned``,
    how many were ``added`` and ``replaced``, and the attack's ``target`` class."""

    attack: str
    data: ArrayDataset
    poisoned: NDArray[np.int64]
    added: int
    replaced: int
    target: int

    @property
    def k(self) -> int:
        """The number of poisoned examples."""
        return int(self.poisoned.size)

    def group_size(self, relation: Neighbouring = Neighbouring.ADD_REMOVE) -> int:
        """How many neighbouring steps separate the clean from the poisoned training set.

        Add/remove: ``added + 2 · replaced``; replace-one: ``replaced`` (adding examples changes
        the dataset size, which replace-one neighbours never do: an error).
        """
        if relation == Neighbouring.ADD_REMOVE:
            return self.added + 2 * self.replaced
        if self.added:
            raise DeniableError(
                f"{self.attack} adds {self.added} examples: replace-one neighbours keep the size, "
                "so use the add/remove relation for this attack"
            )
        return self.replaced


def label_flip(
    data: ArrayDataset,
    k: int,
    target: int,
    *,
    source: int | None = None,
    seed: int = 0,
) -> PoisonedData:
    """Relabel ``k`` seeded random examples of class ``source`` (any class ≠ ``target`` when
    ``None``) as ``target``; everything else is unchanged."""
    target = _class(data, "target", target)
    pool = (
        data.labels != target if source is None else data.labels == _class(data, "source", source)
    )
    if source is not None and source == target:
        raise InvalidParameterError("source", source, f"a class other than target={target}")
    chosen = _choose(pool, k, seed, "label_flip")
    labels = data.labels.copy()
    labels[chosen] = target
    note = (
        f"{data.name}: {chosen.size} labels flipped to {target} (label-flip poisoning, seed {seed})"
    )
    poisoned = replace(data, labels=labels, notes=(*data.notes, note))
    return PoisonedData("label_flip", poisoned, chosen, 0, int(chosen.size), target)


@dataclass(frozen=True)
class PatchTrigger:
    """A ``size``×``size`` square set to ``value`` in the bottom-right corner of every channel
    of images shaped ``(..., channels, height, width)``."""

    size: int = 2
    value: float = 1.0

    def __post_init__(self) -> None:
        check_count("size", self.size)
        if not math.isfinite(self.value):
            raise InvalidParameterError("value", self.value, "a finite number")

    def apply(self, images: NDArray[np.float32]) -> NDArray[np.float32]:
        """A copy of ``images`` with the trigger stamped on each."""
        if images.ndim < 3 or min(images.shape[-2:]) < self.size:
            raise DeniableError(
                f"a {self.size}x{self.size} patch trigger needs images (..., C, H, W) at least "
                f"that large, got shape {images.shape}"
            )
        out = np.array(images, dtype=np.float32, copy=True)
        out[..., -self.size :, -self.size :] = self.value
        return out


def backdoor(
    data: ArrayDataset,
    k: int,
    target: int,
    trigger: PatchTrigger | None = None,
    *,
    seed: int = 0,
) -> PoisonedData:
    """``data`` plus ``k`` triggered copies of seeded random non-``target`` examples, labelled
    ``target``; the clean examples stay. Poisoned copies are appended at the end."""
    target = _class(data, "target", target)
    trigger = trigger or PatchTrigger()
    chosen = _choose(data.labels != target, k, seed, "backdoor")
    n = len(data)
    poison = data.subset(chosen)
    features = np.concatenate([data.features, trigger.apply(poison.features)])
    labels = np.concatenate([data.labels, np.full(chosen.size, target, dtype=np.int64)])
    keys = None
    if data.keys is not None:
        # each poisoned copy is a new privacy unit (a new contributor)
        start = int(data.keys.max()) + 1
        keys = np.concatenate([data.keys, np.arange(start, start + chosen.size, dtype=np.int64)])
    groups = {c: np.concatenate([g, poison.groups[c]]) for c, g in data.groups.items()}
    note = (
        f"{data.name}: {chosen.size} backdoored examples added ({trigger.size}x{trigger.size} "
        f"patch = {trigger.value:g}, target {target}, seed {seed})"
    )
    poisoned = replace(
        data, features=features, labels=labels, keys=keys, groups=groups, notes=(*data.notes, note)
    )
    positions = np.arange(n, n + chosen.size, dtype=np.int64)
    return PoisonedData("backdoor", poisoned, positions, int(chosen.size), 0, target)


def attack_success_rate(
    predictions: NDArray[np.int64], labels: NDArray[np.int64], target: int
) -> float:
    """Fraction of examples whose true label is not ``target`` that are predicted ``target``.

    >>> attack_success_rate(np.array([1, 1, 0, 1]), np.array([0, 0, 0, 1]), 1)
    0.6666666666666666
    """
    eligible = np.asarray(labels) != target
    if not eligible.any():
        raise DeniableError(f"no example with a label other than target={target} to attack")
    return float(np.mean(np.asarray(predictions)[eligible] == target))


def backdoor_success_rate(
    model: nn.Module,
    data: ArrayDataset,
    target: int,
    trigger: PatchTrigger | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> float:
    """Fraction of non-``target`` examples of ``data`` predicted ``target`` once triggered."""
    trigger = trigger or PatchTrigger()
    stamped = replace(data, features=trigger.apply(data.features))
    return attack_success_rate(predictions_on(model, stamped, batch_size), data.labels, target)


def label_flip_success_rate(
    model: nn.Module,
    data: ArrayDataset,
    target: int,
    *,
    source: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> float:
    """Fraction of examples of ``source`` (all non-``target`` if ``None``) predicted ``target``."""
    keep = data.labels == source if source is not None else np.ones(len(data), dtype=bool)
    if not keep.any():
        raise DeniableError(f"no example of source class {source} in {data.name!r}")
    part = data.subset(keep)
    return attack_success_rate(predictions_on(model, part, batch_size), part.labels, target)


@dataclass(frozen=True)
class GroupPrivacy:
    """(ε_k, δ_k) for groups of ``k`` units from (ε, δ) per unit (see the module docstring)."""

    k: int
    epsilon: float
    delta: float
    epsilon_k: float
    delta_k: float
    delta_k_sum: float

    def success_bound(self, clean_rate: float) -> float:
        """``min(1, e^{ε_k} · clean_rate + δ_k)``: the largest expected success after poisoning
        that the guarantee allows, given the expected rate without poison."""
        if not 0 <= clean_rate <= 1:
            raise InvalidParameterError("clean_rate", clean_rate, "in [0, 1]")
        if math.isinf(self.epsilon_k):
            return 1.0
        if clean_rate == 0:
            return min(1.0, self.delta_k)
        # e^{ε_k}·rate ≥ 1 exactly when ε_k ≥ −log(rate); checking first avoids exp overflow
        if self.epsilon_k >= -math.log(clean_rate):
            return 1.0
        return min(1.0, math.exp(self.epsilon_k) * clean_rate + self.delta_k)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields; an infinite ε or δ is ``null``."""
        return {
            "k": self.k,
            "epsilon": json_number(self.epsilon),
            "delta": self.delta,
            "epsilon_k": json_number(self.epsilon_k),
            "delta_k": json_number(self.delta_k),
            "delta_k_sum": json_number(self.delta_k_sum),
        }


def group_privacy(epsilon: float, delta: float, k: int) -> GroupPrivacy:
    """``ε_k = kε`` and ``δ_k = k e^{(k−1)ε} δ`` (Dwork & Roth §2.3, Thm 2.2; Vadhan §2);
    ``delta_k_sum = δ Σ_{i<k} e^{iε}`` is the chained bound, never larger.

    >>> g = group_privacy(1.0, 1e-5, 3)
    >>> g.epsilon_k, round(g.delta_k / (3 * math.e**2 * 1e-5), 12)
    (3.0, 1.0)
    """
    k = check_count("k", k)
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not epsilon >= 0:
        raise InvalidParameterError("epsilon", epsilon, "a number >= 0")
    if delta != 0:
        check_delta(delta)
    eps = float(epsilon)
    if math.isinf(eps):
        return GroupPrivacy(k, eps, float(delta), math.inf, math.inf, math.inf)
    try:
        growth = math.exp((k - 1) * eps)
    except OverflowError:
        growth = math.inf
    delta_k = k * growth * delta if delta else 0.0
    if not delta:
        chained = 0.0
    elif eps == 0:
        chained = k * delta
    else:
        chained = delta * math.expm1(k * eps) / math.expm1(eps) if k * eps < 700 else math.inf
    return GroupPrivacy(k, eps, float(delta), k * eps, delta_k, chained)


@dataclass(frozen=True)
class PoisoningAssessment:
    """One attack against one model, set beside the model's (ε, δ) and group privacy.

    ``clean_success``: the success rate of a model trained on clean data (the same pipeline);
    ``bound``: the largest expected poisoned success the guarantee allows; ``covered``: the
    bound is below 1, so DP does limit this attack; ``consistent``: the measured poisoned rate
    respects the bound (one run, one model: evidence, not proof — the bound is on expectations).
    """

    attack: str
    k: int
    group: GroupPrivacy
    relation: str
    clean_success: float
    poisoned_success: float

    @property
    def bound(self) -> float:
        """``min(1, e^{ε_k} clean + δ_k)``."""
        return self.group.success_bound(self.clean_success)

    @property
    def covered(self) -> bool:
        """Whether the group-privacy bound says anything (is below 1)."""
        return self.bound < 1.0

    @property
    def consistent(self) -> bool:
        """Whether the measured success respects the bound."""
        return self.poisoned_success <= self.bound

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields, the bound and verdicts included."""
        return {
            "attack": self.attack,
            "k": self.k,
            "relation": self.relation,
            "group_privacy": self.group.to_dict(),
            "clean_success": self.clean_success,
            "poisoned_success": self.poisoned_success,
            "success_bound": self.bound,
            "covered": self.covered,
            "consistent": self.consistent,
        }


def assess_poisoning(
    poisoned: PoisonedData,
    *,
    epsilon: float,
    delta: float,
    clean_success: float,
    poisoned_success: float,
    relation: Neighbouring = Neighbouring.ADD_REMOVE,
) -> PoisoningAssessment:
    """Put measured success rates beside group privacy for ``poisoned``'s group size."""
    for name, value in (("clean_success", clean_success), ("poisoned_success", poisoned_success)):
        if not 0 <= value <= 1:
            raise InvalidParameterError(name, value, "in [0, 1]")
    size = poisoned.group_size(relation)
    return PoisoningAssessment(
        attack=poisoned.attack,
        k=poisoned.k,
        group=group_privacy(epsilon, delta, size),
        relation=relation.value,
        clean_success=float(clean_success),
        poisoned_success=float(poisoned_success),
    )


def _class(data: ArrayDataset, name: str, value: int) -> int:
    value = check_count(name, value, 0)
    if value >= data.num_classes:
        raise InvalidParameterError(name, value, f"a class in [0, {data.num_classes})")
    return value


def _choose(pool: NDArray[np.bool_], k: int, seed: int, attack: str) -> NDArray[np.int64]:
    k = check_count("k", k)
    candidates = np.flatnonzero(pool)
    if k > candidates.size:
        raise InvalidParameterError("k", k, f"at most {candidates.size} for {attack} on this data")
    return np.sort(np.random.default_rng(seed).choice(candidates, size=k, replace=False)).astype(
        np.int64
    )
