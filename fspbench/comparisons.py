"""Comparisons of run arms from a runs table: pure functions, a labelled runs table in, dataclasses out.

Input: runs.parquet (one row per evaluation point) with the grid's labels: ``group`` (student group
or teacher id), ``budget`` (main-task steps), ``init_steps`` (stage 1), ``seed_index`` (a run's index
in its arm; -1 in grids whose tables list their seeds), ``train_images`` and ``curve_acc`` (accuracy
on the curve points' fixed test images). Nothing here reads files, plots, or draws random numbers.

Final accuracy of a run = test_acc at its last evaluation (the full test set). A diverged or failed
run keeps its last accuracy, or 0 when it never reached an evaluation: it is counted in n as a
failure, never dropped. Accuracy differences are in percentage points.

Two intervals, chosen by how the grid seeded the two arms (docs/METHOD.md):
- independent arms (each its own seeds): Welch's t interval (fspbench.stats);
- paired arms (run i of one arm has the seed, and so the initial weights and batch order, of run i of
  the other): the paired t interval of the differences, pairs matched by ``seed_index``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from fspbench import sequential, stats
from fspbench.claims import CONTROL, TREATMENT

INTERVALS = {"independent": f"{stats.METHOD}", "paired": "paired t on the differences of runs of the same seed "
                                                        "index (n - 1 df)"}


@dataclass(frozen=True)
class Test:
    """One comparison, recomputable from runs.parquet through its run ids and columns.

    treatment_runs and control_runs are in seed-index order: in a paired test, position i of one
    pairs with position i of the other.
    """

    name: str
    metric: str  # final_acc_diff | doubling_gain | headroom (points) | *_to_target_ratio (FSP / scratch, NaN if
    # a run never reached the target)
    role: str  # decides | regime | control | sweep | to_target | ablation
    estimate: float
    ci: tuple[float, float]
    n: int  # runs in the test, failures included
    treatment_runs: tuple[str, ...]
    control_runs: tuple[str, ...]
    budget: str  # how the two sides' compute is matched, in words
    p_value: float | None = None  # two-sided (to_target tests: the log-rank test's)
    failures: int = 0  # diverged or failed runs among both sides
    seeding: str = "independent"  # independent (Welch) | paired (paired t)
    # what the test rests on, each None where the test has none (claims.json's "extra", test_json):
    # accuracy tests (compare_accuracy): points, i.e. 100 x accuracy; to_target tests: steps or seconds
    n_treatment: int | None = None  # runs on the treatment side (pairs, in a paired test)
    n_control: int | None = None
    treatment_mean: float | None = None  # mean final accuracy (points), or mean steps / seconds to target
    control_mean: float | None = None
    treatment_sd: float | None = None  # sample SD (ddof 1) of the final accuracies, points; NaN below 2 runs
    control_sd: float | None = None
    difference_sd: float | None = None  # paired tests: SD of the pairs' differences, points
    df: float | None = None  # degrees of freedom of the t interval (Welch's, or n - 1 paired)
    se: float | None = None  # deciding tests: the standard error of the estimate at its look, points
    critical: float | None = None  # sequential tests: the t critical value of the repeated interval at its look
    look: int | None = None  # sequential tests: the look (1, 2, ...) the interval is from
    interval: str | None = None  # what the interval is, where it is not the plain 95% one
    fraction_of_full: float | None = None  # sweep tests: the budget as a fraction of the full budget
    target_acc: float | None = None  # to_target tests: the target accuracy, fraction 0..1 (curve images)
    treatment_reached: int | None = None  # to_target tests: runs that reached the target
    control_reached: int | None = None
    interpolation: str | None = None  # to_target tests: how the crossing step is read off the curve
    # to_target tests, censoring-aware (fspbench.survival; p_value is the log-rank test's): a run that never
    # reached the target is censored at its budget; Kaplan-Meier medians (inf: not reached by half the runs)
    # with their 95% interval, restricted mean times to target up to rmst_horizon, FSP - scratch with its
    # bootstrap interval [rmst_low, rmst_high] (rmst_interval: how it was drawn)
    treatment_censored: int | None = None
    control_censored: int | None = None
    treatment_km_median: float | None = None
    treatment_km_low: float | None = None
    treatment_km_high: float | None = None
    control_km_median: float | None = None
    control_km_low: float | None = None
    control_km_high: float | None = None
    rmst_horizon: float | None = None
    treatment_rmst: float | None = None
    control_rmst: float | None = None
    rmst_diff: float | None = None
    rmst_low: float | None = None
    rmst_high: float | None = None
    rmst_interval: str | None = None

    @property
    def n_per_side(self) -> str:
        """"5 pairs" or "5 + 5": the runs on each side, as the report writes them."""
        a, b = self.n_treatment, self.n_control
        return f"{a} pairs" if self.seeding == "paired" else f"{a} + {b}"


EXTRA = tuple(f.name for f in fields(Test) if f.name not in {
    "name", "metric", "role", "estimate", "ci", "n", "treatment_runs", "control_runs", "budget", "p_value",
    "failures", "seeding"})  # the fields claims.json keeps in a test's "extra" object


# ---------------------------------------------------------------- per-run summaries


def final_runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its labels and its last evaluation (final_acc, total_steps, wall_time_s, status)."""
    last = df.sort_values(["run_id", "step"], kind="stable").groupby("run_id", sort=True).tail(1)
    out = last.rename(columns={"test_acc": "final_acc", "step": "total_steps"}).copy()
    out["final_acc"] = out["final_acc"].fillna(0.0)  # failed before any evaluation: a failure at 0
    if "curve_acc" in out:
        out["final_curve_acc"] = out["curve_acc"].fillna(0.0)
    if "init_steps" not in out:  # unlabelled table: read stage 1's length off the curve
        init = df[df["stage"] == "init"].groupby("run_id")["stage_step"].max()
        out["init_steps"] = out["run_id"].map(init).fillna(0).astype("int64")
    if "seed_index" not in out:
        out["seed_index"] = -1
    return out.reset_index(drop=True)


def label_runs(df: pd.DataFrame, labels: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Add the grid's labels (group, budget, init_steps, precision, seed_index) to a runs table that lacks them."""
    out = df.copy()
    for col, default in (("group", ""), ("budget", 0), ("init_steps", 0), ("precision", "fp32"), ("seed_index", -1)):
        if col not in out:
            out[col] = out["run_id"].map({k: v.get(col, default) for k, v in labels.items()}).fillna(default)
    for col in ("budget", "init_steps", "seed_index"):
        out[col] = out[col].astype("int64")
    if "train_images" not in out:
        out["train_images"] = 0
    if "curve_acc" not in out:
        out["curve_acc"] = out["test_acc"]
    return out


def steps_to_target(curve: pd.DataFrame, target: float, column: str = "curve_acc") -> dict[str, float]:
    """Where one run's curve (sorted by step) first reaches ``target``, linearly interpolated.

    Between the last point below the target and the first at or above it, the step (and stage step
    and seconds) where the straight line between the two points crosses the target; the first point
    itself when the curve starts above it, or when the two points lie in different stages. Returns
    step (all stages), main_step (main-task stage only) and wall_time_s, each NaN when never reached.
    """
    col = column if column in curve else "test_acc"
    acc = curve[col].to_numpy(float)
    above = np.flatnonzero(acc >= target)
    if not len(above):
        return {"step": math.nan, "main_step": math.nan, "wall_time_s": math.nan}
    k = int(above[0])
    hit = curve.iloc[k]
    main = float(hit["stage_step"]) if hit["stage"] == "main" else 0.0
    out = {"step": float(hit["step"]), "main_step": main, "wall_time_s": float(hit["wall_time_s"])}
    if k == 0 or curve.iloc[k - 1]["stage"] != hit["stage"]:
        return out
    prev = curve.iloc[k - 1]
    w = (target - acc[k - 1]) / (acc[k] - acc[k - 1])  # in (0, 1]: the crossing between the two points
    for key, name in (("step", "step"), ("main_step", "stage_step"), ("wall_time_s", "wall_time_s")):
        if key == "main_step" and hit["stage"] != "main":
            continue
        out[key] = float(prev[name]) + w * (float(hit[name]) - float(prev[name]))
    return out


# ---------------------------------------------------------------- arms


def select(runs: pd.DataFrame, group: str, method: str, arch: str | None, budget: int,
           n: int | None = None) -> pd.DataFrame:
    """Students of one arm in seed-index order; ``n``: only those of seed index below n."""
    sel = runs[(runs["role"] == "student") & (runs["group"] == group) & (runs["method"] == method)
               & (runs["budget"] == budget)]
    if arch:
        sel = sel[sel["arch"] == arch]
    if n is not None:
        sel = sel[sel["seed_index"] < n]
    return sel.sort_values(["seed_index", "run_id"])


def arm_label(method: str, init: int, main: int, unit: str = " steps") -> str:
    """"fsp 200+600 steps" (stage 1 + main task) or "scratch 600 steps": the one way arms are named."""
    return f"{method} {init}+{main}{unit}" if init else f"{method} {main}{unit}"


def steps_label(sel: pd.DataFrame) -> str:
    """arm_label of runs of one method and budget ("none" for no runs)."""
    if sel.empty:
        return "none"
    return arm_label(str(sel["method"].iloc[0]), int(sel["init_steps"].max()), int(sel["budget"].iloc[0]))


def matching(t: pd.DataFrame, c: pd.DataFrame) -> str:
    """Both compute views of a comparison: main-task steps (as the paper counts) and total steps."""
    tm, cm = int(t["budget"].iloc[0]), int(c["budget"].iloc[0])
    tt, ct = tm + int(t["init_steps"].max()), cm + int(c["init_steps"].max())

    def part(name: str, a: int, b: int) -> str:
        return f"{name} {'matched' if a == b else 'not matched'} ({a} vs {b})"

    return f"{steps_label(t)} vs {steps_label(c)}: {part('main-task steps', tm, cm)}; {part('total steps', tt, ct)}"


def fails(*sides: pd.DataFrame) -> int:
    return int(sum((s["status"] != "ok").sum() for s in sides))


def pairs(treat: pd.DataFrame, ctrl: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs of both arms whose seed index both have, in seed-index order (a paired test's pairs)."""
    common = sorted(set(treat["seed_index"]) & set(ctrl["seed_index"]))
    return (treat.set_index("seed_index").loc[common].reset_index(),
            ctrl.set_index("seed_index").loc[common].reset_index())


def compare_accuracy(name: str, treat: pd.DataFrame, ctrl: pd.DataFrame, budget: str, role: str = "control",
                     metric: str = "final_acc_diff", paired: bool = False, level: float = 0.95) -> Test:
    """100 x (mean final accuracy of treat - of ctrl) with its ``level`` interval and two-sided p.

    paired: runs matched by seed index, the paired t interval of the differences (runs without a
    partner are left out); else Welch's interval of two independent samples.
    """
    if paired:
        treat, ctrl = pairs(treat, ctrl)
    t = 100 * treat["final_acc"].to_numpy(float)
    c = 100 * ctrl["final_acc"].to_numpy(float)
    diff_sd = None  # paired tests only
    if paired:
        est, low, high, df, _ = sequential.paired_interval(t, c, level)
        p = float(sps.ttest_rel(t, c).pvalue) if len(t) > 1 and np.ptp(t - c) > 0 else None
        diff_sd = float((t - c).std(ddof=1)) if len(t) > 1 else math.nan
    else:
        iv = stats.welch_interval(t, c, level)
        est, low, high, df, p = iv.estimate, iv.low, iv.high, iv.df, stats.welch_p(t, c)
    return Test(name, metric, role, est, (low, high), len(t) + len(c), tuple(treat["run_id"]),
                tuple(ctrl["run_id"]), budget, p, fails(treat, ctrl), "paired" if paired else "independent",
                n_treatment=len(t), n_control=len(c), treatment_mean=float(t.mean()) if len(t) else math.nan,
                control_mean=float(c.mean()) if len(c) else math.nan, df=df,
                treatment_sd=float(t.std(ddof=1)) if len(t) > 1 else math.nan,
                control_sd=float(c.std(ddof=1)) if len(c) > 1 else math.nan, difference_sd=diff_sd,
                interval=None if level == 0.95 else f"{level:.0%} interval")


# ---------------------------------------------------------------- the regime


@dataclass(frozen=True)
class Regime:
    """Where a claim was tested: how long its runs trained, whether doubling that still helps, and (for
    a claim with headroom) how far the teachers are ahead of the scratch students."""

    arch: str
    full_budget: int  # main-task steps
    batch_size: int
    train_images: int
    threshold: float  # converged when each doubling gain's interval lies within +-threshold (two_sided)
    gain: Test | None  # scratch at 2F minus scratch at F; None: not run
    fsp_gain: Test | None = None  # FSP with stage 2 at 2F minus at F (grids with [design])
    headroom: Test | None = None  # teachers minus scratch students at F, at the look the claim stopped
    headroom_threshold: float = 0.0  # the required lower end (points); 0: not checked
    teacher_images: int = 0
    two_sided: bool = False  # converged: within +-threshold (an equivalence, TOST), not only below +threshold
    headroom_gates: bool = True  # False: the headroom is reported, not required

    @property
    def epochs(self) -> float:
        """Passes over the training set of one full-budget main-task stage."""
        return self.full_budget * self.batch_size / self.train_images if self.train_images else math.nan

    def _gains(self) -> list[Test | None]:
        return [self.gain, self.fsp_gain] if self.fsp_gain is not None else [self.gain]

    @property
    def converged(self) -> bool | None:
        """True / False by the doubling tests; None when the grid has no 2x arm to check it."""
        gains = self._gains()
        if any(g is None or math.isnan(g.ci[1]) for g in gains):
            return None
        if self.two_sided:
            return all(g is not None and -self.threshold < g.ci[0] and g.ci[1] < self.threshold for g in gains)
        return all(g is not None and g.ci[1] < self.threshold for g in gains)

    @property
    def not_converged(self) -> str | None:
        """Why the regime is shown not to be converged: a doubling gain's interval wholly beyond +-threshold."""
        for label, g in ((CONTROL, self.gain), ("FSP", self.fsp_gain)):
            if g is None or math.isnan(g.ci[0]):
                continue
            if g.ci[0] > self.threshold:
                return (f"not converged: doubling {label}'s budget still gains {g.estimate:+.2f} points "
                        f"[{g.ci[0]:+.2f}, {g.ci[1]:+.2f}], more than {self.threshold:g}")
            if self.two_sided and g.ci[1] < -self.threshold:
                return (f"not converged: doubling {label}'s budget loses {-g.estimate:.2f} points "
                        f"[{g.ci[0]:+.2f}, {g.ci[1]:+.2f}], overfitting by more than {self.threshold:g}")
        return None

    @property
    def has_headroom(self) -> bool | None:
        h = self.headroom
        if not self.headroom_threshold:
            return True
        if h is None or math.isnan(h.ci[0]):
            return None
        return h.ci[0] >= self.headroom_threshold

    def describe(self) -> str:
        head = (f"{self.arch}, {self.full_budget} main-task steps of {self.batch_size} on {self.train_images:,} "
                f"training images = {self.epochs:.1f} epochs per full-budget run")
        if self.gain is None:
            return f"{head}; not checked (no scratch runs at 2x the full budget)"
        parts = [head]
        for label, g in ((CONTROL, self.gain), ("FSP (stage 2)", self.fsp_gain)):
            if g is not None:
                how = "paired" if g.seeding == "paired" else "Welch"
                level = g.interval.split()[0] if g.interval else "95%"
                parts.append(f"doubling {label}'s budget gains {g.estimate:+.2f} points, {level} {how} CI "
                             f"[{g.ci[0]:+.2f}, {g.ci[1]:+.2f}] (n={g.n_per_side})")
        state = {True: "converged", False: "not shown converged", None: "not checked"}[self.converged]
        rule = (f"each interval within +-{self.threshold:g}" if self.two_sided
                else f"each upper end below {self.threshold:g}")
        text = "; ".join(parts) + f": {state} ({rule})"
        if self.headroom_threshold and self.headroom is not None:
            h = self.headroom
            ok = {True: "headroom", False: "no headroom", None: "headroom not checked"}[self.has_headroom]
            level = h.interval.split()[0] if h.interval else "95%"
            need = (f"{ok} (lower end at least {self.headroom_threshold:g})" if self.headroom_gates
                    else "reported, not required")
            text += (f"; teachers ({self.teacher_images:,} training images) minus scratch students "
                     f"{h.estimate:+.2f} points, {level} Welch CI [{h.ci[0]:+.2f}, {h.ci[1]:+.2f}] "
                     f"(n={h.n_treatment} + {h.n_control}): {need}")
        return text


def regime(runs: pd.DataFrame, group: str, arch: str | None, full: int, threshold: float,
           paired: bool = False, n: int | None = None, fsp: bool = False, level: float = 0.95,
           two_sided: bool = False, control_group: str | None = None) -> Regime:
    """The regime of a group at its full budget: epochs per run and the gains from doubling the budget.

    paired: the 2F runs share their seeds with the F runs (a [design] grid), so the gain is the paired
    interval; ``n``: only seed indices below n (a look's); fsp: FSP's stage 2 is checked too; level and
    two_sided: the claims' equivalence check (the 90% interval within +-threshold, TOST at 0.05).
    """
    ctrl = control_group or group  # the group of the scratch students (a claim's control_group)
    one = select(runs, ctrl, CONTROL, arch, full, n)
    ref = one if not one.empty else runs[runs["group"] == group]
    batch = int(round(ref["images_seen"].max() / max(ref["total_steps"].max(), 1))) if not ref.empty else 0
    images = int(ref["train_images"].max()) if (not ref.empty and "train_images" in ref) else 0

    def gain(method: str) -> Test | None:
        g = ctrl if method == CONTROL else group
        a, b = select(runs, g, method, arch, 2 * full, n), select(runs, g, method, arch, full, n)
        if a.empty or b.empty:
            return None
        name = "doubling_gain" if method == CONTROL else f"doubling_gain_{method}"
        return compare_accuracy(name, a, b, matching(a, b), role="regime", metric="doubling_gain", paired=paired,
                                level=level)

    return Regime(str(ref["arch"].iloc[0]) if not ref.empty else (arch or ""), full, batch, images, threshold,
                  gain(CONTROL), gain(TREATMENT) if fsp else None, two_sided=two_sided)


# ---------------------------------------------------------------- JSON


def num(x: float | None) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), 6)


def test_json(t: Test) -> dict[str, Any]:
    return {"name": t.name, "metric": t.metric, "role": t.role, "estimate": num(t.estimate),
            "ci": [num(t.ci[0]), num(t.ci[1])], "n": t.n, "treatment_runs": list(t.treatment_runs),
            "control_runs": list(t.control_runs), "budget": t.budget, "p_value": num(t.p_value),
            "failures": t.failures, "seeding": t.seeding,
            "extra": {k: (num(v) if isinstance(v, float) else v) for k, v in sorted(extra_of(t).items())}}


def extra_of(t: Test) -> dict[str, Any]:
    """The fields of EXTRA that the test has (claims.json's "extra" object, before rounding)."""
    return {k: v for k in EXTRA if (v := getattr(t, k)) is not None}


def regime_json(reg: Regime | None) -> dict[str, Any] | None:
    if reg is None:
        return None
    g, f, h = reg.gain, reg.fsp_gain, reg.headroom
    out: dict[str, Any] = {
        "arch": reg.arch, "full_budget": reg.full_budget, "batch_size": reg.batch_size,
        "train_images": reg.train_images, "epochs_per_run": num(reg.epochs), "converged": reg.converged,
        "threshold": reg.threshold, "doubling_gain": num(g.estimate) if g else None,
        "doubling_gain_ci": [num(g.ci[0]), num(g.ci[1])] if g else None, "description": reg.describe()}
    if f is not None:
        out |= {"doubling_gain_fsp": num(f.estimate), "doubling_gain_fsp_ci": [num(f.ci[0]), num(f.ci[1])],
                "seeding": g.seeding if g else f.seeding}
    if reg.two_sided:
        out |= {"convergence": f"two-sided: each doubling gain's interval within +-{reg.threshold:g}"}
    if reg.headroom_threshold:
        out |= {"headroom_threshold": reg.headroom_threshold, "has_headroom": reg.has_headroom,
                "headroom_gates": reg.headroom_gates,
                "headroom": num(h.estimate) if h else None,
                "headroom_ci": [num(h.ci[0]), num(h.ci[1])] if h else None, "teacher_images": reg.teacher_images}
    return out
