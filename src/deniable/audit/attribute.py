"""Attribute inference: does the model reveal a sensitive column of its training examples?

The attacker knows every feature of a target example except one sensitive categorical column
(e.g. ``sex`` in UCI Adult, one-hot encoded as ``sex=Female``, ``sex=Male``) and its label, and
can query the model. Two guesses are compared:

- **baseline** that does not query the model: a classifier trained on auxiliary data (the test
  split, whose sensitive values the attacker is assumed to know) predicting the sensitive value
  from the other features, giving a prior P(v | other features);
- **model query** (Fredrikson et al. 2015; Yeom et al. 2018, "Privacy risk in machine learning"):
  fill the sensitive column with each candidate value v, query the model, and guess the value
  maximising log P(v | other features) + log P_model(label | features with v) — the baseline's
  prior updated by the model's likelihood of the known label.

Leakage is the attack's accuracy on training members minus the baseline's, and minus the attack's
own accuracy on non-members: a model that generalises reveals the attribute equally for both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from deniable.data.dataset import ArrayDataset, Split
from deniable.errors import DeniableError


@dataclass(frozen=True)
class AttributeInference:
    """Accuracies of guessing ``column`` on members (train) and non-members (test)."""

    column: str
    values: list[str]
    attack_accuracy_members: float
    attack_accuracy_nonmembers: float
    baseline_accuracy_members: float
    majority_rate: float

    @property
    def advantage_over_baseline(self) -> float:
        return self.attack_accuracy_members - self.baseline_accuracy_members

    @property
    def membership_gap(self) -> float:
        return self.attack_accuracy_members - self.attack_accuracy_nonmembers

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["advantage_over_baseline"] = self.advantage_over_baseline
        out["membership_gap"] = self.membership_gap
        return out


def one_hot_columns(data: ArrayDataset, column: str) -> tuple[list[int], list[str]]:
    """Indices of the one-hot features ``column=value`` and the values, in feature order."""
    names = list(data.feature_names or [])
    prefix = f"{column}="
    found = [(i, n[len(prefix) :]) for i, n in enumerate(names) if n.startswith(prefix)]
    if len(found) < 2:
        raise DeniableError(
            f"no one-hot feature columns named '{column}=<value>' in dataset {data.name}; "
            "attribute inference needs a categorical feature"
        )
    return [i for i, _ in found], [v for _, v in found]


def _true_values(data: ArrayDataset, columns: list[int]) -> np.ndarray:
    return np.argmax(data.features[:, columns], axis=1)


def label_log_likelihoods(model: nn.Module, data: ArrayDataset, columns: list[int]) -> np.ndarray:
    """(n, k): log P_model(label | features with the sensitive column set to value k)."""
    x, y = data.to_tensors()
    model.eval()
    losses = []
    with torch.no_grad():
        for k in range(len(columns)):
            filled = x.clone()
            filled[:, columns] = 0.0
            filled[:, columns[k]] = 1.0
            losses.append(nn.functional.cross_entropy(model(filled), y, reduction="none"))
    return -torch.stack(losses, dim=1).numpy().astype(np.float64)


def attribute_inference(model: nn.Module, split: Split, column: str) -> AttributeInference:
    """Model-query attack vs a no-query baseline for ``column`` (see the module docstring).

    Assumes raw one-hot values (0/1) in the sensitive columns, as the tabular loaders produce.
    """
    columns, values = one_hot_columns(split.train, column)
    members_truth = _true_values(split.train, columns)
    others_truth = _true_values(split.test, columns)
    keep = np.setdiff1d(np.arange(split.train.features.shape[1]), columns)

    def others(data: ArrayDataset) -> np.ndarray:
        return data.features[:, keep].reshape(len(data), -1)

    baseline = LogisticRegression(max_iter=1000).fit(others(split.test), others_truth)
    if list(baseline.classes_) != list(range(len(columns))):
        raise DeniableError(f"every value of '{column}' must occur in the auxiliary (test) split")

    def guess(data: ArrayDataset) -> np.ndarray:
        prior = baseline.predict_log_proba(others(data))
        return np.argmax(prior + label_log_likelihoods(model, data, columns), axis=1)

    attack_members = float(np.mean(guess(split.train) == members_truth))
    attack_others = float(np.mean(guess(split.test) == others_truth))
    baseline_members = float(np.mean(baseline.predict(others(split.train)) == members_truth))
    majority = float(np.max(np.bincount(members_truth)) / members_truth.size)
    return AttributeInference(
        column, values, attack_members, attack_others, baseline_members, majority
    )
