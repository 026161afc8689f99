"""Rényi DP of subsampled mechanisms: the math behind :mod:`deniable.accounting.rdp`.

Plain functions of numbers and RDP curves; no events here (the RDP accountant interprets the
events and calls these). Every function returns ε(α) at each order α > 1 of ``orders``.

Notation: γ is the sampling rate; ε(α) is the RDP of the mechanism run on the sample, under the
relation the amplification result is stated for; K(α) = (α − 1)·ε(α) is the cumulant generating
function of the privacy loss. K is convex in α, so values at fractional orders are bounded by
linear interpolation of K between neighbouring integers (Wang, Balle & Kasiviswanathan 2019,
Cor. 10), with K(1) = 0.

Results used:

- Poisson sampling of the Gaussian mechanism, add/remove (Mironov, Talwar & Zhang 2019, §3):
  ε(α) = log A_α / (α − 1) with A_α = E_{x~N(0,z²)}[(1 − γ + γ·exp((2x − 1)/(2z²)))^α], z the
  noise multiplier. Integer α: binomial expansion; fractional α: the convergent two-sided series
  of their §3.3 (erfc-weighted binomial series split at z₀ = z²·log(1/γ − 1) + 1/2). Exact.
- Poisson sampling of any mechanism, add/remove (Zhu & Wang 2019, Thm. 6), integer α:
  e^{K'(α)} ≤ (1−γ)^{α−1}(1 + (α−1)γ) + C(α,2)γ²(1−γ)^{α−2}e^{ε(2)}
               + 3·Σ_{ℓ=3..α} C(α,ℓ)γ^ℓ(1−γ)^{α−ℓ}e^{(ℓ−1)ε(ℓ)}.
- Sampling m of n without replacement, replace-one, γ = m/n (Wang, Balle & Kasiviswanathan
  2019, Thm. 9), integer α:
  e^{K'(α)} ≤ 1 + γ²C(α,2)·min{4(e^{ε(2)} − 1), e^{ε(2)}·min{2, (e^{ε(∞)} − 1)²}}
               + Σ_{j=3..α} γ^j C(α,j)·e^{(j−1)ε(j)}·min{2, (e^{ε(∞)} − 1)^j},
  and, for the Gaussian mechanism, whose RDP is attained by one pair of neighbours at every
  order, the j ≥ 3 terms may also use 4·(B(2⌊j/2⌋)·B(2⌈j/2⌉))^{1/2} with B(ℓ) = E[(L − 1)^ℓ]
  the Pearson–Vajda moments of the likelihood ratio L (their Thm. 27, App. B.5). We compute B
  exactly with decimal arithmetic, since the finite-difference formula cancels badly.
- Joint convexity of exp((α − 1)·D_α) gives, for both samplings, the cap
  ε'(α) ≤ log(1 − γ + γ·e^{(α−1)ε(α)}) / (α − 1) (never worse than no subsampling).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, localcontext
from functools import lru_cache

import numpy as np
from scipy import special

RdpCurve = Callable[[np.ndarray], np.ndarray]
"""ε(α) of a mechanism at an array of orders > 1."""

_SERIES_RELATIVE_TOL = 1e-15
_SERIES_MAX_TERMS = 1 << 18
_IMPROVED_WOR_MAX_ORDER = 256
_DECIMAL_MAX_DIGITS = 20_000


def _log_comb(n: float, k: np.ndarray) -> np.ndarray:
    """log |C(n, k)|, elementwise, for real n."""
    return special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)


def _log_expm1(x: np.ndarray | float) -> np.ndarray:
    """log(e^x − 1) for x ≥ 0, without overflow or cancellation (−inf at 0)."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        return np.asarray(x + np.log(-np.expm1(-x)))


def _log1p_exp(log_x: float) -> float:
    """log(1 + e^{log_x})."""
    return float(np.logaddexp(0.0, log_x))


def _is_integer(order: float) -> bool:
    return float(order).is_integer()


# --- Poisson-sampled Gaussian (Mironov, Talwar & Zhang 2019) -------------------------------------


def poisson_gaussian_rdp(q: float, z: float, orders: np.ndarray) -> np.ndarray:
    """Exact RDP of the Poisson-sampled Gaussian mechanism (add/remove) at each order.

    ``q`` is the sampling rate in (0, 1], ``z`` = σ/Δ the noise multiplier.
    """
    orders = np.asarray(orders, dtype=float)
    if q == 1.0:
        return orders / (2 * z * z)
    out = np.empty_like(orders)
    for idx, alpha in enumerate(orders):
        if _is_integer(alpha):
            log_a = _log_a_integer(q, z, int(alpha))
        else:
            log_a = _log_a_fractional(q, z, float(alpha))
        out[idx] = log_a / (alpha - 1)
    return out


def _log_a_integer(q: float, z: float, alpha: int) -> float:
    """log A_α for integer α ≥ 2 by the binomial expansion (MTZ 2019, §3.2).

    A_α = Σ_k C(α,k)(1−q)^{α−k} q^k e^{(k²−k)/(2z²)}. Subtracting Σ_k C(α,k)(1−q)^{α−k}q^k = 1
    leaves only positive terms (the k = 0, 1 terms vanish), so A_α − 1 keeps full relative
    precision even when it is ~q² (tiny sampling rates).
    """
    k = np.arange(2, alpha + 1, dtype=float)
    log_terms = (
        _log_comb(alpha, k)
        + k * math.log(q)
        + (alpha - k) * math.log1p(-q)
        + _log_expm1(k * (k - 1) / (2 * z * z))
    )
    return _log1p_exp(float(special.logsumexp(log_terms)))


def _log_a_fractional(q: float, z: float, alpha: float) -> float:
    """log A_α for fractional α > 1 by the two-sided series of MTZ 2019, §3.3.

    Split the integral at z₀, where (1 − q) = q·L(x), L(x) = e^{(2x−1)/(2z²)}. Below z₀ expand
    (1 − q + qL)^α in powers of qL/(1−q) < 1, above it in powers of (1−q)/(qL) < 1:

        A_α = Σ_i T0_i + Σ_i T1_i,   with w_i = C(α,i) q^i (1−q)^{α−i}, j = α − i,
        T0_i = w_i e^{(i²−i)/(2z²)} Φ((z₀ − i)/z),
        T1_i = C(α,i) q^j (1−q)^i e^{(j²−j)/(2z²)} Φ((j − z₀)/z).

    Each series is alternating with decreasing terms once i > α + 1 (|C(α,i)| decreases and the
    rest of T0_i is E[(qL/(1−q))^i; x < z₀], decreasing in i; likewise for T1), so the first
    omitted term bounds the remainder; we add it, which makes the result an upper bound.

    A_α − 1 can be tiny (~q²/z²) and summing A_α directly would lose it to rounding. When
    q < 1/2 the binomial series Σ_i w_i = 1 converges, so we sum A_α − 1 = Σ_i (T0_i − w_i) +
    Σ_i T1_i, using T0_i − w_i = w_i·expm1((i²−i)/(2z²))·Φ((z₀−i)/z) − w_i·Φ((i−z₀)/z) for
    i ≤ z₀: small pieces only. When q > 1/2 the same is done with the second series. In the
    Gaussian tails the exponent and log Φ cancel algebraically; we use that closed form (via
    erfcx) there.
    """
    log_q, log_1mq = math.log(q), math.log1p(-q)
    z0 = z * z * (log_1mq - log_q) + 0.5
    tail_const = alpha * log_1mq - z0 * z0 / (2 * z * z)
    floor_alpha = math.floor(alpha)
    n = 2 * math.ceil(alpha) + 64
    while True:
        i = np.arange(n + 1, dtype=float)  # i = n is the first omitted term
        j = alpha - i
        log_c = _log_comb(alpha, i)
        sign = np.where(i > floor_alpha + 1, (-1.0) ** (i - floor_alpha - 1), 1.0)
        # (power, log of the q-weights, argument t of Φ(t/z)) of each series
        s0 = (i, i * log_q + j * log_1mq, z0 - i)
        s1 = (j, j * log_q + i * log_1mq, j - z0)
        logs, signs, tails = [], [], []
        for (power, log_weight, t), subtract in ((s0, q < 0.5), (s1, q > 0.5)):
            parts = _series_terms(log_c, sign, power, log_weight, t, z, tail_const, n, subtract)
            logs += parts[0]
            signs += parts[1]
            tails.append(parts[2])
        if q == 0.5:
            logs.append(np.zeros(1))
            signs.append(-np.ones(1))
        log_s, sign_s = special.logsumexp(
            np.concatenate(logs), b=np.concatenate(signs), return_sign=True
        )
        tail = float(special.logsumexp(tails))
        if sign_s > 0 and tail < log_s + math.log(_SERIES_RELATIVE_TOL):
            break
        if n >= _SERIES_MAX_TERMS:
            break
        n *= 4
    # A_α − 1 ≤ S + |remainder|; A_α ≥ 1 by Jensen, so a negative S is rounding.
    log_upper = float(np.logaddexp(log_s, tail)) if sign_s > 0 else tail
    return _log1p_exp(log_upper)


def _series_terms(
    log_c: np.ndarray,
    sign: np.ndarray,
    power: np.ndarray,
    log_weight: np.ndarray,
    t: np.ndarray,
    z: float,
    tail_const: float,
    n: int,
    subtract_weights: bool,
) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Signed log-terms of one series of :func:`_log_a_fractional` for indices < n, minus its
    binomial weights when ``subtract_weights``, and the log-bound of the remainder."""
    log_terms = log_c + _log_gauss_part(power, log_weight, t, z, tail_const)
    log_w = log_c + log_weight
    head, sg = slice(0, n), sign[:n]
    if not subtract_weights:
        return [log_terms[head]], [sg], float(log_terms[n])
    direct = t[head] >= 0
    p = power[head][direct]
    lw = log_w[head][direct]
    c = p * (p - 1) / (2 * z * z)  # negative for a fractional power in (0, 1)
    with np.errstate(divide="ignore"):
        log_abs_expm1 = np.where(c >= 0, _log_expm1(np.abs(c)), np.log(-np.expm1(-np.abs(c))))
        logs = [
            lw + log_abs_expm1 + special.log_ndtr(t[head][direct] / z),
            lw + special.log_ndtr(-t[head][direct] / z),
            log_terms[head][~direct],
            log_w[head][~direct],
        ]
    signs = [sg[direct] * np.sign(c + (c == 0)), -sg[direct], sg[~direct], -sg[~direct]]
    return logs, signs, float(np.logaddexp(log_terms[n], log_w[n]))


def _log_gauss_part(
    power: np.ndarray, log_weight: np.ndarray, t: np.ndarray, z: float, tail_const: float
) -> np.ndarray:
    """log of q^·(1−q)^· e^{(p²−p)/(2z²)} Φ(t/z), for p = ``power`` and matching ``t``.

    Where t < 0 (the Gaussian tail), e^{(p²−p)/(2z²)}Φ(t/z) times the weights equals
    (1−q)^α e^{−z₀²/(2z²)}·½erfcx(−t/(z√2)) exactly, which avoids cancelling huge exponents.
    """
    out = np.empty_like(power)
    tail = t < 0
    direct = ~tail
    p = power[direct]
    out[direct] = log_weight[direct] + (p * p - p) / (2 * z * z) + special.log_ndtr(t[direct] / z)
    out[tail] = tail_const + np.log(0.5 * special.erfcx(-t[tail] / (z * math.sqrt(2))))
    return out


# --- Generic integer-order bounds, interpolated to fractional orders ----------------------------


def _interpolated(orders: np.ndarray, cgf: Callable[[int], float]) -> np.ndarray:
    """ε(α) = K(α)/(α−1) at integer α, K linearly interpolated between integers otherwise."""
    cache: dict[int, float] = {1: 0.0}

    def k_at(n: int) -> float:
        if n not in cache:
            cache[n] = cgf(n)
        return cache[n]

    out = np.empty_like(orders)
    for idx, alpha in enumerate(orders):
        lo, hi = math.floor(alpha), math.ceil(alpha)
        if lo == hi:
            out[idx] = k_at(lo) / (alpha - 1)
        else:
            t = alpha - lo
            out[idx] = ((1 - t) * k_at(lo) + t * k_at(hi)) / (alpha - 1)
    return out


def _joint_convexity_cap(gamma: float, orders: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """log(1 − γ + γ·e^{(α−1)ε(α)})/(α − 1), elementwise (inf stays inf)."""
    y = (orders - 1) * inner
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        small = np.log1p(gamma * np.expm1(np.minimum(y, 1.0)))
        large = np.logaddexp(math.log1p(-gamma) if gamma < 1 else -np.inf, math.log(gamma) + y)
        return np.where(y <= 1.0, small, large) / (orders - 1)


def _integer_grid(orders: np.ndarray) -> np.ndarray:
    return np.arange(2, math.ceil(float(np.max(orders))) + 1, dtype=float)


def poisson_general_rdp(gamma: float, orders: np.ndarray, inner: RdpCurve) -> np.ndarray:
    """RDP upper bound of any Poisson-sampled mechanism with RDP curve ``inner`` (add/remove).

    Zhu & Wang 2019, Thm. 6 at integer orders (see the module docstring), written as
    1 + Σ_{ℓ≥2} C(α,ℓ)γ^ℓ(1−γ)^{α−ℓ}(c_ℓ e^{(ℓ−1)ε(ℓ)} − 1), c₂ = 1, c_ℓ = 3 for ℓ ≥ 3,
    so that every term is non-negative; capped by joint convexity.
    """
    orders = np.asarray(orders, dtype=float)
    grid = _integer_grid(orders)
    eps = inner(grid)  # eps[ℓ − 2] = ε(ℓ)
    if np.all(eps == 0):
        return np.zeros_like(orders)
    log_g, log_1mg = math.log(gamma), math.log1p(-gamma)

    def cgf(alpha: int) -> float:
        ell = grid[: alpha - 1]
        y = (ell - 1) * eps[: alpha - 1]
        with np.errstate(divide="ignore"):
            log_factor = np.where(ell == 2, _log_expm1(y), y + np.log(3 - np.exp(-y)))
        log_terms = _log_comb(alpha, ell) + ell * log_g + (alpha - ell) * log_1mg + log_factor
        return _log1p_exp(float(special.logsumexp(log_terms)))

    bound = _interpolated(orders, cgf)
    return np.minimum(bound, _joint_convexity_cap(gamma, orders, inner(orders)))


def without_replacement_rdp(
    gamma: float,
    orders: np.ndarray,
    inner: RdpCurve,
    inner_pure_epsilon: float,
    gaussian_noise_multiplier: float | None = None,
) -> np.ndarray:
    """RDP upper bound of a mechanism run on m of n units sampled without replacement.

    Replace-one relation, γ = m/n; ``inner`` is the mechanism's replace-one RDP curve and
    ``inner_pure_epsilon`` its ε(∞) (inf if none). Wang, Balle & Kasiviswanathan 2019, Thm. 9
    at integer orders; when the mechanism is a Gaussian with noise multiplier
    ``gaussian_noise_multiplier`` (σ over the replace-one sensitivity), their Thm. 27 as well,
    for orders up to 256. Capped by joint convexity.
    """
    orders = np.asarray(orders, dtype=float)
    grid = _integer_grid(orders)
    eps = inner(grid)
    if np.all(eps == 0):
        return np.zeros_like(orders)
    log_g = math.log(gamma)
    log_pure = float(_log_expm1(inner_pure_epsilon))  # log(e^{ε(∞)} − 1)
    log_b: np.ndarray | None = None
    if gaussian_noise_multiplier is not None:
        kmax = min(int(grid[-1]) + 1, _IMPROVED_WOR_MAX_ORDER + 1)
        log_b = np.asarray(_log_even_moments(gaussian_noise_multiplier, kmax))

    def cgf(alpha: int) -> float:
        j = grid[: alpha - 1]
        e = eps[: alpha - 1]
        with np.errstate(invalid="ignore"):
            term = (j - 1) * e + np.minimum(math.log(2), j * log_pure)
        term[0] = min(
            math.log(4) + float(_log_expm1(e[0])),
            float(e[0]) + min(math.log(2), 2 * log_pure),
        )
        if log_b is not None and alpha <= _IMPROVED_WOR_MAX_ORDER and alpha >= 3:
            jj = j[1:].astype(int)
            improved = math.log(4) + 0.5 * (log_b[2 * (jj // 2)] + log_b[2 * ((jj + 1) // 2)])
            term[1:] = np.minimum(term[1:], improved)
        log_terms = _log_comb(alpha, j) + j * log_g + term
        return _log1p_exp(float(special.logsumexp(log_terms)))

    bound = _interpolated(orders, cgf)
    return np.minimum(bound, _joint_convexity_cap(gamma, orders, inner(orders)))


@lru_cache(maxsize=32)
def _log_even_moments(z: float, kmax: int) -> tuple[float, ...]:
    """log B(k) = log E_{x~N(0,z²)}[(L(x) − 1)^k], L = e^{(2x−1)/(2z²)}, for even k ≤ kmax.

    B(k) = Σ_i C(k,i)(−1)^{k−i} E[L^i] with E[L^i] = e^{i(i−1)/(2z²)} (the k-th forward
    difference in WBK 2019, App. B.5). The alternating sum cancels by many orders of
    magnitude when z is large, so it is evaluated in decimal arithmetic with enough digits,
    checked after the fact. Odd entries are nan; entries that need more than 20,000 digits are
    inf (the caller then falls back on Thm. 9, which is still valid).
    """
    out = [math.nan] * (kmax + 1)
    out[0] = 0.0
    prec = 50
    moments = _power_moments(z, kmax, prec)
    for k in range(2, kmax + 1, 2):
        while True:
            with localcontext(_context(prec)):
                terms = [Decimal(math.comb(k, i)) * moments[i] for i in range(k + 1)]
                total = sum(
                    (t if (k - i) % 2 == 0 else -t for i, t in enumerate(terms)), Decimal(0)
                )
                biggest = max(t.adjusted() for t in terms)
            if total > 0 and biggest - total.adjusted() < prec - 25:
                out[k] = float(total.ln(_context(30)))
                break
            lost = biggest - total.adjusted() if total > 0 else prec
            prec = max(2 * prec, lost + 60)
            if prec > _DECIMAL_MAX_DIGITS:
                return tuple(out[:k] + [math.inf] * (kmax + 1 - k))
            moments = _power_moments(z, kmax, prec)
    return tuple(out)


def _power_moments(z: float, kmax: int, digits: int) -> list[Decimal]:
    """E[L^i] = e^{i(i−1)x/2}, x = 1/z², for i = 0..kmax, to ``digits`` significant digits."""
    with localcontext(_context(digits + 10)):
        x = Decimal(1) / (Decimal(z) * Decimal(z))
        ratio = x.exp()
        values = [Decimal(1), Decimal(1)]
        step = Decimal(1)
        for _ in range(2, kmax + 1):
            step *= ratio  # e^{(i−1)x}
            values.append(values[-1] * step)
        return values


def _context(digits: int) -> Context:
    """Decimal arithmetic with ``digits`` significant digits and an unbounded exponent range."""
    return Context(prec=digits, Emax=MAX_EMAX, Emin=MIN_EMIN)
