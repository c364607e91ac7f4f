"""Claim 1, fast optimization, as the paper's Table 1 runs it: teacher and student of one network; FSP with
stage 2 at a third of the full budget F (``short_budget``) against scratch at F, non-inferior within
``margin`` points. Beside it: both at the short budget, and the steps and seconds each arm takes to a target
accuracy (``target`` x scratch's full-budget mean, interpolated linearly between curve points)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, cast

from fspbench.claims import CONTROL, TREATMENT, AddTest, ClaimKind, claim_budget, register
from fspbench.errors import BadKey

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from fspbench.comparisons import Test
    from fspbench.spec import ClaimSpec, DesignSpec
    from fspbench.survival import TimeToTarget


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@register
class FastOptimization(ClaimKind):
    key = "fast_optimization"
    title = "Claim 1: fast optimization"
    order = 1
    rule = "noninferiority"
    what = "FSP with stage 2 at a third of the full budget minus scratch at the full budget"
    decides = f"{TREATMENT}_short_vs_{CONTROL}_full"
    keys = ("short_budget", "full_budget", "margin", "target")
    sweep_at_full = True
    published = (
        ("paper (verified)", "CIFAR-10, ResNet-26: FSP student 21k+21k vs the teacher trained 64k",
         "64k iterations of batch 128 (~164 epochs)", 92.14 - 91.75),
    )

    def defaults(self, design: DesignSpec) -> dict[str, Any]:
        from fspbench.spec import ClaimSpec

        d = ClaimSpec("", "", "", 0)
        return {**super().defaults(design), "margin": d.margin, "target": d.target}

    def check(self, key: str, c: dict[str, Any], group: Any, teacher: dict[str, Any] | None,
              students: dict[str, Any]) -> None:
        from fspbench.config import RunConfig

        claim_budget(c, key, "short_budget", group, (TREATMENT,))
        claim_budget(c, key, "full_budget", group, (CONTROL, TREATMENT))
        if c["short_budget"] >= c["full_budget"]:
            raise BadKey(f"{key}.short_budget", f"expected less than full_budget ({c['full_budget']}), got "
                                                     f"{c['short_budget']}")
        if not _number(c["margin"]) or c["margin"] <= 0:
            raise BadKey(f"{key}.margin", f"expected accuracy points > 0, got {c['margin']!r}")
        if not _number(c["target"]) or not 0 < c["target"] <= 1:
            raise BadKey(f"{key}.target", f"expected a fraction in (0, 1] of the scratch full-budget mean "
                                               f"accuracy, got {c['target']!r}")
        t_arch = teacher.get("arch", RunConfig.arch) if teacher is not None else None
        if t_arch != c["arch"]:
            raise BadKey(f"{key}.group", f"the paper's fast optimization (its Table 1) distils a teacher of the "
                              f"student's own network; group {group.name}'s teacher {group.teacher or '(none)'} is "
                              f"{t_arch}, the claim's arch {c['arch']}")
        c["budget"] = c.pop("full_budget")

    def deciding_arms(self, spec: ClaimSpec) -> tuple[tuple[str, int], tuple[str, int]]:
        return (TREATMENT, cast(int, spec.short_budget)), (CONTROL, spec.budget)

    def to_dict(self, spec: ClaimSpec) -> dict[str, Any]:
        d = asdict(spec)
        for k in ("key", "headroom", "family", "correction", "calibrate", "headroom_gates"):
            d.pop(k)
        if not d["control_group"]:
            d.pop("control_group")
        d["full_budget"] = d.pop("budget")
        return d

    def descriptive(self, add: AddTest, df: pd.DataFrame, runs: pd.DataFrame, spec: ClaimSpec,
                    select: Callable[..., pd.DataFrame]) -> tuple[list[Test], float | None]:
        from fspbench.comparisons import steps_label

        g, a, f, k = spec.group, spec.arch, spec.budget, spec.look_every
        short = cast(int, spec.short_budget)
        add(f"{TREATMENT}_short_vs_{CONTROL}_short", select(runs, g, TREATMENT, a, short, k),
            select(runs, g, CONTROL, a, short, k))
        fsp_f, scratch_f = select(runs, g, TREATMENT, a, f, k), select(runs, g, CONTROL, a, f, k)
        if fsp_f.empty or scratch_f.empty:
            return [], None
        col = "final_curve_acc" if "final_curve_acc" in scratch_f else "final_acc"
        target = spec.target * float(scratch_f[col].mean())
        label = (f"{steps_label(fsp_f)} vs {steps_label(scratch_f)}; target {100 * target:.2f}% = {spec.target:g} x "
                 "scratch's full-budget mean on the curve's test images")
        return to_target_tests(df, fsp_f, scratch_f, target, label, paired=spec.paired), target


def to_target_tests(df: pd.DataFrame, fsp: pd.DataFrame, scratch: pd.DataFrame, target: float,
                    label: str, paired: bool = False) -> list[Test]:
    """Steps and seconds to ``target`` (curve_acc, interpolated), censoring-aware (fspbench.survival).

    A run that never reaches the target is right-censored at its budget (its last curve point's value of
    the measure), never dropped. Per measure: each arm's Kaplan-Meier median with its 95% interval, the
    log-rank p (``p_value``) and the restricted mean time to target up to the common horizon, FSP minus
    scratch, with a bootstrap interval (pairs resampled together where ``paired`` and the arms' seed
    indices match). The test's estimate and ci, the ratio of geometric means FSP / scratch with Welch's
    interval on the logarithms, only where every run reached the target (NaN otherwise).
    """
    import numpy as np

    from fspbench import stats, survival
    from fspbench.comparisons import Test, fails, steps_to_target

    ids = [*fsp["run_id"], *scratch["run_id"]]
    curves = {rid: c.sort_values("step") for rid, c in df[df["run_id"].isin(ids)].groupby("run_id")}
    hits = {rid: steps_to_target(c, target) for rid, c in curves.items()}
    budgets = {rid: _budget(c) for rid, c in curves.items()}
    paired = paired and list(fsp["seed_index"]) == list(scratch["seed_index"])
    out = []
    for metric, col, what in (
        ("main_steps_to_target_ratio", "main_step", "main-task steps only (as the paper counts)"),
        ("steps_to_target_ratio", "step", "all steps, stage 1 included"),
        ("time_to_target_ratio", "wall_time_s", "training seconds, teacher forward passes included"),
    ):
        t, c = (np.array([hits.get(r, {}).get(col, math.nan) for r in arm["run_id"]], dtype=float)
                for arm in (fsp, scratch))
        tb, cb = (np.array([budgets.get(r, {}).get(col, math.nan) for r in arm["run_id"]], dtype=float)
                  for arm in (fsp, scratch))
        iv = stats.log_ratio_interval(t, c)  # NaN unless every run reached the target
        s = survival.time_to_target(t, tb, c, cb, paired=paired)
        out.append(Test(f"to_target_{col}", metric, "to_target", iv.estimate, (iv.low, iv.high), len(t) + len(c),
                        tuple(fsp["run_id"]), tuple(scratch["run_id"]), f"{what}; {label}", s.logrank_p,
                        fails(fsp, scratch), n_treatment=len(t), n_control=len(c),
                        target_acc=target, treatment_reached=s.treatment.reached,
                        control_reached=s.control.reached,
                        treatment_mean=_all_mean(t), control_mean=_all_mean(c),
                        interpolation="linear between the curve points around the first crossing",
                        **_survival_fields(s)))
    return out


def _budget(curve: pd.DataFrame) -> dict[str, float]:
    """A run's budget in each measure: its last curve point's main-task step, step and seconds."""
    last = curve.iloc[-1]
    return {"step": float(last["step"]), "main_step": float(last["stage_step"]) if last["stage"] == "main" else 0.0,
            "wall_time_s": float(last["wall_time_s"])}


def _all_mean(x: Any) -> float:
    """The mean time to target of an arm whose every run reached it, else NaN (a mean of the reached is biased)."""
    import numpy as np

    arr = np.asarray(x, dtype=float)
    return float(arr.mean()) if len(arr) and not np.isnan(arr).any() else math.nan


def _survival_fields(s: TimeToTarget) -> dict[str, Any]:
    """The Test fields of a survival comparison (Test's km_*, rmst_* and *_censored)."""
    return {"treatment_censored": s.treatment.censored, "control_censored": s.control.censored,
            "treatment_km_median": s.treatment.median, "treatment_km_low": s.treatment.low,
            "treatment_km_high": s.treatment.high, "control_km_median": s.control.median,
            "control_km_low": s.control.low, "control_km_high": s.control.high,
            "rmst_horizon": s.horizon, "treatment_rmst": s.rmst_treatment, "control_rmst": s.rmst_control,
            "rmst_diff": s.rmst_diff, "rmst_low": s.rmst_low, "rmst_high": s.rmst_high, "rmst_interval": s.interval}
