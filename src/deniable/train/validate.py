"""Check a model is safe for DP-SGD before training, and repair the usual problems.

DP-SGD's guarantee rests on one property: each privacy unit's gradient depends on that unit's
data only, so clipping it to C bounds the unit's influence (sensitivity C). Layers that break it,
or that break the machinery computing per-sample gradients, are rejected with the reason:

- BatchNorm (any dimension, SyncBatchNorm): normalises with batch statistics, so one example's
  output and gradient depend on every other example in the batch; its running statistics are
  also computed from private data without noise. Use GroupNorm (:func:`repair_model`).
- InstanceNorm with ``track_running_stats=True``: the running statistics are a non-private
  release of the training data.
- In-place activations/dropout (``inplace=True``): overwrite tensors that torch.func transforms
  and ghost-clipping hooks still need.
- Embedding with ``scale_grad_by_freq=True`` (scales by batch-wide counts: mixes examples) or
  ``sparse=True`` (sparse gradients cannot be clipped per sample).
- Trainable parameters in a module type whose per-sample gradients have not been verified
  against a per-example reference (``tests/test_grad_per_sample.py``); ``allow_unverified``
  accepts them once you have checked that their forward treats examples independently.

Not detectable here: cross-example operations written inside a custom ``forward`` (e.g.
``x - x.mean(0)``) and in-place tensor methods (``x.relu_()``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm
from torch.nn.parameter import is_lazy

from deniable.errors import DeniableError, UnsupportedModuleError
from deniable.models.attention import DPMultiheadAttention
from deniable.models.standardized import WSConv2d

MAX_GROUPS = 32

# Module types whose per-sample gradients are tested against a per-example loop.
VERIFIED_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.Embedding,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LSTM,
    nn.GRU,
    nn.RNN,
    nn.LSTMCell,
    nn.GRUCell,
    nn.RNNCell,
    nn.MultiheadAttention,
    nn.PReLU,
    WSConv2d,  # overrides Conv2d.forward (vmap path); also tests/test_models_standardized.py
)

ModuleCheck = Callable[[nn.Module], "str | None"]
_CHECKS: list[ModuleCheck] = []


@dataclass(frozen=True)
class ModuleProblem:
    """One module that makes a model unsafe for DP-SGD, and why."""

    path: str
    module_type: str
    reason: str

    def __str__(self) -> str:
        return f"`{self.path or '<root>'}` ({self.module_type}): {self.reason}"


@dataclass(frozen=True)
class Repair:
    """A repaired copy of a model and one line per change made."""

    model: nn.Module
    changes: tuple[str, ...]


def register_check(check: ModuleCheck) -> ModuleCheck:
    """Add ``check(module) -> reason or None`` to the checks :func:`validate_model` runs."""
    _CHECKS.append(check)
    return check


@register_check
def _batch_norm(module: nn.Module) -> str | None:
    if not isinstance(module, _BatchNorm):
        return None
    return (
        "BatchNorm mixes the examples of a batch, so one example's gradient depends on the "
        "others and clipping no longer bounds its influence; replace it with GroupNorm "
        "(repair_model does)"
    )


@register_check
def _instance_norm(module: nn.Module) -> str | None:
    if not (isinstance(module, _InstanceNorm) and module.track_running_stats):
        return None
    return (
        "track_running_stats=True releases running statistics of the private data without "
        "noise; set track_running_stats=False (repair_model does)"
    )


@register_check
def _in_place(module: nn.Module) -> str | None:
    if getattr(module, "inplace", False) is not True:
        return None
    return (
        "inplace=True overwrites tensors that torch.func transforms and ghost-clipping hooks "
        "still need; set inplace=False (repair_model does)"
    )


@register_check
def _embedding(module: nn.Module) -> str | None:
    if not isinstance(module, nn.Embedding | nn.EmbeddingBag):
        return None
    if module.scale_grad_by_freq:
        return (
            "scale_grad_by_freq=True scales gradients by counts over the whole batch (mixes "
            "examples); set it to False (repair_model does)"
        )
    if module.sparse:
        return "sparse=True gradients cannot be clipped per sample; set sparse=False"
    return None


def is_verified(module: nn.Module) -> bool:
    """Whether ``module`` is (a subclass not overriding ``forward`` of) a verified type."""
    return any(
        isinstance(module, cls) and type(module).forward is cls.forward for cls in VERIFIED_MODULES
    )


def find_problems(model: nn.Module, *, allow_unverified: bool = False) -> list[ModuleProblem]:
    """Every module of ``model`` that is unsafe for DP-SGD, in module order."""
    problems = []
    for path, module in model.named_modules():
        kind = type(module).__name__
        reasons = [reason for reason in (check(module) for check in _CHECKS) if reason]
        problems += [ModuleProblem(path, kind, reason) for reason in reasons]
        trainable = [n for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if trainable and not reasons and not allow_unverified and not is_verified(module):
            names = ", ".join(trainable)
            reason = (
                f"trainable parameters ({names}) in a module type deniable has not verified; "
                "check its forward treats examples independently, then pass allow_unverified=True"
            )
            problems.append(ModuleProblem(path, kind, reason))
    return problems


def validate_model(model: nn.Module, *, allow_unverified: bool = False) -> None:
    """Raise :class:`UnsupportedModuleError` naming every unsafe module and why (one line)."""
    problems = find_problems(model, allow_unverified=allow_unverified)
    if problems:
        raise UnsupportedModuleError(
            "model is not safe for DP-SGD: " + "; ".join(str(p) for p in problems)
        )


def repair(model: nn.Module) -> Repair:
    """A copy of ``model`` with the repairable problems fixed, and what changed.

    BatchNorm{1,2,3}d → GroupNorm(gcd(C, 32) groups, C) keeping eps and the affine scale/shift
    (GroupNorm has no running statistics, so eval-mode outputs change: retrain or fine-tune);
    InstanceNorm running statistics dropped; ``inplace=True`` → False; Embedding
    ``scale_grad_by_freq``/``sparse`` → False. ``nn.MultiheadAttention`` →
    :class:`~deniable.models.attention.DPMultiheadAttention` (same function and weights; not a
    safety fix but the one that lets ghost clipping cover transformers). Unverified module types
    are left as they are.
    """
    lazy = [
        f"`{path or '<root>'}`"
        for path, m in model.named_modules()
        if any(is_lazy(t) for t in [*m.parameters(recurse=False), *m.buffers(recurse=False)])
    ]
    if lazy:
        raise DeniableError(
            f"cannot repair lazy module(s) {', '.join(lazy)} before their sizes are known; "
            "run one forward pass first"
        )
    fixed = copy.deepcopy(model)
    changes = []
    replacements: list[tuple[str, nn.Module]] = []
    for path, module in fixed.named_modules():
        label = f"`{path or '<root>'}`"
        replacement = _replacement(module)
        if replacement is not None:
            replacements.append((path, replacement))
            changes.append(f"{label}: {_describe(module)} → {_describe(replacement)}")
        if getattr(module, "inplace", False) is True:
            module.inplace = False
            changes.append(f"{label}: {type(module).__name__} inplace=True → False")
        if isinstance(module, nn.Embedding | nn.EmbeddingBag):
            for flag in ("scale_grad_by_freq", "sparse"):
                if getattr(module, flag):
                    setattr(module, flag, False)
                    changes.append(f"{label}: {type(module).__name__} {flag}=True → False")
    for path, replacement in replacements:
        if not path:
            fixed = replacement
            continue
        parent, _, name = path.rpartition(".")
        setattr(fixed.get_submodule(parent), name, replacement)
    return Repair(fixed, tuple(changes))


def repair_model(model: nn.Module) -> nn.Module:
    """The repaired copy from :func:`repair` (use :func:`repair` to see what changed)."""
    return repair(model).model


def _replacement(module: nn.Module) -> nn.Module | None:
    if isinstance(module, nn.MultiheadAttention):
        if module.bias_k is not None or module.add_zero_attn:
            return None  # no DP equivalent: whole-model vmap handles it
        return DPMultiheadAttention.from_mha(module)
    if isinstance(module, _BatchNorm):
        channels = module.num_features
        groups = math.gcd(channels, MAX_GROUPS)
        new: nn.Module = nn.GroupNorm(groups, channels, eps=module.eps, affine=module.affine)
    elif isinstance(module, _InstanceNorm) and module.track_running_stats:
        cls = cast(type[_InstanceNorm], type(module))
        new = cls(
            module.num_features,
            eps=module.eps,
            affine=module.affine,
            track_running_stats=False,
        )
    else:
        return None
    if module.affine:
        _copy_affine(module, new)
    tensors = [*module.parameters(), *module.buffers()]
    if tensors:
        ref = tensors[0]
        new.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
    new.train(module.training)
    return new


def _copy_affine(old: nn.Module, new: nn.Module) -> None:
    for name in ("weight", "bias"):
        source, target = getattr(old, name), getattr(new, name)
        target.data.copy_(source.data)
        target.requires_grad_(source.requires_grad)


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.GroupNorm):
        return f"GroupNorm({module.num_groups} groups, {module.num_channels} channels)"
    if isinstance(module, _BatchNorm | _InstanceNorm):
        stats = "" if module.track_running_stats else ", no running stats"
        return f"{type(module).__name__}({module.num_features}{stats})"
    return type(module).__name__
