"""Generalisation: the train/test gap, and what it says about membership through Yeom et al.

Yeom, Giacomelli, Fredrikson & Jha (2018), "Privacy risk in machine learning: analyzing the
connection to overfitting" (CSF), tie overfitting to membership inference. Their threshold
adversary calls ``z`` a member when its loss is at most ``τ``, the model's average training loss;
its membership advantage is ``Adv = TPR − FPR = P[ℓ ≤ τ | member] − P[ℓ ≤ τ | non-member]``,
which grows with the generalisation gap. Their Theorem 1: an ε-DP learner gives every adversary
``Adv ≤ e^ε − 1``. With δ, the same one-line argument (``TPR ≤ e^ε·FPR + δ``) gives
``Adv ≤ e^ε − 1 + δ``; both DP inequalities together (the hypothesis-testing region of Kairouz,
Oh & Viswanath 2015, used by Humphries et al. 2020) give the tighter
``Adv ≤ (e^ε − 1 + 2δ) / (e^ε + 1)``.

The bound is on the advantage in expectation over training (the DP guarantee is about the
training algorithm, for the neighbouring relation its ε was computed under); the advantage
measured here is one model on one split, with a one-sided Clopper–Pearson lower confidence bound
to show how far sampling error alone could explain it. A measured advantage above the bound
points to a bug in the training or in the accounting; one below says nothing about tightness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from torch import nn

from deniable.audit.bounds_binomial import check_confidence, cp_lower, cp_upper
from deniable.audit.signals import compute_signals
from deniable.data import ArrayDataset
from deniable.errors import DeniableError, InvalidParameterError, check_delta
from deniable.evaluate._common import DEFAULT_BATCH_SIZE, json_number


@dataclass(frozen=True)
class AdvantageBound:
    """Upper bounds on membership advantage implied by (ε, δ)-DP (both capped at 1)."""

    epsilon: float
    delta: float
    yeom: float
    tight: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields; an infinite ε is ``null``."""
        return {
            "epsilon": json_number(self.epsilon),
            "delta": self.delta,
            "yeom": self.yeom,
            "tight": self.tight,
        }


def advantage_bound(epsilon: float, delta: float = 0.0) -> AdvantageBound:
    """``yeom = e^ε − 1 + δ`` (Yeom et al. Thm 1 when δ = 0), ``tight = (e^ε − 1 + 2δ)/(e^ε + 1)``.

    >>> b = advantage_bound(math.log(2))
    >>> round(b.yeom, 12), round(b.tight, 12)
    (1.0, 0.333333333333)
    """
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not epsilon >= 0:
        raise InvalidParameterError("epsilon", epsilon, "a number >= 0 (inf allowed)")
    if delta != 0:
        check_delta(delta)
    if math.isinf(epsilon):
        return AdvantageBound(float(epsilon), float(delta), 1.0, 1.0)
    growth = math.expm1(epsilon)
    yeom = min(1.0, growth + delta)
    tight = min(1.0, (growth + 2 * delta) / (growth + 2))
    return AdvantageBound(float(epsilon), float(delta), yeom, tight)


@dataclass(frozen=True)
class ThresholdAttack:
    """Yeom et al.'s threshold attack at ``threshold`` on member and non-member losses.

    ``advantage_lower``: ``TPR_lower − FPR_upper`` with one-sided Clopper–Pearson bounds at
    ``(1 − confidence)/2`` each, so it is a lower bound on the true advantage of this threshold at
    ``confidence`` (the threshold itself is read from the members' losses; see the module note).
    """

    threshold: float
    tpr: float
    fpr: float
    advantage_lower: float
    confidence: float
    n_members: int
    n_nonmembers: int

    @property
    def advantage(self) -> float:
        """TPR − FPR."""
        return self.tpr - self.fpr

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields, the advantage included."""
        return {
            "threshold": self.threshold,
            "tpr": self.tpr,
            "fpr": self.fpr,
            "advantage": self.advantage,
            "advantage_lower": self.advantage_lower,
            "confidence": self.confidence,
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
        }


def threshold_attack(
    member_losses: ArrayLike,
    nonmember_losses: ArrayLike,
    *,
    threshold: float | None = None,
    confidence: float = 0.95,
) -> ThresholdAttack:
    """Call ``loss ≤ threshold`` a member; ``threshold=None`` uses the mean member loss (Yeom).

    >>> a = threshold_attack([0.1, 0.2, 0.9], [0.5, 1.0, 2.0, 0.3])
    >>> round(a.threshold, 12), a.tpr, a.fpr
    (0.4, 0.6666666666666666, 0.25)
    """
    members = _losses("member_losses", member_losses)
    nonmembers = _losses("nonmember_losses", nonmember_losses)
    alpha = 1 - check_confidence(confidence)
    tau = float(members.mean()) if threshold is None else float(threshold)
    if not math.isfinite(tau):
        raise InvalidParameterError("threshold", threshold, "a finite number or None")
    k_in = int(np.count_nonzero(members <= tau))
    k_out = int(np.count_nonzero(nonmembers <= tau))
    lower = float(
        cp_lower(k_in, members.size, alpha / 2) - cp_upper(k_out, nonmembers.size, alpha / 2)
    )
    return ThresholdAttack(
        threshold=tau,
        tpr=k_in / members.size,
        fpr=k_out / nonmembers.size,
        advantage_lower=lower,
        confidence=float(confidence),
        n_members=int(members.size),
        n_nonmembers=int(nonmembers.size),
    )


@dataclass(frozen=True)
class GeneralisationReport:
    """Train/test accuracy and mean cross-entropy, their gaps, the threshold attack, and — when
    the model's (ε, δ) is given — the advantage bound it must respect."""

    train_accuracy: float
    test_accuracy: float
    train_loss: float
    test_loss: float
    attack: ThresholdAttack
    bound: AdvantageBound | None = None

    @property
    def accuracy_gap(self) -> float:
        """Train accuracy − test accuracy."""
        return self.train_accuracy - self.test_accuracy

    @property
    def loss_gap(self) -> float:
        """Test loss − train loss."""
        return self.test_loss - self.train_loss

    @property
    def within_bound(self) -> bool | None:
        """Whether the measured advantage respects the tight DP bound (``None`` without ε)."""
        if self.bound is None:
            return None
        return self.attack.advantage <= self.bound.tight

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields, the gaps included."""
        return {
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "accuracy_gap": self.accuracy_gap,
            "train_loss": json_number(self.train_loss),
            "test_loss": json_number(self.test_loss),
            "loss_gap": json_number(self.loss_gap),
            "membership_attack": self.attack.to_dict(),
            "advantage_bound": None if self.bound is None else self.bound.to_dict(),
            "within_bound": self.within_bound,
        }


def generalisation_report(
    model: nn.Module,
    train: ArrayDataset,
    test: ArrayDataset,
    *,
    epsilon: float | None = None,
    delta: float = 0.0,
    confidence: float = 0.95,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> GeneralisationReport:
    """Accuracy and loss of ``model`` on its training data (members) and on test data.

    ``epsilon``/``delta``: the model's privacy guarantee, to compare the threshold attack's
    advantage with :func:`advantage_bound`; ``None`` for a non-private model.
    """
    if train.num_classes != test.num_classes:
        raise DeniableError(
            f"train has {train.num_classes} classes and test {test.num_classes}: use one split"
        )
    sig_in = compute_signals(model, train.features, train.labels, batch_size=batch_size)
    sig_out = compute_signals(model, test.features, test.labels, batch_size=batch_size)
    loss_in, loss_out = sig_in.loss[:, 0], sig_out.loss[:, 0]
    return GeneralisationReport(
        train_accuracy=float(sig_in.correct[:, 0].mean()),
        test_accuracy=float(sig_out.correct[:, 0].mean()),
        train_loss=float(loss_in.mean()),
        test_loss=float(loss_out.mean()),
        attack=threshold_attack(loss_in, loss_out, confidence=confidence),
        bound=None if epsilon is None else advantage_bound(epsilon, delta),
    )


def _losses(name: str, values: ArrayLike) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise DeniableError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise DeniableError(f"{name} holds NaN; losses must be numbers (inf allowed)")
    return arr
