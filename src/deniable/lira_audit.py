"""LiRA against a finished run's model (Carlini et al. 2022), with shadows trained like it.

The target is the run's reported model; its members are its training examples. The audit
population is up to ``max_examples`` training examples (members) and as many test examples
(non-members). ``shadows`` shadow models are trained on random halves of that population with
the run's own algorithm: DP-SGD with the noise multiplier the run actually used (clipping norm,
epochs, optimiser from its config, batch size scaled so that the shadows' sampling rate is the
target's), or the non-private baseline's recipe for a non-private reference. Each population
example is then scored by online and offline LiRA (per-example Gaussians of the logit-scaled
confidence; a pooled variance below 64 shadows) and by LOSS, and the three ROCs are reported:
AUC, TPR at 1 %, 0.1 % and 0 % FPR.

With ``workers > 1`` the shadows train in that many workers
(:func:`deniable.audit.shadows.train_shadows`), which makes 64+ shadows practical: spawned
processes on this machine, or Ray tasks with ``backend="ray"`` (a Ray cluster when Ray was
initialised with its address first; :mod:`deniable.fleet`). The backend does not change the
shadows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import numpy as np
from torch import nn

from deniable.audit.metrics import attack_metrics
from deniable.audit.mia_lira import lira_offline, lira_online
from deniable.audit.shadows import Progress, ShadowConfig, train_shadows
from deniable.audit.signals import compute_signals
from deniable.config import TrainConfig
from deniable.data import ArrayDataset, Split
from deniable.errors import DeniableError, check_count
from deniable.fleet import Backend


def audit_population(
    split: Split, max_examples: int, seed: int
) -> tuple[ArrayDataset, np.ndarray]:
    """Up to ``max_examples`` members (training) and as many non-members (test), seeded; the
    population and its membership in the target's training set."""
    check_count("max_examples", max_examples)
    rng = np.random.default_rng([seed, 17])
    count = min(max_examples, len(split.train), len(split.test))
    members = np.sort(rng.choice(len(split.train), count, replace=False))
    others = np.sort(rng.choice(len(split.test), count, replace=False))
    inside, outside = split.train.subset(members), split.test.subset(others)
    population = ArrayDataset(
        features=np.concatenate([inside.features, outside.features]),
        labels=np.concatenate([inside.labels, outside.labels]),
        num_classes=split.num_classes,
        name=f"{split.name} audit population",
    )
    return population, np.concatenate([np.ones(count, bool), np.zeros(count, bool)])


def lira_audit(
    split: Split,
    config: TrainConfig,
    model: nn.Module,
    *,
    noise_multiplier: float | None,
    shadows: int = 16,
    workers: int = 1,
    backend: Backend = "processes",
    max_examples: int = 1000,
    progress: Progress | None = None,
) -> dict[str, object]:
    """LiRA (online, offline) and LOSS against ``model``, trained by ``config`` on
    ``split.train`` with ``noise_multiplier`` (None: trained without privacy)."""
    if config.method != "dpsgd":
        raise DeniableError(
            f"LiRA shadows retrain the run's algorithm, and only dpsgd runs can be retrained "
            f"as shadows (this run used {config.method}); use the canary audit"
        )
    if config.sampling != "poisson" or config.microbatch_size or split.train.keys is not None:
        raise DeniableError(
            "LiRA shadows emulate example-level DP-SGD with Poisson sampling; this run differs"
        )
    population, is_member = audit_population(split, max_examples, config.seed or 0)
    half = len(population) / 2
    rate = config.batch_size / len(split.train)
    shadow_config = replace(
        ShadowConfig.from_train_config(
            config,
            n_shadows=check_count("shadows", shadows, 2),
            noise_multiplier=noise_multiplier,
            batch_size=max(1, round(rate * half)),
        ),
        balanced=True,  # every example IN exactly half the shadows: no example lacks a side
    )
    trained = train_shadows(
        population, shadow_config, workers=workers, backend=backend, progress=progress
    )
    x, y = population.to_tensors()
    target = compute_signals(model, x, y)
    phi = trained.signals(x, y).scaled_confidence
    online = lira_online(target.scaled_confidence, phi, trained.membership)
    offline = lira_offline(target.scaled_confidence, phi, trained.membership)
    attacks = {
        "lira_online": online.scores,
        "lira_offline": offline.scores,
        "loss": -target.loss[:, 0],
    }
    return {
        "shadows": shadows,
        "workers": workers,
        "backend": backend,
        "population": len(population),
        "members": int(is_member.sum()),
        "shadow_training": {
            key: value for key, value in asdict(shadow_config).items() if key != "seed"
        },
        "fixed_variance": online.fixed_variance,
        "attacks": {
            name: attack_metrics(scores, is_member).to_dict() for name, scores in attacks.items()
        },
        "note": (
            "TPR at 0.1 % FPR needs >= 1000 non-members to be measurable; "
            f"this population has {len(population) - int(is_member.sum())}"
        )
        if len(population) - is_member.sum() < 1000
        else None,
        "expected_members_per_shadow": math.floor(half),
    }
