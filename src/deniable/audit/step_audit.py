"""White-box audit of one DP-SGD step with a Dirac canary, over many independent trials.

Nasr, Hayes, Steinke, Balle, Tramèr, Jagielski, Carlini & Terzis 2023, "Tight auditing of
differentially private machine learning": the strongest adversary of one step sees the released
noisy gradient itself and controls a *canary* whose gradient is a Dirac, large along one
parameter coordinate j and zero elsewhere. The canary is clipped to C·e_j, so with the canary the
released sum moves by exactly the clipping norm along e_j and nowhere else; the score of a trial is
the released gradient's j-th coordinate (its projection onto the canary's gradient direction).

Neighbouring relation: add/remove-one. The batch of ordinary examples is fixed; a trial runs the
step on that batch (non-member) or on the batch plus the canary (member), each trial with fresh
noise. For a correct step with noise multiplier σ, clipping C and no subsampling (q = 1) the
scores are N(a, (σC/B)²) without and N(a + C/B, (σC/B)²) with the canary: exactly the Gaussian
mechanism with μ = 1/σ, the claim ``GaussianEvent(σC, sensitivity=C)`` of
:func:`deniable.train.dp_step.step_event`. Its trade-off curve is Gaussian, so the GDP route of
:mod:`deniable.audit.bounds` is valid and tight here; a broken step (no noise, a microbatch whose
clipped sum one example can move by 2C, noise on the wrong scale) gives a lower bound above the
claim, and the audit flags it. Use ``method="clopper_pearson"`` for steps whose output need not be
Gaussian (the bound is then valid for any mechanism, but looser).

Pipeline: :func:`run_trials` (step → scores) and :func:`audit_scores` (scores → bound and
verdict); :func:`audit_step` runs both. :func:`dp_step_trial` builds the trial of deniable's own
step (:func:`deniable.train.dp_step.noisy_gradient`); any callable with the signature of
:class:`StepUnderAudit` can be audited, so broken variants can be too.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from deniable import accounting
from deniable.audit.bounds import (
    DEFAULT_STRATEGY,
    LowerBound,
    ThresholdStrategy,
    clopper_pearson_lower_bound,
    gdp_lower_bound,
)
from deniable.audit.bounds_binomial import check_audit_delta, check_confidence
from deniable.errors import DeniableError, InvalidParameterError, check_count, check_positive
from deniable.events import GaussianEvent, PrivacyEvent
from deniable.train.dp_step import Clipping, LossFn, noisy_gradient, step_event
from deniable.train.noise import NoiseSource

Method = Literal["gdp", "clopper_pearson"]
METHODS: tuple[str, ...] = ("gdp", "clopper_pearson")

BATCH_BLOCK = 4096
"""Trials per call of a batched step (bounds memory to BATCH_BLOCK × #parameters)."""


class StepUnderAudit(Protocol):
    """One private step on the fixed batch, plus the canary when ``include_canary``.

    Returns the released noisy gradient (parameter name → tensor). ``seed`` is the trial's seed:
    different seeds must give independent noise.
    """

    def __call__(self, include_canary: bool, seed: int) -> dict[str, torch.Tensor]: ...


class BatchedStepUnderAudit(Protocol):
    """``count`` independent trials of the same step at once: each returned tensor has a leading
    axis of length ``count`` (trial i's release is ``out[name][i]``)."""

    def __call__(self, include_canary: bool, seed: int, count: int) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class StepTrial:
    """What :func:`audit_step` runs: the step, the direction the release is projected onto
    (the canary's gradient direction; unit norm over all tensors), and optionally a batched path
    that runs many trials in one call. ``event`` is what the builder says one step is (pass it as
    ``claimed`` to audit the step against its own claim); ``None`` for hand-written steps.
    """

    step: StepUnderAudit
    direction: dict[str, torch.Tensor]
    batched: BatchedStepUnderAudit | None = None
    event: PrivacyEvent | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.direction:
            raise InvalidParameterError("direction", self.direction, "a non-empty tensor dict")
        norm = math.sqrt(sum(float(v.double().pow(2).sum()) for v in self.direction.values()))
        if not math.isfinite(norm) or norm == 0:
            raise InvalidParameterError("direction", norm, "a finite non-zero direction (norm)")
        unit = {k: v.detach().double().cpu() / norm for k, v in self.direction.items()}
        object.__setattr__(self, "direction", unit)

    def score(self, released: Mapping[str, torch.Tensor]) -> float:
        """Projection of one release onto :attr:`direction`."""
        return float(self.scores_of(released, leading=False)[0])

    def scores_of(
        self, released: Mapping[str, torch.Tensor], *, leading: bool = True
    ) -> NDArray[np.float64]:
        """Projections of a batched release (a leading trial axis when ``leading``)."""
        total: torch.Tensor | None = None
        for name, unit in self.direction.items():
            if name not in released:
                raise DeniableError(
                    f"the step released no tensor {name!r} (the canary direction's parameter); "
                    f"it released {sorted(released)}"
                )
            value = released[name].detach().double().cpu()
            shape = (-1, *unit.shape) if leading else (1, *unit.shape)
            try:
                value = value.reshape(shape)
            except RuntimeError as exc:
                raise DeniableError(
                    f"released {name!r} has shape {tuple(released[name].shape)}, not "
                    f"{'(trials, ' if leading else '('}{', '.join(map(str, unit.shape))})"
                ) from exc
            part = (value * unit).flatten(1).sum(1)
            total = part if total is None else total + part
        assert total is not None
        return total.numpy()


@dataclass(frozen=True)
class StepAuditResult:
    """The audit's verdict. ``lower`` bounds the step's ε at ``lower.delta`` with probability ≥
    ``lower.confidence`` (under the method's assumption, stated in ``lower.details``);
    ``claimed_epsilon`` is the pld accountant's ε of the claimed event at the same δ (an upper
    bound on the claim's exact ε, so the verdict errs towards not flagging); ``flagged`` is
    ``lower.epsilon > claimed_epsilon``: the step does not satisfy its claim (or a
    1 − confidence event happened). A step that satisfies its claim is flagged with probability
    ≤ 1 − confidence (for the GDP route, when its trade-off curve is Gaussian, as for a correct
    DP-SGD step with q = 1 audited with a Dirac canary).
    """

    lower: LowerBound
    claimed_epsilon: float
    flagged: bool
    trials: int
    details: dict[str, float | int | str] = field(default_factory=dict)


def run_trials(
    trial: StepTrial, *, trials: int, seed: int = 0, unbatched_trials: int = 256
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Scores and membership of ``trials`` independent runs of the step.

    ``trials // 2`` trials include the canary, the rest do not, in a random order fixed by
    ``seed``; each trial has its own seed. The first ``unbatched_trials`` trials in that order run
    one call each through ``trial.step``; the rest run through ``trial.batched`` in blocks when the
    trial has a batched path (else one call each too).
    """
    check_count("trials", trials, minimum=2)
    check_count("seed", seed, minimum=0)
    check_count("unbatched_trials", unbatched_trials, minimum=0)
    rng = np.random.default_rng(seed)
    member = rng.permutation(trials) < trials // 2
    seeds = rng.integers(0, 2**62, size=trials)
    scores = np.empty(trials, dtype=np.float64)
    single = trials if trial.batched is None else min(unbatched_trials, trials)
    for i in range(single):
        scores[i] = trial.score(trial.step(bool(member[i]), int(seeds[i])))
    if trial.batched is not None:
        for include in (True, False):
            index = np.flatnonzero(member[single:] == include) + single
            for start in range(0, index.size, BATCH_BLOCK):
                block = index[start : start + BATCH_BLOCK]
                released = trial.batched(include, int(seeds[block[0]]), int(block.size))
                values = trial.scores_of(released)
                if values.size != block.size:
                    raise DeniableError(
                        f"the batched step returned {values.size} trials, asked for {block.size}"
                    )
                scores[block] = values
    return scores, member


def audit_scores(
    scores: NDArray[np.float64],
    is_member: NDArray[np.bool_],
    *,
    claimed: PrivacyEvent,
    delta: float,
    confidence: float = 0.95,
    method: Method = "gdp",
    strategy: ThresholdStrategy = DEFAULT_STRATEGY,
) -> StepAuditResult:
    """Lower-bound ε from step scores and set it against the claimed event's ε at ``delta``."""
    claimed_epsilon, d, c = _check_claim(claimed, delta, confidence, method)
    bound = gdp_lower_bound if method == "gdp" else clopper_pearson_lower_bound
    lower = bound(scores, is_member, delta=d, confidence=c, strategy=strategy)
    details = _score_summary(np.asarray(scores, float), np.asarray(is_member, bool))
    details["claimed_event"] = repr(claimed)
    details["accountant"] = "pld"
    if isinstance(claimed, GaussianEvent):
        details["claimed_mu"] = claimed.sensitivity / claimed.sigma
    return StepAuditResult(
        lower=lower,
        claimed_epsilon=claimed_epsilon,
        flagged=lower.epsilon > claimed_epsilon,
        trials=int(np.size(scores)),
        details=details,
    )


def audit_step(
    trial: StepTrial,
    *,
    trials: int,
    claimed: PrivacyEvent,
    delta: float,
    confidence: float = 0.95,
    seed: int = 0,
    method: Method = "gdp",
    strategy: ThresholdStrategy = DEFAULT_STRATEGY,
    unbatched_trials: int = 256,
) -> StepAuditResult:
    """Run ``trials`` trials of the step (:func:`run_trials`) and audit their scores against
    ``claimed``, the event the implementation claims for one step (:func:`audit_scores`).

    The threshold strategy defaults to Bonferroni over a grid of 64 thresholds on all scores
    (:class:`deniable.audit.bounds.BonferroniThresholds`); a
    :class:`deniable.audit.bounds.HeldOutThreshold` can be passed instead.
    """
    check_count("trials", trials, minimum=2)
    _check_claim(claimed, delta, confidence, method)  # everything checked before running
    scores, member = run_trials(trial, trials=trials, seed=seed, unbatched_trials=unbatched_trials)
    result = audit_scores(
        scores,
        member,
        claimed=claimed,
        delta=delta,
        confidence=confidence,
        method=method,
        strategy=strategy,
    )
    single = trials if trial.batched is None else min(unbatched_trials, trials)
    details = dict(result.details, trials_one_call_each=single, trials_batched=trials - single)
    if trial.description:
        details["step"] = trial.description
    return replace(result, details=details)


def dp_step_trial(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    clipping: Clipping,
    noise_multiplier: float,
    expected_batch_units: float,
    canary_input: torch.Tensor | None = None,
    canary_target: torch.Tensor | None = None,
    canary_gradient_direction: Mapping[str, torch.Tensor] | None = None,
    coordinate: int = 0,
    canary_scale: float | None = None,
) -> StepTrial:
    """The trial of deniable's step :func:`~deniable.train.dp_step.noisy_gradient` on the fixed
    batch ``inputs``/``targets`` (units 0..n−1), with the canary appended as the last example
    (unit n). With ``clipping.microbatch_size`` = m the canary shares microbatch n // m with the
    ordinary examples of that group: place a partner example there to audit the microbatch pitfall.

    The canary. By default (``canary_input`` None) the model must be a bias-free
    ``nn.Linear(d, 1)``: the gradient of an example x under a loss whose derivative in the output
    is s is s·x, so the input G·e_j (G = ``canary_scale``, default 10³·C, j = ``coordinate``) has a
    Dirac gradient along weight[0, j], e.g. G·e_j itself for loss = output sum; clipped, it is
    ±C·e_j. For other models pass ``canary_input`` (and ``canary_target``; default zeros) crafted so
    its gradient is (close to) a Dirac. The score direction is ``canary_gradient_direction`` or, by
    default, the canary's own gradient at the model's current parameters (for a Dirac canary:
    e_j, so the score is the released gradient's j-th coordinate).

    Every trial runs the real :func:`noisy_gradient`. The batched path does too, once per block of
    trials, with a :class:`deniable.train.noise.NoiseSource` that draws the noise of all trials of
    the block in one ``gaussian_like`` call (the clipped sum broadcasts against a noise tensor with
    a leading trial axis); the one-call-per-trial path uses a plain ``NoiseSource(seed)``. For one
    trial at the same seed both paths give the same release bit for bit.
    """
    _check_batch(inputs, targets)
    check_positive("expected_batch_units", expected_batch_units)
    if not _finite_number(noise_multiplier) or noise_multiplier < 0:
        raise InvalidParameterError("noise_multiplier", noise_multiplier, "a finite number >= 0")
    if canary_input is None:
        canary_input = _dirac_input(model, coordinate, canary_scale, clipping.max_grad_norm)
    if canary_target is None:
        canary_target = torch.zeros_like(targets[:1])[0]
    with_x = torch.cat([inputs, canary_input.reshape(1, *inputs.shape[1:]).to(inputs)])
    with_y = torch.cat([targets, canary_target.reshape(1, *targets.shape[1:]).to(targets)])
    n = inputs.shape[0]

    def release(include_canary: bool, noise: NoiseSource) -> dict[str, torch.Tensor]:
        x, y = (with_x, with_y) if include_canary else (inputs, targets)
        units = torch.arange(x.shape[0])
        out, _ = noisy_gradient(
            model,
            loss_fn,
            x,
            y,
            units,
            clipping=clipping,
            noise_multiplier=noise_multiplier,
            expected_batch_units=expected_batch_units,
            noise=noise,
        )
        return out

    def step(include_canary: bool, seed: int) -> dict[str, torch.Tensor]:
        return release(include_canary, NoiseSource(seed))

    def batched(include_canary: bool, seed: int, count: int) -> dict[str, torch.Tensor]:
        out = release(include_canary, _TrialAxisNoise(seed, count))
        for name, value in out.items():
            if value.dim() == 0 or value.shape[0] != count:
                raise DeniableError(
                    f"noisy_gradient did not keep the trial axis for {name!r} (shape "
                    f"{tuple(value.shape)}); run the audit with batched=None"
                )
        return out

    if canary_gradient_direction is None:
        direction = _gradient(model, loss_fn, with_x[n:], with_y[n:])
    else:
        direction = {k: v.detach() for k, v in canary_gradient_direction.items()}
    return StepTrial(
        step=step,
        direction=direction,
        batched=batched,
        event=step_event(clipping, noise_multiplier) if noise_multiplier > 0 else None,
        description=(
            f"noisy_gradient(clipping={clipping}, noise_multiplier={noise_multiplier}, "
            f"expected_batch_units={expected_batch_units}, batch={n}+canary)"
        ),
    )


class _TrialAxisNoise(NoiseSource):
    """A seeded NoiseSource whose every draw has an extra leading axis of ``count`` trials,
    drawn by the parent's own ``gaussian_like``."""

    def __init__(self, seed: int, count: int) -> None:
        super().__init__(seed)
        self.count = count

    def gaussian_like(self, tensor: torch.Tensor, std: float) -> torch.Tensor:
        return super().gaussian_like(tensor.expand(self.count, *tensor.shape), std)


def _dirac_input(
    model: nn.Module, coordinate: int, scale: float | None, clip: float
) -> torch.Tensor:
    linear = isinstance(model, nn.Linear) and model.bias is None and model.out_features == 1
    if not linear:
        raise InvalidParameterError(
            "canary_input", None, "given for models other than a bias-free nn.Linear(d, 1)"
        )
    assert isinstance(model, nn.Linear)
    d = model.in_features
    if isinstance(coordinate, bool) or not isinstance(coordinate, int) or not 0 <= coordinate < d:
        raise InvalidParameterError("coordinate", coordinate, f"an integer in [0, {d - 1}]")
    g = 1e3 * clip if scale is None else check_positive("canary_scale", scale)
    x = torch.zeros(d, dtype=model.weight.dtype)
    x[coordinate] = g
    return x


def _gradient(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor
) -> dict[str, torch.Tensor]:
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    loss = loss_fn(model(x), y)
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {
        n: torch.zeros_like(p) if g is None else g.detach()
        for (n, p), g in zip(params.items(), grads, strict=True)
    }


def _check_batch(inputs: torch.Tensor, targets: torch.Tensor) -> None:
    if inputs.dim() < 1 or targets.dim() < 1 or inputs.shape[0] != targets.shape[0]:
        raise InvalidParameterError(
            "targets",
            tuple(targets.shape),
            f"one target per input (inputs have shape {tuple(inputs.shape)})",
        )


def _check_claim(
    claimed: PrivacyEvent, delta: float, confidence: float, method: str
) -> tuple[float, float, float]:
    """Check the audit's parameters; the claimed event's ε at δ (pld accountant), δ, confidence."""
    c = check_confidence(confidence)
    d = check_audit_delta(delta, allow_zero=False)
    if method not in METHODS:
        raise InvalidParameterError("method", method, f"one of {', '.join(METHODS)}")
    if not isinstance(claimed, PrivacyEvent):
        raise InvalidParameterError("claimed", claimed, "a PrivacyEvent")
    return accounting.epsilon(claimed, d).epsilon, d, c


def _score_summary(
    scores: NDArray[np.float64], member: NDArray[np.bool_]
) -> dict[str, float | int | str]:
    """Per-class means and standard deviations, and μ̂ = (mean with − mean without)/pooled std:
    a point estimate of μ for a Gaussian step (a diagnostic, not a bound)."""
    with_c, without = scores[member], scores[~member]
    sd_in = float(with_c.std(ddof=1)) if with_c.size > 1 else 0.0
    sd_out = float(without.std(ddof=1)) if without.size > 1 else 0.0
    shift = float(with_c.mean() - without.mean())
    pooled = math.sqrt((sd_in**2 + sd_out**2) / 2)
    mu_hat = shift / pooled if pooled > 0 else (math.inf if shift > 0 else 0.0)
    return {
        "trials_with_canary": int(with_c.size),
        "trials_without_canary": int(without.size),
        "score_mean_with": float(with_c.mean()),
        "score_mean_without": float(without.mean()),
        "score_std_with": sd_in,
        "score_std_without": sd_out,
        "mu_hat": mu_hat,
    }


def _finite_number(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(float(value))
    )
