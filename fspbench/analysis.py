"""Per-claim statistics and verdicts: pure functions, a runs table in, dataclasses out.

Input: runs.parquet (one row per evaluation point) with two labels added from the benchmark
file (``label_runs``): ``group`` (the student group or teacher id) and ``budget`` (main-task
steps). Nothing here reads files, plots or draws random numbers without an explicit seed.

Final accuracy of a run = test_acc at its last evaluation (the full test set). A diverged or
failed run keeps its last accuracy, or 0 when it never reached an evaluation: it is counted
in n as a failure, never dropped. Accuracy differences are in percentage points.

Verdicts (DESIGN.md):
- better_accuracy, cross_task_transfer: estimate = mean FSP minus mean scratch, 95% bootstrap
  CI over seeds; supported if the CI is above 0, contradicted if below, else inconclusive.
- fast_optimization: FSP with the short stage-2 budget against scratch with the full budget,
  a non-inferiority test with a margin: supported if the CI's low end is above -margin,
  contradicted if its high end is below -margin, else inconclusive. Reported beside it: FSP
  against scratch at the same short budget, and steps (with and without stage 1) and seconds
  to reach the target accuracy, as ratios FSP / scratch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

CLAIMS = ("fast_optimization", "better_accuracy", "cross_task_transfer")
VERDICTS = ("supported", "contradicted", "inconclusive", "not_run")
RULES = {
    "fast_optimization": "supported if the 95% CI of FSP (short stage-2 budget) minus scratch (full budget) "
                         "lies above -margin; contradicted if it lies below -margin; else inconclusive",
    "better_accuracy": "supported if the 95% CI of FSP minus scratch lies above 0; contradicted if below 0; "
                       "else inconclusive",
    "cross_task_transfer": "supported if the 95% CI of FSP minus scratch lies above 0; contradicted if "
                           "below 0; else inconclusive",
}


@dataclass(frozen=True)
class Test:
    """One statistical comparison, recomputable from runs.parquet via its run ids."""

    name: str
    metric: str  # final_acc_diff (points) | steps_to_target_ratio | main_steps_to_target_ratio | time_...
    estimate: float
    ci: tuple[float, float]
    n: int  # runs in the test, failures included
    treatment_runs: tuple[str, ...]
    control_runs: tuple[str, ...]
    budget: str  # how the two sides' compute is matched, in words
    p_value: float | None = None  # Welch's t-test, two-sided
    p_improvement: float | None = None  # P(treatment > control) + P(tie) / 2 = U / (n1 n2)
    failures: int = 0  # diverged or failed runs among both sides
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    key: str
    verdict: str
    rule: str
    tests: tuple[Test, ...]
    summary: str


@dataclass(frozen=True)
class Analysis:
    claims: tuple[Claim, ...]
    runs: pd.DataFrame  # one row per run: labels, final_acc, status, steps, wall time
    targets: dict[str, float]  # target accuracy (fraction) per claim that uses one


# ---------------------------------------------------------------- per-run summaries


def final_runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its labels and its last evaluation (final_acc, step, wall_time_s, status)."""
    last = df.sort_values(["run_id", "step"], kind="stable").groupby("run_id", sort=True).tail(1)
    out = last.rename(columns={"test_acc": "final_acc", "step": "total_steps"}).copy()
    out["final_acc"] = out["final_acc"].fillna(0.0)  # failed before any evaluation: a failure at 0
    if "init_steps" not in out:  # unlabelled table: read stage 1's length off the curve
        init = df[df["stage"] == "init"].groupby("run_id")["stage_step"].max()
        out["init_steps"] = out["run_id"].map(init).fillna(0).astype("int64")
    return out.reset_index(drop=True)


def steps_to_target(curve: pd.DataFrame, target: float) -> dict[str, float]:
    """First evaluation at or above ``target`` for one run's curve (rows sorted by step).

    Returns step (all stages), main_step (stage 2 only) and wall_time_s, each NaN when never reached.
    """
    hit = curve[curve["test_acc"] >= target]
    if hit.empty:
        return {"step": math.nan, "main_step": math.nan, "wall_time_s": math.nan}
    row = hit.iloc[0]
    main = row["stage_step"] if row["stage"] == "main" else 0
    return {"step": float(row["step"]), "main_step": float(main), "wall_time_s": float(row["wall_time_s"])}


# ---------------------------------------------------------------- statistics


def _mean_diff(t: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(t, axis=axis) - np.mean(c, axis=axis)


def _ratio_of_means(t: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(t, axis=axis) / np.mean(c, axis=axis)


def bootstrap_ci(t: np.ndarray, c: np.ndarray, statistic: Any, random_state: int) -> tuple[float, float]:
    """95% percentile bootstrap CI of statistic(t, c), resampling each group independently."""
    if len(t) < 2 or len(c) < 2:
        return (math.nan, math.nan)
    res = stats.bootstrap((t, c), statistic, n_resamples=10_000, vectorized=True, method="percentile",
                          rng=np.random.default_rng(random_state))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def compare_accuracy(name: str, treat: pd.DataFrame, ctrl: pd.DataFrame, budget: str,
                     random_state: int = 0) -> Test:
    """final_acc_diff: 100 x (mean final accuracy of treat - of ctrl), bootstrap CI, Welch p, P(improvement)."""
    t = 100 * treat["final_acc"].to_numpy(float)
    c = 100 * ctrl["final_acc"].to_numpy(float)
    est = float(t.mean() - c.mean()) if len(t) and len(c) else math.nan
    ci = bootstrap_ci(t, c, _mean_diff, random_state)
    p = p_imp = None
    if len(t) >= 2 and len(c) >= 2:
        p = float(stats.ttest_ind(t, c, equal_var=False).pvalue)
        p_imp = float(stats.mannwhitneyu(t, c, alternative="two-sided").statistic / (len(t) * len(c)))
    fails = int((treat["status"] != "ok").sum() + (ctrl["status"] != "ok").sum())
    return Test(name, "final_acc_diff", est, ci, len(t) + len(c), tuple(sorted(treat["run_id"])),
                tuple(sorted(ctrl["run_id"])), budget, p, p_imp, fails,
                {"treatment_mean": float(t.mean()) if len(t) else math.nan,
                 "control_mean": float(c.mean()) if len(c) else math.nan,
                 "n_treatment": len(t), "n_control": len(c)})


def verdict_above(ci: tuple[float, float], threshold: float) -> str:
    """supported if the CI lies above threshold, contradicted if below, else inconclusive."""
    low, high = ci
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if low > threshold:
        return "supported"
    if high < threshold:
        return "contradicted"
    return "inconclusive"


# ---------------------------------------------------------------- the claims


def _select(runs: pd.DataFrame, group: str, method: str, arch: str | None, budget: int) -> pd.DataFrame:
    sel = runs[(runs["role"] == "student") & (runs["group"] == group) & (runs["method"] == method)
               & (runs["budget"] == budget)]
    if arch:
        sel = sel[sel["arch"] == arch]
    return sel.sort_values("run_id")


def _steps_label(sel: pd.DataFrame) -> str:
    if sel.empty:
        return "none"
    init, main = int(sel["init_steps"].iloc[0]), int(sel["budget"].iloc[0])
    return f"{init}+{main} steps" if init else f"{main} steps"


def _not_run(key: str, why: str) -> Claim:
    return Claim(key, "not_run", RULES[key], (), why)


def _accuracy_claim(key: str, runs: pd.DataFrame, cfg: dict[str, Any] | None, random_state: int) -> Claim:
    if not cfg:
        return _not_run(key, "the benchmark declares no comparison for this claim")
    group, arch, budget = cfg["group"], cfg.get("arch"), int(cfg["budget"])
    fsp = _select(runs, group, "fsp", arch, budget)
    scratch = _select(runs, group, "scratch", arch, budget)
    if fsp.empty or scratch.empty:
        return _not_run(key, f"group {group}: no fsp or no scratch runs at {budget} steps in the results")
    main = compare_accuracy("fsp_vs_scratch", fsp, scratch,
                            f"main-task steps matched (paper): fsp {_steps_label(fsp)} vs scratch "
                            f"{_steps_label(scratch)}; fsp also spends its stage-1 steps", random_state)
    tests = [main]
    for other in ("fitnet", "kd"):
        sel = _select(runs, group, other, arch, budget)
        if not sel.empty:
            tests.append(compare_accuracy(f"fsp_vs_{other}", fsp, sel,
                                          f"main-task steps matched: fsp {_steps_label(fsp)} vs {other} "
                                          f"{_steps_label(sel)}", random_state))
    verdict = verdict_above(main.ci, 0.0)
    summary = (f"FSP {main.extra['treatment_mean']:.2f}% vs scratch {main.extra['control_mean']:.2f}%: "
               f"{main.estimate:+.2f} points, 95% CI [{main.ci[0]:+.2f}, {main.ci[1]:+.2f}], n={main.n}")
    return Claim(key, verdict, RULES[key], tuple(tests), summary)


def _ratio_test(name: str, metric: str, t_vals: np.ndarray, c_vals: np.ndarray, treat: pd.DataFrame,
                ctrl: pd.DataFrame, budget: str, random_state: int, reached: dict[str, int]) -> Test:
    # a run that never reached the target has no value (NaN): its steps are only known to exceed its
    # budget, so no honest mean exists and the ratio is left undetermined rather than guessed
    complete = len(t_vals) and len(c_vals) and not (np.isnan(t_vals).any() or np.isnan(c_vals).any())
    est = float(t_vals.mean() / c_vals.mean()) if complete else math.nan
    ci = bootstrap_ci(t_vals, c_vals, _ratio_of_means, random_state) if complete else (math.nan, math.nan)
    fails = int((treat["status"] != "ok").sum() + (ctrl["status"] != "ok").sum())
    return Test(name, metric, est, ci, len(t_vals) + len(c_vals), tuple(sorted(treat["run_id"])),
                tuple(sorted(ctrl["run_id"])), budget, None, None, fails, dict(reached))


def _to_target(df: pd.DataFrame, sel: pd.DataFrame, target: float, key: str) -> tuple[np.ndarray, int]:
    """Per-run steps or seconds to target (NaN where never reached) and how many runs reached it."""
    vals = [steps_to_target(df[df["run_id"] == run_id].sort_values("step"), target)[key] for run_id in sel["run_id"]]
    arr = np.asarray(vals, dtype=float)
    return arr, int((~np.isnan(arr)).sum())


def _fast_claim(df: pd.DataFrame, runs: pd.DataFrame, cfg: dict[str, Any] | None,
                random_state: int) -> tuple[Claim, float | None]:
    key = "fast_optimization"
    if not cfg:
        return _not_run(key, "the benchmark declares no comparison for this claim"), None
    group, arch = cfg["group"], cfg.get("arch")
    short, full = int(cfg["short_budget"]), int(cfg["full_budget"])
    margin, target_frac = float(cfg.get("margin", 0.5)), float(cfg.get("target", 0.99))
    fsp = _select(runs, group, "fsp", arch, short)
    scratch_full = _select(runs, group, "scratch", arch, full)
    scratch_short = _select(runs, group, "scratch", arch, short)
    if fsp.empty or scratch_full.empty:
        return _not_run(key, f"group {group}: no fsp at {short} or no scratch at {full} steps"), None
    a = compare_accuracy("fsp_short_vs_scratch_full", fsp, scratch_full,
                         f"main-task steps: fsp {_steps_label(fsp)} vs scratch {_steps_label(scratch_full)} "
                         f"(paper: 21k+21k vs 64k); total steps fsp {int(fsp['total_steps'].iloc[0])} vs "
                         f"{int(scratch_full['total_steps'].iloc[0])}", random_state)
    a = Test(**{**a.__dict__, "extra": {**a.extra, "margin": margin}})
    tests = [a]
    if not scratch_short.empty:
        tests.append(compare_accuracy("fsp_short_vs_scratch_short", fsp, scratch_short,
                                      f"main-task steps matched: fsp {_steps_label(fsp)} vs scratch "
                                      f"{_steps_label(scratch_short)}", random_state))
    target = target_frac * float(scratch_full["final_acc"].mean())
    for metric, col, label in (
        ("steps_to_target_ratio", "step", "all steps, stage 1 included"),
        ("main_steps_to_target_ratio", "main_step", "main-task steps only (as the paper counts)"),
        ("time_to_target_ratio", "wall_time_s", "training seconds, teacher forward passes included"),
    ):
        t_vals, t_hit = _to_target(df, fsp, target, col)
        c_vals, c_hit = _to_target(df, scratch_full, target, col)
        tests.append(_ratio_test(f"to_target_{col}", metric, t_vals, c_vals, fsp, scratch_full,
                                 f"{label}; target {100 * target:.2f}% = {target_frac:g} x scratch full-budget mean",
                                 random_state, {"target_acc": target, "treatment_reached": t_hit,
                                                "control_reached": c_hit}))
    verdict = verdict_above(a.ci, -margin)
    summary = (f"FSP after {_steps_label(fsp)} {a.extra['treatment_mean']:.2f}% vs scratch after "
               f"{_steps_label(scratch_full)} {a.extra['control_mean']:.2f}%: {a.estimate:+.2f} points, "
               f"95% CI [{a.ci[0]:+.2f}, {a.ci[1]:+.2f}], margin -{margin:g}, n={a.n}")
    return Claim(key, verdict, RULES[key], tuple(tests), summary), target


def analyze(df: pd.DataFrame, claims: dict[str, dict[str, Any]], random_state: int = 0) -> Analysis:
    """All three claims from a labelled runs table (``label_runs``) and the benchmark's claim tables."""
    runs = final_runs(df)
    fast, target = _fast_claim(df, runs, claims.get("fast_optimization"), random_state)
    out = (
        fast,
        _accuracy_claim("better_accuracy", runs, claims.get("better_accuracy"), random_state),
        _accuracy_claim("cross_task_transfer", runs, claims.get("cross_task_transfer"), random_state),
    )
    return Analysis(out, runs, {"fast_optimization": target} if target is not None else {})


def label_runs(df: pd.DataFrame, groups: dict[str, str], budgets: dict[str, int],
               init_steps: dict[str, int] | None = None) -> pd.DataFrame:
    """Add ``group``, ``budget`` (main-task steps) and ``init_steps`` (stage 1) from run id -> label maps."""
    out = df.copy()
    out["group"] = out["run_id"].map(groups).fillna("")
    out["budget"] = out["run_id"].map(budgets).fillna(0).astype("int64")
    if init_steps is not None:
        out["init_steps"] = out["run_id"].map(init_steps).fillna(0).astype("int64")
    return out


# ---------------------------------------------------------------- claims.json


def _num(x: float | None) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), 6)


def claims_json(analysis: Analysis) -> dict[str, Any]:
    """claims.json as DESIGN.md fixes it; floats rounded to 6 decimals so output is byte-stable."""
    out: dict[str, Any] = {}
    for c in analysis.claims:
        out[c.key] = {
            "verdict": c.verdict,
            "rule": c.rule,
            "summary": c.summary,
            "tests": [
                {
                    "name": t.name, "metric": t.metric, "estimate": _num(t.estimate),
                    "ci": [_num(t.ci[0]), _num(t.ci[1])], "n": t.n,
                    "treatment_runs": list(t.treatment_runs), "control_runs": list(t.control_runs),
                    "budget": t.budget, "p_value": _num(t.p_value), "p_improvement": _num(t.p_improvement),
                    "failures": t.failures,
                    "extra": {k: (_num(v) if isinstance(v, float) else v) for k, v in sorted(t.extra.items())},
                }
                for t in c.tests
            ],
        }
    return out
