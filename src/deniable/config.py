"""Run configuration: one pydantic model, loadable from TOML, with one-line errors naming the key.

Every CLI flag of ``deniable train`` / ``deniable run`` is a key of :class:`TrainConfig`, every
flag of ``deniable account`` / ``deniable calibrate`` a key of :class:`AccountConfig`; a TOML file
(``--config``) gives defaults and flags override them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deniable.errors import DeniableError

Config = TypeVar("Config", bound=BaseModel)
Method = Literal["dpsgd", "pate", "label-dp", "input", "output"]


class TrainConfig(BaseModel):
    """What to train and how privately. Either ``noise_multiplier`` or ``target_epsilon``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "digits"
    data_dir: Path | None = None
    model: str = "mlp"
    epochs: float = Field(30.0, gt=0)
    batch_size: int = Field(256, ge=1, description="expected units per batch (q·U)")
    learning_rate: float = Field(0.2, gt=0)
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = Field(0.9, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    noise_multiplier: float | None = Field(None, gt=0)
    target_epsilon: float | None = Field(3.0, gt=0)
    delta: float = Field(1e-5, gt=0, lt=1)
    accountant: Literal["pld", "rdp"] | None = None
    sampling: Literal["poisson", "fixed"] = "poisson"
    per_layer_clipping: bool = False
    microbatch_size: int | None = Field(None, ge=1)
    physical_batch_size: int | None = Field(None, ge=1)
    seed: int | None = 0
    augmentation: Literal["none", "shift", "crop-flip"] = "none"
    augmentation_multiplicity: int = Field(1, ge=1, description="K augmented copies per example")
    augmentation_pad: int = Field(2, ge=0, description="pixels of padding before the crop")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="parameter averaging decay")
    compile: bool = Field(False, description="torch.compile the per-example gradients/clipping")
    ghost_two_pass: bool = Field(
        False, description="ghost clipping in two backward passes: less memory, slower"
    )
    baseline_epochs: float | None = Field(None, gt=0)
    baseline_learning_rate: float = Field(0.1, gt=0)
    out: Path = Path("runs")
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints; 0 = at end")
    audit: bool = True
    audit_canaries: int = Field(1000, ge=2)
    # Where the noise goes (issue #7): see deniable.methods. Non-DP-SGD methods are calibrated
    # from target_epsilon and fit their models without noise on privatised inputs/labels/votes.
    method: Method = "dpsgd"
    compare: tuple[Method, ...] = Field((), description="methods `deniable run` also trains")
    fit_epochs: int = Field(30, ge=1, description="epochs of the fits inside pate/label-dp/input")
    fit_learning_rate: float = Field(0.005, gt=0, description="their Adam learning rate")
    pate_teachers: int | None = Field(None, ge=2, description="None: min(250, train size // 50)")
    pate_queries: int = Field(200, ge=1, description="public queries the teachers answer")
    workers: int = Field(1, ge=1, description="processes that fit PATE's teachers")
    input_low: float = Field(0.0, description="data-independent lower clamp of every feature")
    input_high: float = Field(1.0, description="data-independent upper clamp of every feature")
    input_label_share: float = Field(0.5, gt=0, lt=1, description="share of ε for the label")
    regularization: float = Field(0.01, gt=0, description="λ of output perturbation")
    # Operations: where results go and how they are logged; they do not change the training.
    track: tuple[str, ...] = Field((), description="jsonl, tensorboard, mlflow (checked on use)")
    mlflow_uri: str = "file:./mlruns"

    @model_validator(mode="after")
    def _one_noise_source(self) -> TrainConfig:
        if self.noise_multiplier is not None and self.target_epsilon is not None:
            # A flag for one clears the other (see with_overrides); both set is ambiguous.
            raise ValueError("give noise_multiplier or target_epsilon, not both")
        if self.noise_multiplier is None and self.target_epsilon is None:
            raise ValueError("give noise_multiplier or target_epsilon")
        for method in (self.method, *self.compare):
            if method != "dpsgd" and self.target_epsilon is None:
                raise ValueError(f"method {method!r} is calibrated from target_epsilon; give it")
        if self.input_low >= self.input_high:
            raise ValueError("input_low must be below input_high")
        return self


class AccountConfig(BaseModel):
    """Keys of ``deniable account`` and ``deniable calibrate``, one per flag (``--sample-rate``
    is ``sample_rate``; ``phase`` is the list of ``Q:SIGMA:STEPS`` strings). Ranges are checked
    where the numbers are used, with the same one-line errors as the flags."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: float | None = None
    noise_multiplier: float | None = None
    steps: int | None = None
    phase: list[str] = Field(default_factory=list)
    target_epsilon: float | None = None
    delta: float = 1e-5
    accountant: str = "pld"
    relation: str = "add_remove"
    dataset_size: int | None = None


def load_account_config(path: Path | None, overrides: dict[str, object]) -> AccountConfig:
    """TOML file (optional) then flag overrides (None values ignored), validated."""
    data = _read_toml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return _validated(AccountConfig, data)


def _read_toml(path: Path | None) -> dict[str, object]:
    if path is None:
        return {}
    if not path.exists():
        raise DeniableError(f"config file {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise DeniableError(f"config file {path} is not valid TOML: {exc}") from None


def _validated(model: type[Config], data: dict[str, object]) -> Config:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        if not key:  # a check across keys (model validator): no single key to name
            raise DeniableError(f"config: {message}") from None
        raise DeniableError(f"config key '{key}': {message}") from None


OPERATIONAL_KEYS = frozenset(
    {
        "out",
        "track",
        "mlflow_uri",
        "audit",
        "audit_canaries",
        "compare",
        "workers",
        "compile",
        "ghost_two_pass",
    }
)
"""Keys that do not change what is trained: a run may be resumed with other values for them."""


def training_keys(config: dict[str, object]) -> dict[str, object]:
    """``config`` (a dumped TrainConfig) without :data:`OPERATIONAL_KEYS`."""
    return {k: v for k, v in config.items() if k not in OPERATIONAL_KEYS}


def load_config(path: Path | None, overrides: dict[str, object]) -> TrainConfig:
    """TOML file (optional) then flag overrides (None values ignored), validated."""
    data = _read_toml(path)
    given = {k: v for k, v in overrides.items() if v is not None}
    if "noise_multiplier" in given:
        data.pop("target_epsilon", None)
        data["target_epsilon"] = None
    if "target_epsilon" in given:
        data.pop("noise_multiplier", None)
    data.update(given)
    if "noise_multiplier" in data and "target_epsilon" not in data:
        data["target_epsilon"] = None
    return _validated(TrainConfig, data)
