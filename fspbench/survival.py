"""Time to a target with censoring: Kaplan-Meier, the log-rank test and restricted mean times (lifelines).

A run that never reaches the target within its budget is right-censored at its budget, never dropped:
its time is its budget and its event flag is 0. Everything here is a pure function of arrays (numpy in,
a frozen dataclass out); the survival estimates are lifelines' own (``KaplanMeierFitter``,
``statistics.logrank_test``, ``utils.restricted_mean_survival_time``, ``utils.median_survival_times``).
The one random step, the bootstrap of the restricted-mean difference, draws from a numpy Generator of a
fixed seed, so every result is the same on every call.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0


@dataclass(frozen=True)
class KaplanMeier:
    """One arm's Kaplan-Meier estimate of the time to target.

    ``median`` is the first time the product-limit survival falls to 0.5 or below (inf where it never does,
    i.e. fewer than half the runs reached the target); ``low`` and ``high`` are the medians of the lower and
    upper bands of lifelines' pointwise interval (exponential Greenwood), inf where a band never falls to 0.5.
    """

    n: int  # runs, censored ones included
    reached: int  # runs that reached the target (events)
    censored: int  # runs censored at their budget
    median: float
    low: float
    high: float


@dataclass(frozen=True)
class TimeToTarget:
    """Two arms' times to target, treatment against control.

    ``logrank_p``: two-sided p of the log-rank test (NaN where no run of either arm reached the target).
    ``rmst_*``: restricted mean times to target up to ``horizon`` (the smaller of the two arms' largest
    budgets, where both arms are still observed), the area under each arm's Kaplan-Meier curve from 0 to
    ``horizon``; ``rmst_diff`` = treatment - control (negative: the treatment reaches the target sooner),
    with the percentile bootstrap interval [``rmst_low``, ``rmst_high``] over ``resamples`` resamples (of
    pairs together where ``paired``, else of each arm on its own) from a Generator of seed ``seed``.
    """

    treatment: KaplanMeier
    control: KaplanMeier
    logrank_p: float
    horizon: float
    rmst_treatment: float
    rmst_control: float
    rmst_diff: float
    rmst_low: float
    rmst_high: float
    resamples: int
    paired: bool
    seed: int

    @property
    def interval(self) -> str:
        """How the interval of ``rmst_diff`` was made, in words."""
        what = "pairs resampled together" if self.paired else "each arm resampled on its own"
        return f"percentile bootstrap, {self.resamples} resamples, {what}, numpy Generator seed {self.seed}"


def censored(hits: np.ndarray, budgets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Durations and event flags from times to target (NaN: never reached) and budgets.

    A run that reached the target has its time to target and event 1; one that did not is censored at its
    budget (event 0). A run without a budget (no curve point at all) is censored at 0: it counts in n but
    carries no time at risk.
    """
    hits, budgets = np.asarray(hits, dtype=float), np.asarray(budgets, dtype=float)
    if hits.shape != budgets.shape:
        raise ValueError(f"hits and budgets differ in shape: {hits.shape} vs {budgets.shape}")
    reached = ~np.isnan(hits)
    durations = np.where(reached, hits, np.nan_to_num(budgets, nan=0.0))
    return durations, reached.astype(int)


def _fit(durations: np.ndarray, events: np.ndarray, level: float = LEVEL) -> Any:
    from lifelines import KaplanMeierFitter

    return KaplanMeierFitter(alpha=1 - level).fit(durations, event_observed=events)


def kaplan_meier(durations: np.ndarray, events: np.ndarray, level: float = LEVEL) -> KaplanMeier:
    """Kaplan-Meier median time to target with its ``level`` interval, and the counts of one arm."""
    from lifelines.utils import median_survival_times

    durations, events = np.asarray(durations, dtype=float), np.asarray(events, dtype=int)
    n, reached = len(durations), int(events.sum())
    if n == 0:
        return KaplanMeier(0, 0, 0, math.nan, math.nan, math.nan)
    km = _fit(durations, events, level)
    bands = median_survival_times(km.confidence_interval_)
    return KaplanMeier(n, reached, n - reached, float(km.median_survival_time_), float(bands.iloc[0, 0]),
                       float(bands.iloc[0, 1]))


def rmst(durations: np.ndarray, events: np.ndarray, horizon: float) -> float:
    """Restricted mean time to target up to ``horizon``: the area under the Kaplan-Meier curve on [0, horizon]."""
    from lifelines.utils import restricted_mean_survival_time

    if len(durations) == 0 or not math.isfinite(horizon):
        return math.nan
    return float(restricted_mean_survival_time(_fit(np.asarray(durations, dtype=float),
                                                    np.asarray(events, dtype=int)), t=horizon))


def logrank_p(t_durations: np.ndarray, t_events: np.ndarray, c_durations: np.ndarray,
              c_events: np.ndarray) -> float:
    """Two-sided p of the log-rank test of two arms (NaN where an arm is empty or no run reached the target)."""
    from lifelines.statistics import logrank_test

    if len(t_durations) == 0 or len(c_durations) == 0 or int(np.sum(t_events)) + int(np.sum(c_events)) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = logrank_test(np.asarray(t_durations, dtype=float), np.asarray(c_durations, dtype=float),
                           event_observed_A=np.asarray(t_events, dtype=int),
                           event_observed_B=np.asarray(c_events, dtype=int))
    return float(res.p_value)


def horizon(t_budgets: np.ndarray, c_budgets: np.ndarray) -> float:
    """The common horizon: the smaller of the two arms' largest budgets (NaN where an arm has no budget)."""
    t, c = np.asarray(t_budgets, dtype=float), np.asarray(c_budgets, dtype=float)
    if not len(t) or not len(c) or np.isnan(t).all() or np.isnan(c).all():
        return math.nan
    return float(min(np.nanmax(t), np.nanmax(c)))


def bootstrap_rmst_diff(t_durations: np.ndarray, t_events: np.ndarray, c_durations: np.ndarray,
                        c_events: np.ndarray, tau: float, paired: bool = False, resamples: int = RESAMPLES,
                        seed: int = SEED, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of rmst(treatment) - rmst(control) up to ``tau``.

    Paired: one draw of positions with replacement resamples pair i of both arms together (the arms must
    be of one length); else each arm draws its own positions. The restricted mean of a resample depends
    only on the multiset of (duration, event) it holds, so each distinct multiset is fitted once (exact, and
    what keeps 2,000 resamples of 5 runs to at most 126 fits per arm).
    """
    td, te = np.asarray(t_durations, dtype=float), np.asarray(t_events, dtype=int)
    cd, ce = np.asarray(c_durations, dtype=float), np.asarray(c_events, dtype=int)
    if paired and len(td) != len(cd):
        raise ValueError(f"paired arms differ in length: {len(td)} vs {len(cd)}")
    if not len(td) or not len(cd) or not math.isfinite(tau) or resamples < 1:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    cache: dict[tuple[tuple[float, int], ...], float] = {}

    def area(d: np.ndarray, e: np.ndarray) -> float:
        key = tuple(sorted(zip(d.tolist(), e.tolist())))
        if key not in cache:
            cache[key] = rmst(d, e, tau)
        return cache[key]

    diffs = np.empty(resamples)
    for b in range(resamples):
        ti = rng.integers(0, len(td), len(td))
        ci = ti if paired else rng.integers(0, len(cd), len(cd))
        diffs[b] = area(td[ti], te[ti]) - area(cd[ci], ce[ci])
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def time_to_target(t_hits: np.ndarray, t_budgets: np.ndarray, c_hits: np.ndarray, c_budgets: np.ndarray,
                   paired: bool = False, resamples: int = RESAMPLES, seed: int = SEED,
                   level: float = LEVEL) -> TimeToTarget:
    """Both arms' Kaplan-Meier medians, the log-rank p and the restricted-mean difference with its interval.

    ``*_hits``: each run's time to target, NaN where it never reached it; ``*_budgets``: each run's budget
    in the same unit (its last curve point), where a run that never reached the target is censored.
    Paired: position i of one arm pairs with position i of the other.
    """
    td, te = censored(t_hits, t_budgets)
    cd, ce = censored(c_hits, c_budgets)
    tau = horizon(t_budgets, c_budgets)
    rt, rc = rmst(td, te, tau), rmst(cd, ce, tau)
    low, high = bootstrap_rmst_diff(td, te, cd, ce, tau, paired, resamples, seed, level)
    return TimeToTarget(kaplan_meier(td, te, level), kaplan_meier(cd, ce, level), logrank_p(td, te, cd, ce), tau,
                        rt, rc, rt - rc, low, high, resamples, paired, seed)
