"""Checkpoints that carry the privacy state with the model.

A checkpoint holds the model, the optimizer, the sampler's generator, the noise generator (seeded
mode only; see :mod:`deniable.train.noise`), the privacy tracker's recorded events and the step
count. Resuming restores all of them, so the ε curve continues where it stopped and a resume can
never reset the budget already spent. Files are written to a temporary name and renamed into place
(atomic on POSIX), so a crash mid-write leaves the previous checkpoint intact. Loading uses
``torch.load(weights_only=True)``: a checkpoint cannot execute code.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from deniable.errors import DeniableError
from deniable.train.private import PrivateTraining

FORMAT = "deniable-checkpoint-1"


def save_checkpoint(
    path: Path,
    training: PrivateTraining,
    config: dict[str, object],
    extra: dict[str, object] | None = None,
) -> None:
    """Write ``training``'s whole state, the run ``config`` and ``extra`` (plain data, e.g. the
    ε curve so far) to ``path`` atomically."""
    write_checkpoint(path, config, extra, training.state_dict())


def save_model_checkpoint(
    path: Path, model: nn.Module, config: dict[str, object], extra: dict[str, object]
) -> None:
    """Write a model released in one go (a noise placement other than DP-SGD) with its run
    ``config`` and ``extra`` (its privacy claim), in the same format; ``training`` holds only
    ``model``."""
    write_checkpoint(path, config, extra, {"model": model.state_dict()})


def write_checkpoint(
    path: Path,
    config: dict[str, object],
    extra: dict[str, object] | None,
    training: dict[str, object],
) -> None:
    """Write a checkpoint of any training ``state_dict`` (single-process, distributed rank 0, a
    released model) with its ``config`` and ``extra``, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "config": config, "extra": extra or {}, "training": training}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, object]:
    """Read a checkpoint (weights only); one-line errors for missing or foreign files."""
    if not path.exists():
        raise DeniableError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError) as exc:
        raise DeniableError(f"{path} is not a readable deniable checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DeniableError(f"{path} is not a deniable checkpoint (format {FORMAT} expected)")
    return state


def resume(path: Path, training: PrivateTraining) -> dict[str, object]:
    """Restore ``training`` from ``path``; returns the checkpoint's ``extra`` data."""
    state = load_checkpoint(path)
    training.load_state_dict(state["training"])  # type: ignore[arg-type]
    extra = state.get("extra", {})
    assert isinstance(extra, dict)
    return extra


def reported_model_state(state: dict[str, object]) -> dict[str, torch.Tensor]:
    """The state dict of the model a run reported (and audits/evaluations must reload): the
    parameter average when the run kept one, else the trained model."""
    extra = state.get("extra")
    if isinstance(extra, dict) and isinstance(extra.get("reported_model"), dict):
        return extra["reported_model"]
    training = state["training"]
    assert isinstance(training, dict)
    return training["model"]
