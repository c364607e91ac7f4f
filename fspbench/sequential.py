"""Group-sequential decisions: looks every k seeds per arm, repeated confidence intervals.

The rule (docs/METHOD.md, "Group-sequential decisions"):

- Looks j = 1..J after n_j = j * k seeds per arm; information fraction t_j = n_j / n_max.
- Error spent per side by the Lan-DeMets O'Brien-Fleming-type function
  ``alpha(t) = 2 - 2 Phi(z_{1 - alpha/2} / sqrt(t))`` (alpha = 0.025 per side), so alpha(1) = alpha.
- Boundary z_j: P(Z_1 < z_1, ..., Z_{j-1} < z_{j-1}, Z_j >= z_j) = alpha(t_j) - alpha(t_{j-1}) under
  H0, the Z_j jointly normal with corr(Z_i, Z_j) = sqrt(t_i / t_j) (Armitage, McPherson and Rowe's
  recursion on the score process, below).
- Small samples: each z_j becomes a t critical value with the same tail probability,
  ``c_j = t.isf(norm.sf(z_j), df_j)``, at the look's Welch-Satterthwaite df (independent arms) or
  n_j - 1 (paired differences).
- Repeated confidence interval at look j: estimate +- c_j * SE_j (Jennison and Turnbull 1989). They
  hold the true difference at every look at once with probability about 1 - 2 alpha, so every
  decision read off them shares one error budget, whenever the procedure stops.

Decisions (``Rule``): superiority (better accuracy, cross-task transfer): supported when the
interval lies above 0, contradicted when below 0, and contradicted with "no benefit as large as X"
when it holds 0 but its upper end is below the smallest effect of interest X. Non-inferiority
(fast optimization): supported when the low end is above -margin, contradicted when the high end
is below -margin. A look may be gated (a claim's regime checks failed there): no decision is taken
at a gated look. Open after the last look: inconclusive.

Several claims at once (a family): Bonferroni runs each claim's design at alpha / k per side (its own
spending, boundaries and repeated intervals at that level), which holds under any dependence between the
claims (they share the scratch arm).

Skew: with ``Calibration`` each look's critical values are the wider of the t one and the bootstrap-t
quantile (the resamples drawn from a fixed seed, so the verdicts recompute exactly).

Everything here is vectorised over simulated draws (arrays of shape (D, n)); the verdicts call the
same functions with D = 1, so the simulations in tests/test_sequential.py and tests/test_family.py
test the procedure the verdicts run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy import optimize, stats

ALPHA = 0.025  # one-sided, per side
SUPPORTED, CONTRADICTED, NO_EFFECT, OPEN = 1, -1, -2, 0  # decision codes; NO_EFFECT is a contradiction
VERDICTS = {SUPPORTED: "supported", CONTRADICTED: "contradicted", NO_EFFECT: "contradicted", OPEN: "open"}


# ---------------------------------------------------------------- spending and boundaries


def obf_spending(t: float | np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Lan-DeMets O'Brien-Fleming-type spending: error spent by information fraction t in (0, 1]."""
    t = np.asarray(t, dtype=float)
    return np.asarray(2.0 - 2.0 * stats.norm.cdf(stats.norm.isf(alpha / 2) / np.sqrt(t)), dtype=float)


_GRID = 2001  # points of the score process density per look: z within 1e-5 of a finer grid


def _crossing(b_prev: float, dens: np.ndarray, x: np.ndarray, dt: float, b: float) -> float:
    """P(not crossed before, S_k >= b) from the density ``dens`` of S_{k-1} on x below b_prev."""
    tail = stats.norm.sf((b - x) / math.sqrt(dt))
    return float(np.trapezoid(dens * tail, x))


@lru_cache(maxsize=64)
def _boundaries(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    spent = obf_spending(np.array(fractions), alpha)
    z = [float(stats.norm.isf(spent[0]))]
    # the score process S_k = Z_k sqrt(t_k) has independent normal increments of variance t_k - t_{k-1}
    sd = math.sqrt(fractions[0])
    x = np.linspace(-10 * math.sqrt(fractions[-1]), z[0] * sd, _GRID)
    dens = stats.norm.pdf(x / sd) / sd  # density of S_1 where it has not crossed
    for k in range(1, len(fractions)):
        dt = fractions[k] - fractions[k - 1]
        target = float(spent[k] - spent[k - 1])
        b_prev = z[-1] * math.sqrt(fractions[k - 1])

        def gap(b: float, dens: np.ndarray = dens, x: np.ndarray = x, dt: float = dt) -> float:
            return _crossing(b_prev, dens, x, dt, b) - target

        b = optimize.brentq(gap, -10.0, 20.0, xtol=1e-10)
        z.append(b / math.sqrt(fractions[k]))
        # density of S_k on (-inf, b): the convolution of the surviving density with the increment
        new_x = np.linspace(-10 * math.sqrt(fractions[-1]), b, _GRID)
        kernel = stats.norm.pdf((new_x[:, None] - x[None, :]) / math.sqrt(dt)) / math.sqrt(dt)
        dens = np.trapezoid(kernel * dens[None, :], x, axis=1)
        x = new_x
    return tuple(z)


def boundaries(fractions: tuple[float, ...] | list[float], alpha: float = ALPHA) -> np.ndarray:
    """One-sided efficacy boundaries z_1..z_J (O'Brien-Fleming-type spending) at these fractions.

    fractions: increasing information fractions t_j in (0, 1], the last 1. Five equal looks at
    alpha = 0.025 give 4.877, 3.357, 2.680, 2.290, 2.031 (Jennison and Turnbull's tables).
    """
    f = tuple(float(v) for v in fractions)
    if not f or any(b <= a for a, b in zip(f, f[1:])) or not 0 < f[0] or f[-1] > 1:
        raise ValueError(f"information fractions must increase within (0, 1], got {f}")
    return np.array(_boundaries(f, float(alpha)))


def t_critical(z: np.ndarray | float, df: np.ndarray | float) -> np.ndarray:
    """The t critical value with the same upper tail as z: t.isf(norm.sf(z), df) (inf df: z itself)."""
    return np.asarray(stats.t.isf(stats.norm.sf(z), df), dtype=float)


# ---------------------------------------------------------------- the design


@dataclass(frozen=True)
class Design:
    """How a claim's seeds are added and analysed.

    look_every: seeds per arm added at each look (k). max_seeds: seeds per arm at the last look
    (a multiple of k). paired: arms share seed k on purpose (same initial weights and batch order)
    and the paired differences are analysed; else each arm draws its own seeds (Welch).
    alpha: one-sided error per side.
    """

    look_every: int
    max_seeds: int
    paired: bool
    alpha: float = ALPHA  # one-sided, per side, for this claim (a family's correction already applied)

    @property
    def looks(self) -> int:
        return self.max_seeds // self.look_every

    def n_at(self, look: int) -> int:
        """Seeds per arm at look ``look`` (1-based)."""
        return look * self.look_every

    @property
    def fractions(self) -> tuple[float, ...]:
        return tuple(self.n_at(j) / self.max_seeds for j in range(1, self.looks + 1))

    @property
    def z(self) -> np.ndarray:
        return boundaries(self.fractions, self.alpha)

    @property
    def spent(self) -> np.ndarray:
        """Error spent per side up to each look (cumulative)."""
        return obf_spending(np.array(self.fractions), self.alpha)

    @property
    def seeding(self) -> str:
        return "paired" if self.paired else "independent"

    def describe(self) -> str:
        how = ("paired by design: arms share seed k (initial weights, batch order and, per seed, the training "
               "subset), paired t on the differences" if self.paired else
               "independent: each arm draws its own seeds, Welch t")
        return (f"looks after every {self.look_every} seeds per arm up to {self.max_seeds} ({self.looks} looks); "
                f"Lan-DeMets O'Brien-Fleming-type spending, one-sided {self.alpha:g} per side; {how}")


@dataclass(frozen=True)
class Rule:
    """What a claim's repeated interval decides.

    kind: "superiority" (boundary 0; "no benefit as large as smallest_effect" contradicts too) or
    "noninferiority" (boundary -margin).
    """

    kind: str
    smallest_effect: float = 0.5
    margin: float = 0.5

    @property
    def boundary(self) -> float:
        return -self.margin if self.kind == "noninferiority" else 0.0

    def describe(self) -> str:
        if self.kind == "noninferiority":
            return (f"supported if the repeated interval's low end is above -{self.margin:g} points, contradicted "
                    f"if its high end is below -{self.margin:g}; else more seeds, and inconclusive after the last look")
        return (f"supported if the repeated interval lies above 0, contradicted if below 0 or if it holds 0 with "
                f"its upper end below the smallest effect of interest ({self.smallest_effect:g} points: no benefit "
                "as large as that); else more seeds, and inconclusive after the last look")


def decide(low: np.ndarray | float, high: np.ndarray | float, rule: Rule) -> np.ndarray:
    """Decision codes (SUPPORTED, CONTRADICTED, NO_EFFECT, OPEN) of intervals [low, high]; NaN: OPEN."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    out = np.full(np.broadcast(low, high).shape, OPEN, dtype=int)
    b = rule.boundary
    with np.errstate(invalid="ignore"):
        out = np.where(low > b, SUPPORTED, out)
        out = np.where((out == OPEN) & (high < b), CONTRADICTED, out)
        if rule.kind == "superiority":
            out = np.where((out == OPEN) & (high < rule.smallest_effect), NO_EFFECT, out)
    return out


# ---------------------------------------------------------------- the looks


@dataclass(frozen=True)
class Looks:
    """Every look of D sequential procedures, as arrays of shape (D, J) (J looks with data)."""

    n: np.ndarray  # (J,) seeds per arm at each look
    estimate: np.ndarray  # treatment minus control (paired: mean difference)
    se: np.ndarray
    df: np.ndarray
    z: np.ndarray  # (J,) the boundary
    critical: np.ndarray  # the t critical value c_j
    low: np.ndarray  # repeated interval
    high: np.ndarray
    decision: np.ndarray  # per look, before stopping (OPEN where gated)
    stop: np.ndarray  # (D,) 0-based look where the procedure stopped; -1: still open after the looks given
    verdict: np.ndarray  # (D,) decision code at the stop (OPEN when open)
    low_critical: np.ndarray  # the critical value of the interval's low side (calibrated: >= critical)
    high_critical: np.ndarray


def moments(t: np.ndarray, c: np.ndarray, n: np.ndarray, paired: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, se, df), each (D, J), from the first n_j columns of t and c (D, >= n_J).

    Independent: Welch's difference of means, its standard error and Welch-Satterthwaite df.
    Paired: the mean of t - c over pairs, its standard error sd / sqrt(n) and n - 1 df.
    """
    t, c = np.atleast_2d(np.asarray(t, dtype=float)), np.atleast_2d(np.asarray(c, dtype=float))
    cols = [np.s_[:, :k] for k in n]
    if paired:
        d = t[:, : n[-1]] - c[:, : n[-1]]
        est = np.stack([d[s].mean(axis=1) for s in cols], axis=1)
        var = np.stack([d[s].var(axis=1, ddof=1) for s in cols], axis=1)
        return est, np.sqrt(var / n), np.broadcast_to(n - 1.0, est.shape).copy()
    est = np.stack([t[s].mean(axis=1) - c[s].mean(axis=1) for s in cols], axis=1)
    a = np.stack([t[s].var(axis=1, ddof=1) for s in cols], axis=1) / n
    b = np.stack([c[s].var(axis=1, ddof=1) for s in cols], axis=1) / n
    den = a**2 / (n - 1) + b**2 / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(den > 0, (a + b) ** 2 / np.where(den > 0, den, 1.0), np.inf)
    return est, np.sqrt(a + b), df


@dataclass(frozen=True)
class Calibration:
    """Bootstrap-t critical values per look (Efron and Tibshirani 1993, ch. 12), never below the t ones.

    At look j the studentised resamples T* = (est* - est) / se* (pairs resampled together when paired,
    each arm on its own when independent) replace the t distribution: the interval is
    [est - max(c_t, q*_{1-p}) se, est + max(c_t, -q*_p) se] with p = norm.sf(z_j), so a skewed sample
    widens the side its tail points to and never narrows either. A tail that ``resamples`` cannot
    resolve (p * resamples < min_tail draws, e.g. the first look's p of about 1e-6), or fewer than
    ``min_n`` seeds (5 paired differences have only 126 distinct resamples), keeps the t critical value.
    The draws come from ``seed`` alone, so the verdicts recompute exactly.
    """

    resamples: int = 100_000
    seed: int = 20170721  # CVPR 2017's first day: any fixed number would do
    min_tail: int = 25
    min_n: int = 10
    chunk: int = 4_000_000  # resampled values held at once (memory: 8 bytes each)

    def usable(self, p: float, n: int) -> bool:
        return n >= self.min_n and p * self.resamples >= self.min_tail

    def to_json(self) -> dict[str, object]:
        """What a recomputation needs: look j (0-based) draws ``rng.integers(0, n, (resamples, n))`` from
        ``numpy.random.default_rng(seed + j)`` (pairs resampled together; independent arms: the treatment's
        indices, then the control's), quantiles by numpy's default (linear) rule."""
        return {"method": "bootstrap_t", "resamples": self.resamples, "seed": self.seed, "seed_of_look": "seed + j",
                "min_tail": self.min_tail, "min_n": self.min_n}

    def describe(self) -> str:
        return (f"bootstrap-t critical values ({self.resamples:,} resamples, seed {self.seed}) where the look's tail "
                f"holds at least {self.min_tail} resamples and n >= {self.min_n}, never below the t critical value; "
                "the t critical value alone at earlier looks")


CALIBRATION = Calibration()  # the deciding intervals' bootstrap-t (the resamples and seed it states)


def _studentised(t: np.ndarray, c: np.ndarray, paired: bool, rng: np.random.Generator, b: int) -> np.ndarray:
    """(D, b) studentised bootstrap statistics of one look's data t, c (D, n); NaN where se* is 0."""
    d_, n = t.shape
    if paired:
        x = t - c
        idx = rng.integers(0, n, size=(b, n))
        xs = x[:, idx]  # (D, b, n)
        est_s, se_s = xs.mean(axis=2), xs.std(axis=2, ddof=1) / math.sqrt(n)
        est = x.mean(axis=1, keepdims=True)
    else:
        it, ic = rng.integers(0, n, size=(b, n)), rng.integers(0, c.shape[1], size=(b, c.shape[1]))
        ts, cs = t[:, it], c[:, ic]
        est_s = ts.mean(axis=2) - cs.mean(axis=2)
        se_s = np.sqrt(ts.var(axis=2, ddof=1) / n + cs.var(axis=2, ddof=1) / c.shape[1])
        est = t.mean(axis=1, keepdims=True) - c.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se_s > 0, (est_s - est) / se_s, np.nan)


def bootstrap_t_critical(t: np.ndarray, c: np.ndarray, paired: bool, p: np.ndarray | float,
                         cal: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """(low-side, high-side) critical values (D,) from the bootstrap-t quantiles q*_{1-p} and -q*_p of one
    look's data t, c (D, n); the same resample indices for every draw (one generator from cal.seed)."""
    t, c = np.atleast_2d(t), np.atleast_2d(c)
    rng = np.random.default_rng(cal.seed)
    per = max(1, cal.chunk // max(1, t.shape[0] * t.shape[1]))
    parts, left = [], cal.resamples
    while left > 0:
        b = min(per, left)
        parts.append(_studentised(t, c, paired, rng, b))
        left -= b
    ts = np.concatenate(parts, axis=1)  # (D, B)
    p = np.broadcast_to(np.asarray(p, dtype=float), (t.shape[0],))
    lo_q = np.array([np.nanquantile(row, 1 - q) if np.isfinite(row).any() else np.nan for row, q in zip(ts, p)])
    hi_q = np.array([-np.nanquantile(row, q) if np.isfinite(row).any() else np.nan for row, q in zip(ts, p)])
    return lo_q, hi_q


def _critical(t: np.ndarray, c: np.ndarray, n: np.ndarray, zz: np.ndarray, df: np.ndarray, paired: bool,
              cal: Calibration | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t critical, low-side critical, high-side critical), each (D, J): the calibrated ones never below t's."""
    crit = t_critical(zz[None, :], df)
    low_c, high_c = crit.copy(), crit.copy()
    if cal is None:
        return crit, low_c, high_c
    for j, (k, z) in enumerate(zip(n.astype(int), zz)):
        p = float(stats.norm.sf(z))
        if not cal.usable(p, int(k)):
            continue
        lo_q, hi_q = bootstrap_t_critical(t[:, :k], c[:, :k], paired, p, replace(cal, seed=cal.seed + j))
        low_c[:, j] = np.fmax(crit[:, j], lo_q)
        high_c[:, j] = np.fmax(crit[:, j], hi_q)
    return crit, low_c, high_c


def run_looks(t: np.ndarray, c: np.ndarray, design: Design, rule: Rule,
              gate: np.ndarray | None = None, z: np.ndarray | None = None,
              calibration: Calibration | None = None) -> Looks:
    """The sequential procedure on treatment values t and control values c, each (D, n) with n >= k.

    Columns are seeds in the order the grid adds them (paired: column i of t pairs with column i of
    c). Looks are taken at n_j = j * k for every complete look in the data (at most design.looks).
    gate: (D, J) or (J,) booleans, False where a look may not decide (its regime checks failed).
    z: boundaries to use instead of the design's (tests pass a naive 1.96 to show it fails).
    calibration: bootstrap-t critical values (``Calibration``) instead of the t ones where they are wider.
    """
    t, c = np.atleast_2d(np.asarray(t, dtype=float)), np.atleast_2d(np.asarray(c, dtype=float))
    have = min(t.shape[1], c.shape[1]) // design.look_every
    J = min(have, design.looks)
    if J < 1:
        raise ValueError(f"fewer than {design.look_every} seeds per arm: no look is complete")
    n = np.array([design.n_at(j) for j in range(1, J + 1)], dtype=float)
    est, se, df = moments(t, c, n.astype(int), design.paired)
    zz = (design.z if z is None else np.broadcast_to(np.asarray(z, dtype=float), (design.looks,)))[:J]
    crit, low_c, high_c = _critical(t, c, n, zz, df, design.paired, calibration)
    low = est - np.where(se > 0, low_c * se, 0.0)
    high = est + np.where(se > 0, high_c * se, 0.0)
    dec = decide(low, high, rule)
    if gate is not None:
        dec = np.where(np.broadcast_to(np.asarray(gate, dtype=bool)[..., :J], dec.shape), dec, OPEN)
    last = design.looks - 1
    decided = dec != OPEN
    first = np.where(decided.any(axis=1), decided.argmax(axis=1), -1)
    # not decided by the design's last look: stopped there, inconclusive; fewer looks given: still open
    stop = np.where((first < 0) & (J - 1 == last), last, first)
    verdict = np.where(first >= 0, dec[np.arange(len(dec)), np.maximum(first, 0)], OPEN)
    return Looks(n, est, se, df, zz, crit, low, high, dec, stop, verdict, low_c, high_c)


# ---------------------------------------------------------------- fixed-sample intervals and power


def paired_interval(t: np.ndarray, c: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float, float]:
    """(estimate, low, high, df, se) of the mean of t - c, pairs in order: the paired t interval."""
    d = np.asarray(t, dtype=float) - np.asarray(c, dtype=float)
    n = len(d)
    if n < 2:
        est = float(d.mean()) if n else math.nan
        return est, math.nan, math.nan, math.nan, math.nan
    se = float(d.std(ddof=1) / math.sqrt(n))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    est = float(d.mean())
    return est, est - half, est + half, float(n - 1), se


def power(n: int, effect: float, sd_t: float, sd_c: float, alpha: float = ALPHA, paired: bool = False,
          sd_diff: float | None = None) -> float:
    """Power of the one-sided fixed-n t test at level alpha when the true distance to the boundary is
    ``effect``: P(T' > t_{1-alpha, df}), T' noncentral t. Independent: Welch's df and noncentrality
    effect / sqrt(sd_t^2/n + sd_c^2/n); paired: df n - 1 and effect / (sd_diff / sqrt(n))."""
    if n < 2:
        return math.nan
    if paired:
        if sd_diff is None or not sd_diff > 0:
            return math.nan
        df, nc = n - 1.0, effect / (sd_diff / math.sqrt(n))
    else:
        se = math.sqrt((sd_t**2 + sd_c**2) / n)
        if not se > 0:
            return math.nan
        a, b = sd_t**2 / n, sd_c**2 / n
        df, nc = (a + b) ** 2 / (a**2 / (n - 1) + b**2 / (n - 1)), effect / se
    return float(stats.nct.sf(stats.t.isf(alpha, df), df, nc))


def seeds_for_power(effect: float, sd_t: float, sd_c: float, target: float = 0.8, alpha: float = ALPHA,
                    paired: bool = False, sd_diff: float | None = None, max_n: int = 2000) -> int | None:
    """The smallest n per arm whose fixed-n one-sided t test has power >= target at ``effect``
    (noncentral t, as ``power``); None when the spreads are unknown or max_n is not enough."""
    if not effect > 0:
        return None
    values = [sd_diff] if paired else [sd_t, sd_c]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    for n in range(2, max_n + 1):
        p = power(n, effect, sd_t, sd_c, alpha, paired, sd_diff)
        if math.isnan(p):
            return 2  # no spread at all: two seeds decide
        if p >= target:
            return n
    return None
