"""Per-claim statistics and verdicts: pure functions, a runs table in, dataclasses out.

Input: runs.parquet (one row per evaluation point), which carries the grid's labels: ``group``
(student group or teacher id), ``budget`` (main-task steps), ``init_steps`` (stage 1),
``train_images`` and ``curve_acc`` (accuracy on the curve points' fixed test images). Nothing
here reads files, plots, or draws random numbers.

Final accuracy of a run = test_acc at its last evaluation (the full test set). A diverged or
failed run keeps its last accuracy, or 0 when it never reached an evaluation: it is counted in
n as a failure, never dropped. Accuracy differences are in percentage points.

Every interval is Welch's t interval at 95% (fspbench.stats: it holds its coverage at five seeds
per arm; a percentile bootstrap does not). The rules (docs/METHOD.md states them in full):

- The regime of a claim: scratch at 2x the full budget minus scratch at the full budget, in the
  claim's group. Converged when the upper end of its interval is below ``converged_gain`` (1.0
  point). A claim outside a converged regime, or whose regime was never checked, is inconclusive.
- better_accuracy, cross_task_transfer: FSP (stage 2 at the full budget) minus scratch (full
  budget); supported if the interval lies above 0, contradicted if below, else inconclusive.
  Beside it: scratch with FSP's stage-1 steps added (total steps matched), KD and FitNet at the
  same main budget, each teacher's students alone, and the budget sweep.
- fast_optimization: FSP with stage 2 at the short budget (a third of the full one) against
  scratch at the full budget, non-inferiority: supported if the interval's low end is above
  -margin (the one-sided Welch test at 0.025), contradicted if its high end is below -margin.
  Beside it: the verdict at margins 0.25 / 0.5 / 1.0, FSP against scratch at the short budget,
  and steps (all, and main-task only) and seconds to a target accuracy, FSP with stage 2 at the
  full budget against scratch at the full budget, as ratios of geometric means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
import pandas as pd

from fspbench import stats
from fspbench.spec import AblationSpec, ClaimSpec

REPORT_MARGINS = (0.25, 0.5, 1.0)  # non-inferiority margins the report shows beside the declared one
RULES = {
    "fast_optimization": "in a converged regime: supported if the 95% Welch interval of FSP (short stage-2 budget) "
                         "minus scratch (full budget) lies above -margin (one-sided Welch test at 0.025); "
                         "contradicted if it lies below -margin; else inconclusive",
    "better_accuracy": "in a converged regime: supported if the 95% Welch interval of FSP minus scratch (both at the "
                       "full main-task budget) lies above 0; contradicted if below 0; else inconclusive",
    "cross_task_transfer": "in a converged regime: supported if the 95% Welch interval of FSP minus scratch (both at "
                           "the full main-task budget) lies above 0; contradicted if below 0; else inconclusive",
}


@dataclass(frozen=True)
class Test:
    """One comparison, recomputable from runs.parquet through its run ids and columns."""

    name: str
    metric: str  # final_acc_diff | doubling_gain (points) | *_to_target_ratio (FSP / scratch)
    role: str  # decides | regime | control | sweep | teacher | to_target | ablation
    estimate: float
    ci: tuple[float, float]
    n: int  # runs in the test, failures included
    treatment_runs: tuple[str, ...]
    control_runs: tuple[str, ...]
    budget: str  # how the two sides' compute is matched, in words
    p_value: float | None = None  # Welch's t-test, two-sided (non-inferiority: one-sided at the margin)
    failures: int = 0  # diverged or failed runs among both sides
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Regime:
    """Where a claim was tested: how long its runs trained and whether doubling that still helps."""

    arch: str
    full_budget: int  # main-task steps
    batch_size: int
    train_images: int
    threshold: float  # converged when the doubling gain's upper end is below this (points)
    gain: Test | None  # scratch at 2x minus scratch at 1x the full budget; None: not run

    @property
    def epochs(self) -> float:
        """Passes over the training set of one full-budget main-task stage."""
        return self.full_budget * self.batch_size / self.train_images if self.train_images else math.nan

    @property
    def converged(self) -> bool | None:
        """True / False by the doubling test; None when the grid has no 2x control to check it."""
        if self.gain is None or math.isnan(self.gain.ci[1]):
            return None
        return self.gain.ci[1] < self.threshold

    def describe(self) -> str:
        head = (f"{self.arch}, {self.full_budget} main-task steps of {self.batch_size} on {self.train_images:,} "
                f"training images = {self.epochs:.1f} epochs per full-budget run")
        if self.gain is None:
            return f"{head}; not checked (no scratch runs at 2x the full budget)"
        g = self.gain
        state = {True: "converged", False: "not converged", None: "not checked"}[self.converged]
        return (f"{head}; doubling scratch's budget gains {g.estimate:+.2f} points, 95% CI [{g.ci[0]:+.2f}, "
                f"{g.ci[1]:+.2f}] (n={g.n}): {state} (threshold: upper end below {self.threshold:g})")


@dataclass(frozen=True)
class Claim:
    key: str
    verdict: str
    reason: str  # why this verdict (e.g. "not converged: ...")
    rule: str
    tests: tuple[Test, ...]
    summary: str
    regime: Regime | None = None
    test_verdict: str = ""  # what the deciding interval alone says, regime aside
    seeds_needed: int | None = None  # per arm, for the interval to clear its boundary at the observed spread
    by_margin: dict[float, str] = field(default_factory=dict)  # fast_optimization: margin -> verdict


@dataclass(frozen=True)
class Analysis:
    claims: tuple[Claim, ...]
    runs: pd.DataFrame  # one row per run: labels, final_acc, status, steps, wall time
    targets: dict[str, float]  # target accuracy (fraction, on the curve images) per claim that uses one


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
    return out.reset_index(drop=True)


def steps_to_target(curve: pd.DataFrame, target: float, column: str = "curve_acc") -> dict[str, float]:
    """First evaluation whose ``column`` is at or above ``target``, for one run's curve sorted by step.

    Returns step (all stages), main_step (stage 2 only) and wall_time_s, each NaN when never reached.
    """
    col = column if column in curve else "test_acc"
    hit = curve[curve[col] >= target]
    if hit.empty:
        return {"step": math.nan, "main_step": math.nan, "wall_time_s": math.nan}
    row = hit.iloc[0]
    main = row["stage_step"] if row["stage"] == "main" else 0
    return {"step": float(row["step"]), "main_step": float(main), "wall_time_s": float(row["wall_time_s"])}


# ---------------------------------------------------------------- tests


def _fails(*sides: pd.DataFrame) -> int:
    return int(sum((s["status"] != "ok").sum() for s in sides))


def compare_accuracy(name: str, treat: pd.DataFrame, ctrl: pd.DataFrame, budget: str, role: str = "control",
                     metric: str = "final_acc_diff") -> Test:
    """100 x (mean final accuracy of treat - of ctrl) with Welch's 95% interval and two-sided p."""
    t = 100 * treat["final_acc"].to_numpy(float)
    c = 100 * ctrl["final_acc"].to_numpy(float)
    iv = stats.welch_interval(t, c)
    sd = {"treatment_sd": float(t.std(ddof=1)) if len(t) > 1 else math.nan,
          "control_sd": float(c.std(ddof=1)) if len(c) > 1 else math.nan}
    return Test(name, metric, role, iv.estimate, (iv.low, iv.high), len(t) + len(c), tuple(sorted(treat["run_id"])),
                tuple(sorted(ctrl["run_id"])), budget, stats.welch_p(t, c), _fails(treat, ctrl),
                {"treatment_mean": float(t.mean()) if len(t) else math.nan,
                 "control_mean": float(c.mean()) if len(c) else math.nan, "df": iv.df,
                 "n_treatment": len(t), "n_control": len(c), **sd})


def _select(runs: pd.DataFrame, group: str, method: str, arch: str | None, budget: int) -> pd.DataFrame:
    sel = runs[(runs["role"] == "student") & (runs["group"] == group) & (runs["method"] == method)
               & (runs["budget"] == budget)]
    if arch:
        sel = sel[sel["arch"] == arch]
    return sel.sort_values("run_id")


def arm_label(method: str, init: int, main: int, unit: str = " steps") -> str:
    """"fsp 200+600 steps" (stage 1 + main task) or "scratch 600 steps": the one way arms are named."""
    return f"{method} {init}+{main}{unit}" if init else f"{method} {main}{unit}"


def steps_label(sel: pd.DataFrame) -> str:
    """arm_label of runs of one method and budget ("none" for no runs)."""
    if sel.empty:
        return "none"
    return arm_label(str(sel["method"].iloc[0]), int(sel["init_steps"].max()), int(sel["budget"].iloc[0]))


def _matching(t: pd.DataFrame, c: pd.DataFrame) -> str:
    """Both compute views of a comparison: main-task steps (as the paper counts) and total steps."""
    tm, cm = int(t["budget"].iloc[0]), int(c["budget"].iloc[0])
    tt, ct = tm + int(t["init_steps"].max()), cm + int(c["init_steps"].max())

    def part(name: str, a: int, b: int) -> str:
        return f"{name} {'matched' if a == b else 'not matched'} ({a} vs {b})"

    return f"{steps_label(t)} vs {steps_label(c)}: {part('main-task steps', tm, cm)}; {part('total steps', tt, ct)}"


def regime(runs: pd.DataFrame, group: str, arch: str | None, full: int, threshold: float) -> Regime:
    """The regime of a group at its full budget: epochs per run and the gain from doubling scratch's budget."""
    one = _select(runs, group, "scratch", arch, full)
    two = _select(runs, group, "scratch", arch, 2 * full)
    ref = one if not one.empty else runs[runs["group"] == group]
    batch = int(round(ref["images_seen"].max() / max(ref["total_steps"].max(), 1))) if not ref.empty else 0
    images = int(ref["train_images"].max()) if (not ref.empty and "train_images" in ref) else 0
    gain = None
    if not one.empty and not two.empty:
        gain = compare_accuracy("doubling_gain", two, one, _matching(two, one), role="regime", metric="doubling_gain")
    return Regime(str(ref["arch"].iloc[0]) if not ref.empty else (arch or ""), full, batch, images, threshold, gain)


def _power(test: Test, boundary: float) -> int | None:
    """Seeds per arm that would make the interval clear ``boundary`` at the observed spread."""
    return stats.seeds_needed(test.extra.get("treatment_sd", math.nan), test.extra.get("control_sd", math.nan),
                              abs(test.estimate - boundary))


def _decide(main: Test, boundary: float, reg: Regime) -> tuple[str, str, str, int | None]:
    """(verdict, reason, the interval's own verdict, seeds needed): the regime first, then the interval."""
    iv = stats.Interval(main.estimate, main.ci[0], main.ci[1], main.extra.get("df", math.nan), math.nan)
    by_test = stats.verdict(iv, boundary)
    need = _power(main, boundary) if by_test == "inconclusive" else None
    if reg.converged is None:
        return "inconclusive", "regime not checked: the grid has no scratch runs at 2x the full budget", by_test, need
    if not reg.converged:
        g = reg.gain
        assert g is not None
        return ("inconclusive", f"not converged: doubling scratch's budget still gains {g.estimate:+.2f} points "
                f"[{g.ci[0]:+.2f}, {g.ci[1]:+.2f}], upper end not below {reg.threshold:g}", by_test, need)
    where = {"supported": "lies above", "contradicted": "lies below"}.get(by_test, "contains")
    return by_test, f"converged regime; the 95% interval {where} {boundary + 0.0:g}", by_test, need


def _not_run(key: str, why: str) -> Claim:
    return Claim(key, "not_run", why, RULES[key], (), why)


def _sweep(runs: pd.DataFrame, group: str, arch: str | None, full: int, include_full: bool = False) -> list[Test]:
    """FSP minus scratch at every matched main-task budget up to the full one that the group trains both at."""
    student = runs[(runs["group"] == group) & (runs["role"] == "student")]
    budgets = sorted(set(student.loc[student["method"] == "fsp", "budget"])
                     & set(student.loc[student["method"] == "scratch", "budget"]))
    out = []
    for b in budgets:
        if b > full or (b == full and not include_full):
            continue
        fsp, scr = _select(runs, group, "fsp", arch, b), _select(runs, group, "scratch", arch, b)
        t = compare_accuracy(f"sweep_{b}", fsp, scr, _matching(fsp, scr), role="sweep")
        out.append(replace(t, extra={**t.extra, "fraction_of_full": b / full}))
    return out


def _per_teacher(runs: pd.DataFrame, fsp: pd.DataFrame, scratch: pd.DataFrame) -> list[Test]:
    """Each teacher's FSP students against all scratch students: the spread between teachers."""
    teachers = runs.set_index("run_id")
    out = []
    for k, tid in enumerate(sorted(str(t) for t in fsp["teacher_run_id"].unique())):
        sel = fsp[fsp["teacher_run_id"] == tid]
        t = compare_accuracy(f"fsp_teacher{k + 1}_vs_scratch", sel, scratch, _matching(sel, scratch), role="teacher")
        t_acc = 100 * float(cast(float, teachers.at[tid, "final_acc"])) if tid in teachers.index else math.nan
        out.append(replace(t, extra={**t.extra, "teacher_run_id": tid, "teacher_acc": t_acc}))
    return out


def _accuracy_claim(key: str, runs: pd.DataFrame, cfg: ClaimSpec | None) -> Claim:
    if cfg is None:
        return _not_run(key, "the benchmark declares no comparison for this claim")
    group, arch, full = cfg.group, cfg.arch, cfg.budget
    fsp, scratch = _select(runs, group, "fsp", arch, full), _select(runs, group, "scratch", arch, full)
    if fsp.empty or scratch.empty:
        return _not_run(key, f"group {group}: no fsp or no scratch runs at {full} steps in the results")
    main = compare_accuracy("fsp_vs_scratch", fsp, scratch, _matching(fsp, scratch), role="decides")
    reg = regime(runs, group, arch, full, cfg.converged_gain)
    tests = [main] + ([reg.gain] if reg.gain else [])
    init = int(fsp["init_steps"].max())
    matched = _select(runs, group, "scratch", arch, full + init)
    if init and not matched.empty:
        tests.append(compare_accuracy("fsp_vs_scratch_total_steps", fsp, matched, _matching(fsp, matched)))
    for other in ("kd", "fitnet"):
        sel = _select(runs, group, other, arch, full)
        if not sel.empty:
            tests.append(compare_accuracy(f"fsp_vs_{other}", fsp, sel, _matching(fsp, sel)))
    tests += _per_teacher(runs, fsp, scratch) + _sweep(runs, group, arch, full)
    verdict, reason, by_test, need = _decide(main, 0.0, reg)
    summary = (f"{steps_label(fsp)}: {main.extra['treatment_mean']:.2f}% vs {steps_label(scratch)}: "
               f"{main.extra['control_mean']:.2f}%: {main.estimate:+.2f} points, 95% CI [{main.ci[0]:+.2f}, "
               f"{main.ci[1]:+.2f}], n={main.n}")
    return Claim(key, verdict, reason, RULES[key], tuple(tests), summary, reg, by_test, need)


def _to_target_tests(df: pd.DataFrame, fsp: pd.DataFrame, scratch: pd.DataFrame, target: float,
                     label: str) -> list[Test]:
    """Steps and seconds to ``target`` (curve_acc), FSP / scratch as ratios of geometric means."""
    curves = {rid: c.sort_values("step") for rid, c in df[df["run_id"].isin([*fsp["run_id"], *scratch["run_id"]])]
              .groupby("run_id")}
    hits = {rid: steps_to_target(c, target) for rid, c in curves.items()}
    out = []
    for metric, col, what in (
        ("main_steps_to_target_ratio", "main_step", "main-task steps only (as the paper counts)"),
        ("steps_to_target_ratio", "step", "all steps, stage 1 included"),
        ("time_to_target_ratio", "wall_time_s", "training seconds, teacher forward passes included"),
    ):
        t = np.array([hits.get(r, {}).get(col, math.nan) for r in fsp["run_id"]], dtype=float)
        c = np.array([hits.get(r, {}).get(col, math.nan) for r in scratch["run_id"]], dtype=float)
        iv = stats.log_ratio_interval(t, c)  # NaN when a run never reached the target (censored)
        out.append(Test(f"to_target_{col}", metric, "to_target", iv.estimate, (iv.low, iv.high), len(t) + len(c),
                        tuple(sorted(fsp["run_id"])), tuple(sorted(scratch["run_id"])),
                        f"{what}; {label}", None, _fails(fsp, scratch),
                        {"target_acc": target, "treatment_reached": int((~np.isnan(t)).sum()),
                         "control_reached": int((~np.isnan(c)).sum()),
                         "treatment_mean": float(np.nanmean(t)) if (~np.isnan(t)).any() else math.nan,
                         "control_mean": float(np.nanmean(c)) if (~np.isnan(c)).any() else math.nan}))
    return out


def _fast_claim(df: pd.DataFrame, runs: pd.DataFrame, cfg: ClaimSpec | None) -> tuple[Claim, float | None]:
    key = "fast_optimization"
    if cfg is None or cfg.short_budget is None:
        return _not_run(key, "the benchmark declares no comparison for this claim"), None
    group, arch = cfg.group, cfg.arch
    short, full = cfg.short_budget, cfg.budget
    margin, target_frac = cfg.margin, cfg.target
    fsp = _select(runs, group, "fsp", arch, short)
    scratch_full = _select(runs, group, "scratch", arch, full)
    if fsp.empty or scratch_full.empty:
        return _not_run(key, f"group {group}: no fsp at {short} or no scratch at {full} steps"), None
    main = compare_accuracy("fsp_short_vs_scratch_full", fsp, scratch_full, _matching(fsp, scratch_full),
                            role="decides")
    t_vals, c_vals = 100 * fsp["final_acc"].to_numpy(float), 100 * scratch_full["final_acc"].to_numpy(float)
    main = replace(main, p_value=stats.welch_p(t_vals, c_vals, null=-margin, alternative="greater"),
                   extra={**main.extra, "margin": margin, "p_value_kind": "one-sided Welch, H0: difference <= -margin"})
    reg = regime(runs, group, arch, full, cfg.converged_gain)
    tests = [main] + ([reg.gain] if reg.gain else [])
    scratch_short = _select(runs, group, "scratch", arch, short)
    if not scratch_short.empty:
        tests.append(compare_accuracy("fsp_short_vs_scratch_short", fsp, scratch_short, _matching(fsp, scratch_short)))
    # steps-to-target needs FSP curves that run as long as scratch's: FSP with stage 2 at the full budget
    fsp_full = _select(runs, group, "fsp", arch, full)
    runner = fsp_full if not fsp_full.empty else fsp
    target = target_frac * float(scratch_full["final_curve_acc" if "final_curve_acc" in scratch_full
                                              else "final_acc"].mean())
    tests += _to_target_tests(df, runner, scratch_full, target,
                              f"{steps_label(runner)} vs {steps_label(scratch_full)}; target {100 * target:.2f}% = "
                              f"{target_frac:g} x scratch's full-budget mean on the curve's test images")
    tests += _per_teacher(runs, fsp, scratch_full) + _sweep(runs, group, arch, full, include_full=True)
    verdict, reason, by_test, need = _decide(main, -margin, reg)
    iv = stats.Interval(main.estimate, main.ci[0], main.ci[1], math.nan, math.nan)
    by_margin = {m: stats.verdict(iv, -m) for m in sorted({*REPORT_MARGINS, margin})}
    summary = (f"{steps_label(fsp)}: {main.extra['treatment_mean']:.2f}% vs {steps_label(scratch_full)}: "
               f"{main.extra['control_mean']:.2f}%: {main.estimate:+.2f} points, "
               f"95% CI [{main.ci[0]:+.2f}, {main.ci[1]:+.2f}], margin -{margin:g}, n={main.n}")
    return Claim(key, verdict, reason, RULES[key], tuple(tests), summary, reg, by_test, need, by_margin), target


def analyze(df: pd.DataFrame, claims: Mapping[str, ClaimSpec]) -> Analysis:
    """All three claims from a labelled runs table and the benchmark's claim tables."""
    runs = final_runs(df)
    fast, target = _fast_claim(df, runs, claims.get("fast_optimization"))
    out = (
        fast,
        _accuracy_claim("better_accuracy", runs, claims.get("better_accuracy")),
        _accuracy_claim("cross_task_transfer", runs, claims.get("cross_task_transfer")),
    )
    return Analysis(out, runs, {"fast_optimization": target} if target is not None else {})


# ---------------------------------------------------------------- the ablation of FSP choices


@dataclass(frozen=True)
class AblationArm:
    """One changed FSP choice: its students against the reference style's and against scratch."""

    group: str
    vs_reference: Test
    vs_scratch: Test
    changes_accuracy: str  # yes (the interval excludes 0) | no (it lies within +-equivalence) | inconclusive
    stage1_first: float  # mean stage-1 loss at the first evaluation point
    stage1_last: float  # ... and at the last
    diverged: int


@dataclass(frozen=True)
class Ablation:
    reference: str
    regime: Regime
    equivalence: float
    arms: tuple[AblationArm, ...]
    reference_stage1: tuple[float, float]  # the reference's stage-1 loss at its first and last point


def _stage1_scale(df: pd.DataFrame, run_ids: pd.Series) -> tuple[float, float]:
    cur = df[df["run_id"].isin(list(run_ids)) & (df["stage"] == "init")]
    if cur.empty:
        return (math.nan, math.nan)
    mean = cur.groupby("stage_step")["train_loss"].mean()
    return (float(mean.iloc[0]), float(mean.iloc[-1]))


def changes_accuracy(test: Test, equivalence: float) -> str:
    """yes if the 95% interval excludes 0, no if it lies within +-equivalence points, else inconclusive."""
    low, high = test.ci
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if low > 0 or high < 0:
        return "yes"
    if -equivalence < low and high < equivalence:
        return "no"
    return "inconclusive"


def ablation(df: pd.DataFrame, spec: AblationSpec | None) -> Ablation | None:
    """Each arm of the [ablation] table against the reference group's FSP students and its scratch students."""
    if spec is None:
        return None
    runs = final_runs(df)
    ref, budget, eq = spec.reference, spec.budget, spec.equivalence
    ref_fsp, scratch = _select(runs, ref, "fsp", None, budget), _select(runs, ref, "scratch", None, budget)
    reg = regime(runs, ref, None, budget, spec.converged_gain)
    arms = []
    for group in spec.arms:
        fsp = _select(runs, group, "fsp", None, budget)
        if fsp.empty or ref_fsp.empty or scratch.empty:
            continue
        vs_ref = compare_accuracy(f"{group}_vs_{ref}", fsp, ref_fsp, _matching(fsp, ref_fsp), role="ablation")
        vs_scr = compare_accuracy(f"{group}_vs_scratch", fsp, scratch, _matching(fsp, scratch), role="ablation")
        first, last = _stage1_scale(df, fsp["run_id"])
        arms.append(AblationArm(group, vs_ref, vs_scr, changes_accuracy(vs_ref, eq), first, last,
                                int((fsp["status"] == "diverged").sum())))
    return Ablation(ref, reg, eq, tuple(arms), _stage1_scale(df, ref_fsp["run_id"]))


def ablation_json(abl: Ablation) -> dict[str, Any]:
    """ablation.json: the regime and, per arm, both comparisons, the answer and the stage-1 loss scale."""
    return {"reference": abl.reference, "equivalence": abl.equivalence, "regime": regime_json(abl.regime),
            "interval_method": f"{stats.METHOD}, 95%",
            "rule": f"changes final accuracy: yes if the 95% interval of arm minus {abl.reference} excludes 0; no if "
                    f"it lies within +-{abl.equivalence:g} points; else inconclusive",
            "reference_stage1_loss": [_num(abl.reference_stage1[0]), _num(abl.reference_stage1[1])],
            "arms": [{"group": a.group, "changes_accuracy": a.changes_accuracy, "diverged": a.diverged,
                      "stage1_loss": [_num(a.stage1_first), _num(a.stage1_last)],
                      "vs_reference": _test_json(a.vs_reference), "vs_scratch": _test_json(a.vs_scratch)}
                     for a in abl.arms]}


def label_runs(df: pd.DataFrame, labels: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Add the grid's labels (group, budget, init_steps, precision) to a runs table that lacks them."""
    out = df.copy()
    for col, default in (("group", ""), ("budget", 0), ("init_steps", 0), ("precision", "fp32")):
        if col not in out:
            out[col] = out["run_id"].map({k: v[col] for k, v in labels.items()}).fillna(default)
    for col in ("budget", "init_steps"):
        out[col] = out[col].astype("int64")
    if "train_images" not in out:
        out["train_images"] = 0
    if "curve_acc" not in out:
        out["curve_acc"] = out["test_acc"]
    return out


# ---------------------------------------------------------------- claims.json


def _num(x: float | None) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), 6)


def _test_json(t: Test) -> dict[str, Any]:
    return {"name": t.name, "metric": t.metric, "role": t.role, "estimate": _num(t.estimate),
            "ci": [_num(t.ci[0]), _num(t.ci[1])], "n": t.n, "treatment_runs": list(t.treatment_runs),
            "control_runs": list(t.control_runs), "budget": t.budget, "p_value": _num(t.p_value),
            "failures": t.failures,
            "extra": {k: (_num(v) if isinstance(v, float) else v) for k, v in sorted(t.extra.items())}}


def regime_json(reg: Regime | None) -> dict[str, Any] | None:
    if reg is None:
        return None
    g = reg.gain
    return {"arch": reg.arch, "full_budget": reg.full_budget, "batch_size": reg.batch_size,
            "train_images": reg.train_images, "epochs_per_run": _num(reg.epochs), "converged": reg.converged,
            "threshold": reg.threshold, "doubling_gain": _num(g.estimate) if g else None,
            "doubling_gain_ci": [_num(g.ci[0]), _num(g.ci[1])] if g else None, "description": reg.describe()}


def claims_json(analysis: Analysis) -> dict[str, Any]:
    """claims.json: verdict, reason, regime and tests per claim; floats rounded to 6 decimals (byte-stable)."""
    out: dict[str, Any] = {}
    for c in analysis.claims:
        out[c.key] = {
            "verdict": c.verdict, "reason": c.reason, "rule": c.rule, "summary": c.summary,
            "interval_method": f"{stats.METHOD}, 95%", "regime": regime_json(c.regime),
            "test_verdict": c.test_verdict or None, "seeds_needed_per_arm": c.seeds_needed,
            "verdict_by_margin": {f"{m:g}": v for m, v in c.by_margin.items()} or None,
            "tests": [_test_json(t) for t in c.tests],
        }
    return out
