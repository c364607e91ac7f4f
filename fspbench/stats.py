"""Interval estimates for small seed counts: pure functions over 1-D arrays of per-run values.

Every comparison in fspbench is two independent samples of final accuracies, one per seed, with
n of about 3 to 10 per arm. At that size a percentile bootstrap is too narrow (its intervals cover
the true difference about 88% of the time at n = 5; tests/test_stats.py simulates it), so every
decision uses Welch's t interval: the difference of means with the Welch-Satterthwaite degrees of
freedom, which holds its coverage for normal data and, because both arms share their shape, for
skewed ones too (same test). Nothing here draws random numbers without an explicit generator.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
METHOD = "Welch t (unequal variances, Welch-Satterthwaite df)"


@dataclass(frozen=True)
class Interval:
    """A difference of means (treatment minus control) with its two-sided interval."""

    estimate: float
    low: float
    high: float
    df: float  # Welch-Satterthwaite degrees of freedom (inf when both arms are constant)
    se: float  # standard error of the difference


def _arrays(t: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(t, dtype=float), np.asarray(c, dtype=float)


def welch_df(var_t: np.ndarray | float, n_t: int, var_c: np.ndarray | float, n_c: int) -> np.ndarray:
    """Welch-Satterthwaite df of the difference: (a + b)^2 / (a^2/(n_t-1) + b^2/(n_c-1)), a = var_t/n_t."""
    a, b = np.asarray(var_t) / n_t, np.asarray(var_c) / n_c
    den = a**2 / (n_t - 1) + b**2 / (n_c - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (a + b) ** 2 / np.where(den > 0, den, 1.0), np.inf)


def welch_interval(t: np.ndarray, c: np.ndarray, level: float = LEVEL) -> Interval:
    """mean(t) - mean(c) with Welch's two-sided t interval (scipy's ``ttest_ind(equal_var=False)``).

    NaN bounds with fewer than 2 runs per arm; both arms constant: df inf and a zero-width interval.
    """
    t, c = _arrays(t, c)
    if len(t) == 0 or len(c) == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, math.nan)
    est = float(t.mean() - c.mean())
    if len(t) < 2 or len(c) < 2:
        return Interval(est, math.nan, math.nan, math.nan, math.nan)
    se = math.sqrt(t.var(ddof=1) / len(t) + c.var(ddof=1) / len(c))
    if se == 0:
        return Interval(est, est, est, math.inf, 0.0)
    with warnings.catch_warnings():  # one constant arm: scipy warns of precision loss, its variance is 0 exactly
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        res = stats.ttest_ind(t, c, equal_var=False)
    ci = res.confidence_interval(level)
    return Interval(est, float(ci.low), float(ci.high), float(res.df), se)


def welch_p(t: np.ndarray, c: np.ndarray, null: float = 0.0, alternative: str = "two-sided") -> float | None:
    """Welch's t-test p-value of H0: mean(t) - mean(c) = null ("greater": H1 above null, "less": below)."""
    t, c = _arrays(t, c)
    if len(t) < 2 or len(c) < 2:
        return None
    iv = welch_interval(t, c)
    if iv.se == 0:
        diff = iv.estimate - null
        same = diff == 0
        if alternative == "two-sided":
            return 1.0 if same else 0.0
        return 0.5 if same else float((diff > 0) != (alternative == "greater"))
    tstat = (iv.estimate - null) / iv.se
    if alternative == "two-sided":
        return float(2 * stats.t.sf(abs(tstat), iv.df))
    if alternative == "greater":
        return float(stats.t.sf(tstat, iv.df))
    return float(stats.t.cdf(tstat, iv.df))


def verdict(iv: Interval, boundary: float) -> str:
    """supported if the interval lies above ``boundary``, contradicted if below, else inconclusive.

    For non-inferiority the boundary is -margin: the 95% interval's low end above it is the
    one-sided Welch test at alpha = 0.025 rejecting "FSP is worse by the margin or more".
    """
    if math.isnan(iv.low) or math.isnan(iv.high):
        return "inconclusive"
    if iv.low > boundary:
        return "supported"
    if iv.high < boundary:
        return "contradicted"
    return "inconclusive"


def seeds_needed(sd_t: float, sd_c: float, distance: float, level: float = LEVEL, max_n: int = 1000) -> int | None:
    """Seeds per arm at which Welch's half-width falls below ``distance`` at these spreads.

    The power estimate for an inconclusive verdict: with n runs per arm and the observed standard
    deviations, the half-width is t(df) * sqrt((sd_t^2 + sd_c^2) / n). Returns the smallest such n
    (>= 2), or None when even ``max_n`` is not enough (or the estimate sits on the boundary).
    """
    if not distance > 0 or math.isnan(sd_t) or math.isnan(sd_c):
        return None
    var = sd_t**2 + sd_c**2
    if var == 0:
        return 2
    for n in range(2, max_n + 1):
        df = float(welch_df(sd_t**2, n, sd_c**2, n))
        if float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(var / n) < distance:
            return n
    return None


def log_ratio_interval(t: np.ndarray, c: np.ndarray, level: float = LEVEL) -> Interval:
    """Ratio of geometric means exp(mean log t - mean log c) with Welch's interval on the logs.

    For positive, right-skewed quantities such as steps or seconds to a target accuracy; the
    estimate and bounds are ratios (1 = equal).
    """
    t, c = _arrays(t, c)
    if (t <= 0).any() or (c <= 0).any() or np.isnan(t).any() or np.isnan(c).any():
        return Interval(math.nan, math.nan, math.nan, math.nan, math.nan)
    iv = welch_interval(np.log(t), np.log(c), level)
    return Interval(math.exp(iv.estimate), math.exp(iv.low), math.exp(iv.high), iv.df, iv.se)


def t_halfwidth(sd: np.ndarray, n: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """Half-width of the t interval of a mean: t_{n-1} * sd / sqrt(n); 0 where n < 2 (a single run)."""
    sd, n = np.asarray(sd, dtype=float), np.asarray(n, dtype=float)
    q = stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1))
    return np.where(n >= 2, q * np.nan_to_num(sd) / np.sqrt(np.maximum(n, 1)), 0.0)


# ---------------------------------------------------------------- coverage by simulation

IntervalFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def welch_intervals(t: np.ndarray, c: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised welch_interval over draws: t (D, n_t), c (D, n_c) -> low (D,), high (D,)."""
    ci = stats.ttest_ind(t, c, axis=1, equal_var=False).confidence_interval(level)
    return np.asarray(ci.low), np.asarray(ci.high)


def percentile_bootstrap_intervals(t: np.ndarray, c: np.ndarray, rng: np.random.Generator, resamples: int = 2000,
                                   level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The percentile bootstrap of the difference of means, each arm resampled on its own.

    t (D, n_t), c (D, n_c) -> low (D,), high (D,). Kept to show why fspbench does not decide with it.
    """
    d, nt = t.shape
    nc = c.shape[1]
    bt = np.take_along_axis(t[:, None, :], rng.integers(0, nt, (d, resamples, nt)), axis=2).mean(axis=2)
    bc = np.take_along_axis(c[:, None, :], rng.integers(0, nc, (d, resamples, nc)), axis=2).mean(axis=2)
    diff = bt - bc  # (D, resamples)
    a = (1 - level) / 2
    return np.quantile(diff, a, axis=1), np.quantile(diff, 1 - a, axis=1)


def coverage(interval: IntervalFn, draw: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray, float]],
             rng: np.random.Generator) -> float:
    """Fraction of simulated draws whose interval holds the true difference.

    ``draw(rng)`` returns t (D, n_t), c (D, n_c) and the true difference of their means.
    """
    t, c, truth = draw(rng)
    low, high = interval(t, c)
    return float(np.mean((low <= truth) & (truth <= high)))
