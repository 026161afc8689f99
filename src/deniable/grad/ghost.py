"""Ghost clipping: per-example gradient norms without per-example gradients, then a clipped sum.

One forward and one backward pass (Li, Tramèr, Liang & Hashimoto 2022; Bu, Wang, Zha & Karypis
2023, "Differentially Private Optimization on Large Model at Small Cost", book-keeping):

1. Forward the whole batch with hooks that keep each trainable layer's input ``a`` and output,
   take per-example losses ℓ_i, and differentiate Σ_i ℓ_i only as far as the layer outputs (no
   parameter gradients), which gives each layer's output gradient ``b``. A hook runs the layer's
   rule in :mod:`deniable.grad.ghost_rules` as soon as its ``b`` arrives: (a, b) → ‖∇_layer ℓ_i‖²
   (their sum over layers is ‖g_i‖²) and what the layer's weighted sum will need, and the rest
   is released during the backward (a LayerNorm or a bias keeps only its (B, d) per-example
   gradients; a Linear layer keeps a and b, or its per-example gradients where those are
   smaller).
2. With w_i = min(1, C/‖g_i‖), each rule forms Σ_i w_i ∇_layer ℓ_i from what it kept (for a
   Linear layer (w ⊙ B)ᵀA, the product a normal backward pass computes with w = 1): the
   flat-clipped sum, same as :func:`~deniable.grad.clip.clip_and_sum`, add/remove-one L2
   sensitivity C, without a second pass through the network.

Privacy unit: one example (row of ``inputs``). Group keys (user-level DP) are not supported here;
use :func:`~deniable.grad.per_sample.per_sample_gradients` with ``keys``.

Assumptions the hooks rely on (checked where possible): every layer with trainable parameters
has a rule (a registered one or the per-layer vmap fallback; else
:class:`~deniable.errors.GhostUnsupportedError` names it, and the caller uses whole-model vmap),
sees batch-first tensors whose row i comes from example i only (a layer fed a (T, B, d) tensor
with T = B cannot be detected), shares no parameter with another layer, its parameters are used
only inside its own forward (checked for layers the forward never calls), and its output is not
modified in place afterwards. Dropout in train mode is fine: both the norms and the sums use the
masks of the one forward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.graph import GradientEdge, get_gradient_edge
from torch.func import vmap

from deniable.errors import DeniableError, GhostUnsupportedError, check_positive
from deniable.grad.clip import ClipResult, clip_factors
from deniable.grad.ghost_rules import (
    GhostRule,
    ParamNorm,
    ghost_rule_for,
    layer_vmap_rule,
    linear_rule,
)
from deniable.grad.ghost_shared import Key, count_readers, sharing
from deniable.grad.per_sample import LossFn, as_scalar_loss

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GhostNorms:
    """Per-example gradient norms of one batch.

    Attributes:
        norms: (B,) flat L2 norms ‖g_i‖ over all trainable parameters.
        losses: (B,) per-example losses, detached.
        layer_methods: ``{"layer.param": "gram" | "explicit"}``, how each norm was computed.
    """

    norms: Tensor
    losses: Tensor
    layer_methods: dict[str, str]


@dataclass(frozen=True)
class GhostClipResult(ClipResult):
    """A :class:`ClipResult` (flat clipping, one example per unit) plus what ghost clipping saw."""

    losses: Tensor
    layer_methods: dict[str, str]


@dataclass
class _Call:
    """One call of a layer: its input, and its output as a gradient edge (not the tensor, so
    the output is freed as soon as autograd no longer needs it)."""

    inputs: Tensor
    output_edge: GradientEdge | None
    output_shape: torch.Size
    output_like: Tensor  # an empty tensor of the output's dtype/device, for zero gradients
    input_version: int
    output_grad: Tensor | None = None  # set by a hook during the first backward


@dataclass
class _Layer:
    path: str
    module: nn.Module
    rule: GhostRule
    keep_sums: bool  # book-keeping: the parts keep what their weighted sums need
    calls: list[_Call] = field(default_factory=list)
    parts: dict[str, ParamNorm] | None = None  # set once every call has its output gradient
    hooks: list[Any] = field(default_factory=list)  # the output-gradient hooks


def check_ghost_supported(model: nn.Module) -> None:
    """Raise :class:`GhostUnsupportedError` naming every trainable layer ghost clipping can't do."""
    _ghost_layers(model)


def ghost_norms(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor) -> GhostNorms:
    """Per-example gradient norms from one forward and one backward pass (see module doc).

    ``loss_fn(outputs, targets)`` is applied to each example as a batch of one (vmapped over the
    batch's outputs) and must return a scalar: ``reduction="sum"`` or ``"mean"``.
    """
    layers, losses, _, _ = _norm_pass(
        model, loss_fn, inputs, targets, keep_sums=False, second_backward=False
    )
    norms, methods = _total_norms(layers, losses)
    return GhostNorms(norms, losses.detach(), methods)


def ghost_clipped_sum(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    max_norm: float,
    *,
    two_pass: bool = False,
) -> GhostClipResult:
    """Σ_i min(1, C/‖g_i‖)·g_i over examples, by ghost norms and book-keeping (see module doc).

    Equal to ``clip_and_sum(per_sample_gradients(...)[0], max_norm)`` (flat clipping); its
    ``sensitivity`` is C for add/remove-one neighbours. Does not touch ``param.grad``.

    ``two_pass=True`` trades time for memory (Li et al. 2022's original ghost clipping): each
    layer's output gradients are dropped once its norms are computed, then a second backward of
    Σ_i w_i ℓ_i gives the sum. Peak memory is then about a non-private step's; book-keeping (the
    default) also holds the Linear layers' output gradients until every norm is known:
    1.25–1.28× a non-private step's peak of live tensors on the 6-layer d = 256 transformer
    (RESULTS.md, fifth run).
    """
    max_norm = check_positive("max_norm", max_norm)
    layers, losses, params, readers = _norm_pass(
        model, loss_fn, inputs, targets, keep_sums=not two_pass, second_backward=two_pass
    )
    norms, methods = _total_norms(layers, losses)
    weights = clip_factors(norms, max_norm)
    if two_pass:
        names = list(params)
        grads = torch.autograd.grad(
            (weights.to(losses.dtype) * losses).sum(),
            [params[n] for n in names],
            allow_unused=True,
        )
        summed = {
            n: torch.zeros_like(params[n]) if g is None else g
            for n, g in zip(names, grads, strict=True)
        }
    else:
        parts = {
            _full_name(layer, name): part
            for layer in layers
            for name, part in (layer.parts or {}).items()
        }
        with torch.no_grad(), sharing(readers):  # w ⊙ a of a shared input formed once
            summed = {
                n: parts[n].weighted_sum(weights).to(p.dtype) if n in parts else torch.zeros_like(p)
                for n, p in params.items()
            }
    fraction = float((norms > max_norm).float().mean())
    return GhostClipResult(summed, norms, fraction, max_norm, False, losses.detach(), methods)


def _norm_pass(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    *,
    keep_sums: bool,
    second_backward: bool,
) -> tuple[list[_Layer], Tensor, dict[str, Tensor], dict[Key, int]]:
    """The hooked forward and the first backward: every called layer ends with its ``parts``
    (norms, and with ``keep_sums`` the weighted sums); ``second_backward`` keeps the graph.
    Also returns the inputs several Linear layers read (:mod:`~deniable.grad.ghost_shared`)."""
    layers, losses, params = _forward(model, loss_fn, inputs, targets, keep_sums=keep_sums)
    # only Linear layers keep their input for the sum: a LayerNorm reading the same tensor
    # keeps none of it, and must not make the Linear count it as shared
    kept = [[c.inputs for c in layer.calls] for layer in layers if layer.rule is linear_rule]
    readers = count_readers(kept)
    with sharing(readers):
        try:
            _norm_backward(layers, losses, retain_graph=second_backward)
        finally:
            for layer in layers:  # a second backward must not run them again
                for hook in layer.hooks:
                    hook.remove()
        for layer in layers:
            if layer.calls and layer.parts is None:  # not finished in the backward: do it now
                _finish(layer)
    return layers, losses, params, readers


def _total_norms(layers: list[_Layer], losses: Tensor) -> tuple[Tensor, dict[str, str]]:
    """‖g_i‖ over all layers' parts, and how each part was computed."""
    sq = losses.new_zeros(losses.shape[0]).detach()
    methods: dict[str, str] = {}
    for layer in layers:
        for name, part in (layer.parts or {}).items():
            sq = sq + part.sq_norm.to(sq.dtype)
            methods[_full_name(layer, name)] = part.method
    logger.debug("ghost norms: %s", methods)
    return sq.sqrt(), methods


def _full_name(layer: _Layer, name: str) -> str:
    return f"{layer.path}.{name}" if layer.path else name


def _norm_backward(layers: list[_Layer], losses: Tensor, *, retain_graph: bool) -> None:
    """The first backward, only as far as each layer's output, so the output hooks compute the
    norms, and no parameter gradient is formed (the engine skips the weight-gradient products).
    ``torch.autograd.backward`` with gradient edges as ``inputs`` keeps none of the gradients it
    reaches, unlike ``autograd.grad``, which would hold every layer's output gradient until the
    end: each layer's are released as soon as its rule has run (kept only where book-keeping's
    weighted sum needs them).

    Parameters of layers the forward never called are differentiated too, for
    :func:`_check_idle`: through their ``.grad``, which is restored afterwards."""
    edges = [c.output_edge for layer in layers for c in layer.calls if c.output_edge is not None]
    idle = _idle_params(layers)
    if not edges and not idle:
        return
    saved = [p.grad for p in idle]
    for p in idle:
        p.grad = None
    try:
        torch.autograd.backward(
            losses.sum(),
            inputs=edges + [get_gradient_edge(p) for p in idle],
            retain_graph=retain_graph,
        )
        grads = {id(p): p.grad for p in idle}
    finally:
        for p, old in zip(idle, saved, strict=True):
            p.grad = old
    _check_idle(layers, grads)


def _ghost_layers(model: nn.Module, keep_sums: bool = True) -> list[_Layer]:
    layers, problems = [], []
    owner: dict[int, str] = {}
    for path, module in model.named_modules():
        own = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        label = f"`{path or '<root>'}` ({type(module).__name__})"
        for name, p in own:
            full = f"{path}.{name}" if path else name
            if id(p) in owner:
                problems.append(f"{label}: {full} is tied to {owner[id(p)]}")
            owner.setdefault(id(p), full)
        rule, reason = ghost_rule_for(module)
        if rule is None:
            problems.append(f"{label}: {reason}")
        else:
            layers.append(_Layer(path, module, rule, keep_sums))
    if problems:
        raise GhostUnsupportedError(
            "ghost clipping cannot handle "
            + "; ".join(problems)
            + "; use per-sample gradients (vmap) for this model"
        )
    return layers


def _capture(
    layer: _Layer, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
) -> None:
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, Tensor) or not isinstance(output, Tensor):
        raise GhostUnsupportedError(
            f"ghost clipping needs `{layer.path}` called with one input tensor returning a tensor"
        )
    if not output.requires_grad:  # nothing trainable before it or in it: zero gradient
        layer.calls.append(_Call(x.detach(), None, output.shape, output.new_empty(0), x._version))
        return
    call = _Call(
        x.detach(), get_gradient_edge(output), output.shape, output.new_empty(0), x._version
    )
    layer.calls.append(call)
    layer.hooks.append(output.register_hook(partial(_on_output_grad, layer, call)))


def _on_output_grad(layer: _Layer, call: _Call, grad: Tensor) -> None:
    """Keep the gradient until the layer's last call has one, then run the layer's rule."""
    call.output_grad = grad.detach()
    if layer.rule is layer_vmap_rule:
        return  # torch.func inside the autograd engine: left for after the backward
    if all(c.output_grad is not None or c.output_edge is None for c in layer.calls):
        _finish(layer)


def _finish(layer: _Layer) -> None:
    """The layer's parts from its calls' inputs and output gradients (zero where none came);
    then our references to both are dropped: only what the parts' weighted sums use is kept
    (book-keeping), or nothing but the norms (``keep_sums=False``)."""
    bs = [
        c.output_like.new_zeros(c.output_shape) if c.output_grad is None else c.output_grad
        for c in layer.calls
    ]
    with torch.no_grad():
        parts = layer.rule(layer.module, [c.inputs for c in layer.calls], bs)
    if not layer.keep_sums:
        parts = {n: ParamNorm(p.sq_norm.detach(), p.method, _dropped) for n, p in parts.items()}
    layer.parts = parts
    for call in layer.calls:
        call.output_grad = None
        call.inputs = call.output_like


def _dropped(weights: Tensor) -> Tensor:
    raise AssertionError("two-pass mode keeps norms only; the sum comes from a second backward")


def _forward(
    model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, *, keep_sums: bool
) -> tuple[list[_Layer], Tensor, dict[str, Tensor]]:
    """The hooked forward pass: layers with their calls, per-example losses, trainable params."""
    layers = _ghost_layers(model, keep_sums)
    batch = inputs.shape[0] if inputs.dim() > 0 else 0
    if batch == 0 or targets.dim() == 0 or targets.shape[0] != batch:
        raise DeniableError(
            f"inputs and targets need the same non-empty batch dimension, got "
            f"{tuple(inputs.shape)} and {tuple(targets.shape)}"
        )
    params: dict[str, Tensor] = {n: p for n, p in model.named_parameters() if p.requires_grad}
    handles = [
        layer.module.register_forward_hook(partial(_capture, layer), with_kwargs=True)
        for layer in layers
    ]
    try:
        with torch.enable_grad():
            outputs = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    with torch.enable_grad():
        losses = _per_example_losses(loss_fn, outputs, targets)
    for layer in layers:
        for call in layer.calls:
            _check_call(layer, call, batch)
    return layers, losses, params


def _check_idle(layers: list[_Layer], by_id: dict[int, Tensor | None]) -> None:
    """Parameters of layers the forward never called (gradients keyed by ``id(param)``) must
    get zero gradient, else they were used outside their module's forward (e.g.
    nn.MultiheadAttention's out_proj) and no rule saw them."""
    for layer in layers:
        if layer.calls:
            continue
        for p in _own(layer.module):
            g = by_id.get(id(p))
            if g is not None and bool(g.ne(0).any()):
                raise GhostUnsupportedError(
                    f"`{layer.path}` ({type(layer.module).__name__}) is never called but its "
                    "parameters get gradient (used outside its forward); use per-sample "
                    "gradients (vmap) for this model"
                )


def _own(module: nn.Module) -> list[Tensor]:
    return [p for p in module.parameters(recurse=False) if p.requires_grad]


def _idle_params(layers: list[_Layer]) -> list[Tensor]:
    """Trainable parameters of the layers the forward never called."""
    return [p for layer in layers if not layer.calls for p in _own(layer.module)]


def _check_call(layer: _Layer, call: _Call, batch: int) -> None:
    if call.inputs.shape[:1] != (batch,) or call.output_shape[:1] != (batch,):
        raise GhostUnsupportedError(
            f"ghost clipping needs batch-first tensors at `{layer.path}` (dim 0 = {batch} "
            f"examples), got input {tuple(call.inputs.shape)}; use per-sample gradients (vmap)"
        )
    if call.inputs._version != call.input_version:
        raise GhostUnsupportedError(
            f"the input of `{layer.path}` was modified in place after the layer ran; "
            "make that operation out-of-place (e.g. inplace=False)"
        )


def _per_example_losses(loss_fn: LossFn, outputs: Any, targets: Tensor) -> Tensor:
    if not isinstance(outputs, Tensor):
        raise DeniableError(
            f"ghost clipping needs the model to return one tensor, got {type(outputs).__name__}"
        )
    one: Callable[[Tensor, Tensor], Tensor] = lambda o, t: as_scalar_loss(  # noqa: E731
        loss_fn(o.unsqueeze(0), t.unsqueeze(0))
    )
    try:
        return vmap(one)(outputs, targets)
    except (RuntimeError, NotImplementedError) as error:  # loss_fn not vmappable: loop over B
        logger.info("per-example losses by loop (vmap failed: %s)", error)
        return torch.stack([one(outputs[i], targets[i]) for i in range(outputs.shape[0])])
