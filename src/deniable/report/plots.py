"""The report's plots: matplotlib figures rendered off-screen (Agg) to embedded PNG data URIs.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through ``pyplot``, so
rendering a report neither changes the process's global backend nor leaks figures.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray

from deniable.audit.metrics import ROC
from deniable.report import fmt

DPI = 110
BLUE, ORANGE, GREY, RED = "#2f6db5", "#e08a1e", "#8a8f98", "#c0392b"


@dataclass(frozen=True)
class Plot:
    """One embedded image: a ``data:image/png;base64,…`` URI and its alt text."""

    data_uri: str
    alt: str


def _figure(width: float = 7.0, height: float = 3.6) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _embed(fig: Figure, alt: str) -> Plot:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Plot(data_uri=f"data:image/png;base64,{encoded}", alt=alt)


def epsilon_curve(
    steps: Sequence[float],
    epsilons: Sequence[float],
    *,
    delta: float,
    target: float | None,
    steps_per_epoch: float | None,
) -> Plot:
    """ε (at fixed δ) against training steps, the target ε dashed, epochs on the top axis."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(steps, epsilons, marker="o", markersize=3, color=BLUE, label="ε spent (accountant)")
    if target is not None:
        ax.axhline(target, color=RED, linestyle="--", linewidth=1, label=f"target ε = {target:g}")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"ε at δ = {fmt.delta(delta)}")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    if steps_per_epoch:
        per = steps_per_epoch

        def to_epoch(step: ArrayLike) -> NDArray[np.float64]:
            return np.asarray(step, dtype=np.float64) / per

        def to_step(epoch: ArrayLike) -> NDArray[np.float64]:
            return np.asarray(epoch, dtype=np.float64) * per

        top = ax.secondary_xaxis("top", functions=(to_epoch, to_step))
        top.set_xlabel("epoch")
    return _embed(fig, f"ε over {len(steps)} recorded points, ending at {fmt.eps(epsilons[-1])}")


def accuracy_bars(groups: Sequence[tuple[str, float | None, float | None]]) -> Plot:
    """Grouped bars: for each model (name, test accuracy, train accuracy)."""
    fig = _figure(5.0, 3.0)
    ax = fig.add_subplot()
    x = np.arange(len(groups))
    width = 0.36
    for offset, index, label, color in ((-1, 1, "test", BLUE), (1, 2, "train", GREY)):
        values = [g[index] for g in groups]
        heights = [np.nan if v is None else 100 * float(v) for v in values]
        bars = ax.bar(x + offset * width / 2, heights, width, label=label, color=color)
        ax.bar_label(bars, labels=[fmt.percent(v) for v in values], fontsize=8, padding=2)
    ax.set_xticks(x, [g[0] for g in groups])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 119)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper center", ncols=2, frameon=False)
    text = "; ".join(f"{g[0]}: test {fmt.percent(g[1])}" for g in groups)
    return _embed(fig, f"accuracy — {text}")


def audit_bars(bars: Sequence[tuple[str, float, str]], *, confidence: float) -> Plot:
    """Horizontal bars of ε values: (label, value, colour name among claim/dp/plain)."""
    colours = {"claim": GREY, "dp": BLUE, "plain": ORANGE}
    fig = _figure(5.0, 0.5 * len(bars) + 1.1)
    ax = fig.add_subplot()
    y = np.arange(len(bars))[::-1]
    values = [b[1] for b in bars]
    drawn = ax.barh(y, values, color=[colours[b[2]] for b in bars], height=0.6)
    ax.bar_label(drawn, labels=[fmt.eps(v) for v in values], padding=3, fontsize=9)
    ax.set_yticks(y, [b[0] for b in bars])
    ax.set_xlabel(f"ε (lower bounds at {fmt.percent(confidence, 0)} confidence)")
    ax.set_xlim(0, max(max(values), 1e-3) * 1.18)
    ax.grid(axis="x", alpha=0.3)
    text = "; ".join(f"{b[0]} {fmt.eps(b[1])}" for b in bars)
    return _embed(fig, f"audit — {text}")


def roc_loglog(curves: Sequence[tuple[str, ROC]]) -> Plot:
    """ROC curves (name, ROC) on log-log axes, embedded (see :func:`roc_figure`)."""
    fig = roc_figure(curves)
    return _embed(fig, "ROC on log-log axes: " + ", ".join(name for name, _ in curves))


def roc_figure(curves: Sequence[tuple[str, ROC]]) -> Figure:
    """ROC curves on log-log axes (Carlini et al. 2022); zero rates drawn at half the smallest
    non-zero rate the sample sizes allow, so the TPR at 0 % FPR stays visible."""
    fig = _figure(5.6, 4.6)
    ax = fig.add_subplot()
    floor = min(0.5 / max(roc.n_nonmembers, roc.n_members) for _, roc in curves)
    colours = [BLUE, ORANGE, "#3a9a5b", "#8e44ad", RED]
    for i, (name, roc) in enumerate(curves):
        ax.plot(
            np.maximum(roc.fpr, floor),
            np.maximum(roc.tpr, floor),
            color=colours[i % len(colours)],
            label=name,
        )
    ax.plot([floor, 1], [floor, 1], color=GREY, linestyle=":", label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    return fig
