"""Pure summaries for the report: DataFrames in, DataFrames out; no I/O, no plotting.

Accuracies here are in percent (100 x accuracy), as everywhere in the report. Bands and intervals
of a mean use t quantiles (fspbench.stats), never 1.96 x sem: at five seeds the normal quantile
would make them a fifth too narrow.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fspbench import claims as kinds
from fspbench import stats
from fspbench.ablation import Ablation
from fspbench.analysis import Analysis, Claim, steps_label, steps_to_target


def band(rows: pd.DataFrame, x: str, value: str, label: str, lower: float | None = None,
         upper: float | None = None) -> pd.DataFrame:
    """Mean of ``value`` per ``x`` over runs with a 95% t band, clipped to [lower, upper] (an accuracy stays
    within 0..100, a loss above 0): columns label, x, mean, low, high, n."""
    cols = ["label", "x", "mean", "low", "high", "n"]
    cur = rows[rows[value].notna()]
    if cur.empty:
        return pd.DataFrame(columns=cols)
    g = cur.groupby(x, sort=True)[value]
    out = pd.DataFrame({"x": g.mean().index.to_numpy(dtype=float), "mean": g.mean().to_numpy(),
                        "n": g.count().to_numpy()})
    half = stats.t_halfwidth(g.std(ddof=1).to_numpy(), out["n"].to_numpy())
    out["low"], out["high"] = (out["mean"] - half).clip(lower=lower), (out["mean"] + half).clip(upper=upper)
    out.insert(0, "label", label)
    return out[cols].reset_index(drop=True)


def accuracy_bands(df: pd.DataFrame, run_ids: tuple[str, ...], label: str) -> dict[str, pd.DataFrame]:
    """Test accuracy on the curve's images (percent) against main-task steps and against seconds.

    Stage-1 points are left out of the accuracy curves (the student has no trained classifier
    yet); seconds count the whole run, stage 1 included.
    """
    cur = df[df["run_id"].isin(list(run_ids)) & (df["stage"] == "main")].copy()
    cur["acc"] = 100 * cur["curve_acc"]
    by_steps = band(cur, "stage_step", "acc", label, 0.0, 100.0)
    by_time = band(cur, "step", "acc", label, 0.0, 100.0)
    by_time["x"] = by_time["x"].map(cur.groupby("step")["wall_time_s"].mean())
    return {"steps": by_steps, "seconds": by_time}


def stage1_band(df: pd.DataFrame, run_ids: tuple[str, ...], label: str) -> pd.DataFrame:
    """Stage-1 training loss (the FSP or hint loss, mean since the previous point) against stage-1 steps."""
    cur = df[df["run_id"].isin(list(run_ids)) & (df["stage"] == "init")]
    low = float(cur["train_loss"].min()) / 10 if cur["train_loss"].notna().any() else None
    return band(cur, "stage_step", "train_loss", label, low)  # a loss band stays above 0 (log axis)


def stage1_table(df: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per two-stage arm: its stage-1 loss at the first and last point, and the change over the last third.

    A stage 1 that converges ends flat: its loss falls by little over its last third.
    """
    rows = []
    two = runs[(runs["init_steps"] > 0) & (runs["role"] == "student")]
    for (group, method, budget), sel in two.groupby(["group", "method", "budget"], sort=True):
        cur = df[df["run_id"].isin(sel["run_id"]) & (df["stage"] == "init")]
        if cur.empty:
            continue
        mean = cur.groupby("stage_step")["train_loss"].mean()
        steps = mean.index.to_numpy()
        late = mean[steps >= steps.max() * 2 / 3]
        first, last = float(mean.iloc[0]), float(mean.iloc[-1])
        rows.append({"group": group, "method": method, "main_budget": int(budget), "stage1_steps": int(steps.max()),
                     "n": sel["run_id"].nunique(), "loss_first_point": first, "loss_last_point": last,
                     "last_over_first": last / first if first else math.nan,
                     "change_over_last_third": float(late.iloc[-1] / late.iloc[0] - 1) if len(late) > 1 else math.nan,
                     "diverged": int((sel["status"] == "diverged").sum())})
    return pd.DataFrame(rows, columns=["group", "method", "main_budget", "stage1_steps", "n", "loss_first_point",
                                       "loss_last_point", "last_over_first", "change_over_last_third", "diverged"])


def group_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Final accuracy (percent) per role/group/method/arch/budget: n, mean, std, 95% t CI, failures."""
    rows = []
    keys = ["role", "group", "method", "arch", "task", "budget"]
    for key, sel in runs.groupby(keys, sort=True):
        acc = 100 * sel.sort_values("run_id")["final_acc"].to_numpy(float)
        sd = float(acc.std(ddof=1)) if len(acc) > 1 else math.nan
        half = float(stats.t_halfwidth(np.array([sd]), np.array([len(acc)]))[0]) if len(acc) > 1 else math.nan
        rows.append({**dict(zip(keys, key)), "n": len(acc), "mean": float(acc.mean()), "std": sd,
                     "ci_low": float(acc.mean()) - half, "ci_high": float(acc.mean()) + half,
                     "failures": int((sel["status"] != "ok").sum()), "init_steps": int(sel["init_steps"].max()),
                     "run_ids": tuple(sorted(sel["run_id"]))})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_r"] = out["role"].map({"teacher": 0, "student": 1}).fillna(2)
    return out.sort_values(["_r", "group", "method", "budget"], kind="stable").drop(columns="_r").reset_index(drop=True)


def per_run_to_target(df: pd.DataFrame, run_ids: tuple[str, ...], target: float) -> pd.DataFrame:
    """Per run: steps (all stages), main-task steps and seconds to reach ``target`` on the curve's images.

    A run that never reaches it gets its last evaluation's values and ``reached`` False, so a plot
    can show it as censored rather than drop it.
    """
    rows = []
    for run_id in sorted(run_ids):
        curve = df[df["run_id"] == run_id].sort_values("step")
        if curve.empty:
            continue
        hit = steps_to_target(curve, target)
        reached = not math.isnan(hit["step"])
        if not reached:
            last = curve.iloc[-1]
            hit = {"step": float(last["step"]),
                   "main_step": float(last["stage_step"] if last["stage"] == "main" else 0),
                   "wall_time_s": float(last["wall_time_s"])}
        rows.append({"run_id": run_id, "method": str(curve["method"].iloc[0]), "steps": hit["step"],
                     "main_steps": hit["main_step"], "seconds": hit["wall_time_s"], "reached": reached})
    return pd.DataFrame(rows, columns=["run_id", "method", "steps", "main_steps", "seconds", "reached"])


def compared_runs(claim: Claim, runs: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """The run ids of each side a claim's accuracy tests compare, keyed by "fsp 200+600 steps"-style labels."""
    by_id = runs.set_index("run_id")
    sides: dict[str, tuple[str, ...]] = {}
    for t in claim.tests:
        if t.metric not in ("final_acc_diff", "doubling_gain") or t.role == "sweep":
            continue
        for ids in (t.treatment_runs, t.control_runs):
            if ids:
                sides.setdefault(steps_label(by_id.loc[list(ids)].reset_index()), ids)
    return sides


def forest_rows(analysis: Analysis) -> pd.DataFrame:
    """Every accuracy test of every claim as a forest-plot row: claim, label, role, estimate, low, high.

    The deciding test's interval is the repeated one of the look where the claim stopped; every label
    says how its interval pairs the runs ("paired" or "Welch").
    """
    rows = []
    for c in analysis.claims:
        seen: set[str] = set()
        for t in c.tests:
            if t.metric not in ("final_acc_diff", "doubling_gain", "headroom"):
                continue
            label = comparison_label(t.name, t.budget) if t.metric != "headroom" else "teachers vs scratch"
            label += " (paired)" if t.seeding == "paired" else " (Welch)"
            if t.role == "decides" and c.looks:
                label += f", look {c.looks[-1].look}"
            if label in seen:  # a sweep point that is also a control: drawn once
                continue
            seen.add(label)
            rows.append({"claim": c.key, "label": label, "role": t.role,
                         "estimate": t.estimate, "low": t.ci[0], "high": t.ci[1], "n": t.n})
    return pd.DataFrame(rows, columns=["claim", "label", "role", "estimate", "low", "high", "n"])


def comparison_label(name: str, budget: str) -> str:
    """A short label for a test: its two sides as the budget text names them ("fsp 200+600 vs scratch 600")."""
    sides = budget.split(":", 1)[0]
    return sides.replace(" steps", "") if " vs " in sides else name


def sweep_rows(analysis: Analysis) -> pd.DataFrame:
    """FSP minus scratch at each matched main-task budget (fraction of the full one) per claim."""
    rows = []
    for c in analysis.claims:
        if c.regime is None:
            continue
        for t in c.tests:
            if t.role == "sweep" or (t.role == "decides" and not kinds.get(c.key).sweep_at_full):
                frac = 1.0 if t.fraction_of_full is None else t.fraction_of_full
                rows.append({"claim": c.key, "fraction": float(frac), "budget": round(frac * c.regime.full_budget),
                             "estimate": t.estimate, "low": t.ci[0], "high": t.ci[1], "n": t.n})
    return pd.DataFrame(rows, columns=["claim", "fraction", "budget", "estimate", "low", "high", "n"])


def look_rows(analysis: Analysis) -> pd.DataFrame:
    """Each claim's path across its looks: claim, look, n per arm, estimate, repeated interval, decision."""
    rows = [{"claim": c.key, "look": lk.look, "n": lk.n, "estimate": lk.estimate, "low": lk.low, "high": lk.high,
             "critical": lk.critical, "alpha_spent": lk.alpha_spent, "decision": lk.decision, "gate": lk.gate}
            for c in analysis.claims for lk in c.looks]
    return pd.DataFrame(rows, columns=["claim", "look", "n", "estimate", "low", "high", "critical", "alpha_spent",
                                       "decision", "gate"])


def gain_rows(analysis: Analysis) -> pd.DataFrame:
    """Each FSP student of a deciding test: its teacher's final accuracy and its gain over scratch (points)."""
    rows = [{"claim": c.key, "run_id": g.run_id, "teacher_run_id": g.teacher_run_id, "teacher_acc": g.teacher_acc,
             "student_acc": g.student_acc, "gain": g.gain, "against": "its paired scratch run" if c.seeding == "paired"
             else "the scratch arm's mean"} for c in analysis.claims for g in c.gains]
    return pd.DataFrame(rows, columns=["claim", "run_id", "teacher_run_id", "teacher_acc", "student_acc", "gain",
                                       "against"])


def regime_text(claim: Claim) -> str:
    return claim.regime.describe() if claim.regime is not None else "no regime: the claim did not run"


def ablation_rows(abl: Ablation) -> pd.DataFrame:
    """Forest-plot rows of an ablation: panel "ref" (arm minus the reference) and "control" (arm minus scratch)."""
    rows = [{"claim": panel, "label": a.group, "role": "decides" if panel == "ref" else "control",
             "estimate": t.estimate, "low": t.ci[0], "high": t.ci[1], "n": t.n}
            for panel in ("ref", "control") for a in abl.arms
            for t in [a.vs_reference if panel == "ref" else a.vs_scratch]]
    return pd.DataFrame(rows, columns=["claim", "label", "role", "estimate", "low", "high", "n"])
