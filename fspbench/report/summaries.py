"""Pure summaries for the report: DataFrames in, DataFrames out; no I/O, no plotting.

Accuracies here are in percent (100 x test_acc), as everywhere in the report.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from fspbench.analysis import Analysis, Test, steps_to_target

Z95 = 1.96  # normal quantile of a 95% band


def curve_band(df: pd.DataFrame, run_ids: list[str] | tuple[str, ...], label: str) -> pd.DataFrame:
    """Mean learning curve of ``run_ids`` with a 95% band (mean +- 1.96 x sem over seeds) per step.

    Returns columns label, step, seconds (mean wall_time_s at that step), mean, low, high, n, stage
    (the most common stage at that step). With one run the band collapses to the mean; the band is
    clipped to 0..100.
    """
    cols = ["label", "step", "seconds", "mean", "low", "high", "n", "stage"]
    cur = df[df["run_id"].isin(list(run_ids)) & df["test_acc"].notna()]
    if cur.empty:
        return pd.DataFrame(columns=cols)
    g = cur.assign(acc=100 * cur["test_acc"]).groupby("step", sort=True)
    out = pd.DataFrame({
        "step": g.size().index.to_numpy(),
        "seconds": g["wall_time_s"].mean().to_numpy(),
        "mean": g["acc"].mean().to_numpy(),
        "n": g["acc"].count().to_numpy(),
        "stage": g["stage"].agg(lambda s: s.mode().iloc[0]).to_numpy(),
    })
    sem = g["acc"].sem(ddof=1).fillna(0.0).to_numpy()
    out["low"] = (out["mean"] - Z95 * sem).clip(lower=0.0)  # an accuracy band stays within 0..100
    out["high"] = (out["mean"] + Z95 * sem).clip(upper=100.0)
    out.insert(0, "label", label)
    return out[cols].reset_index(drop=True)


def init_end(df: pd.DataFrame, run_ids: list[str] | tuple[str, ...], init_steps: int) -> tuple[float, float]:
    """Where stage 1 ends for these runs: (steps, mean seconds at the last stage-1 evaluation); (0, 0) if none."""
    if init_steps <= 0:
        return (0.0, 0.0)
    cur = df[df["run_id"].isin(list(run_ids)) & (df["stage"] == "init")]
    if cur.empty:
        return (float(init_steps), 0.0)
    last = cur.sort_values("step").groupby("run_id").tail(1)
    return (float(init_steps), float(last["wall_time_s"].mean()))


def bootstrap_mean_ci(values: np.ndarray, random_state: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap CI of the mean of ``values``; NaNs with fewer than two values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return (math.nan, math.nan)
    if np.all(values == values[0]):
        return (float(values[0]), float(values[0]))
    res = stats.bootstrap((values,), np.mean, n_resamples=10_000, vectorized=True, method="percentile",
                          rng=np.random.default_rng(random_state))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def group_summary(runs: pd.DataFrame, random_state: int = 0) -> pd.DataFrame:
    """Final accuracy (percent) per role/group/method/arch/budget: n, mean, std, bootstrap CI, failures.

    ``runs`` is ``Analysis.runs`` (one row per run). Sorted by role (teachers first), group, method, budget.
    """
    rows = []
    keys = ["role", "group", "method", "arch", "task", "budget"]
    for key, sel in runs.groupby(keys, sort=True):
        acc = 100 * sel.sort_values("run_id")["final_acc"].to_numpy(float)
        low, high = bootstrap_mean_ci(acc, random_state)
        rows.append({**dict(zip(keys, key)), "n": len(acc), "mean": float(acc.mean()),
                     "std": float(acc.std(ddof=1)) if len(acc) > 1 else math.nan,
                     "ci_low": low, "ci_high": high, "failures": int((sel["status"] != "ok").sum()),
                     "init_steps": int(sel["init_steps"].max()), "run_ids": tuple(sorted(sel["run_id"]))})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_r"] = out["role"].map({"teacher": 0, "student": 1}).fillna(2)
    return out.sort_values(["_r", "group", "method", "budget"], kind="stable").drop(columns="_r").reset_index(drop=True)


def per_run_to_target(df: pd.DataFrame, run_ids: list[str] | tuple[str, ...], target: float) -> pd.DataFrame:
    """Per run: steps (all stages), main-task steps and seconds to reach ``target`` (a fraction).

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
            hit = {"step": float(last["step"]), "main_step": float(last["stage_step"] if last["stage"] == "main"
                                                                    else 0),
                   "wall_time_s": float(last["wall_time_s"])}
        rows.append({"run_id": run_id, "method": str(curve["method"].iloc[0]), "steps": hit["step"],
                     "main_steps": hit["main_step"], "seconds": hit["wall_time_s"], "reached": reached})
    return pd.DataFrame(rows, columns=["run_id", "method", "steps", "main_steps", "seconds", "reached"])


def budget_match(test: Test, runs: pd.DataFrame) -> dict[str, Any]:
    """How a test's two sides compare in compute: main-task steps and total steps (stage 1 included).

    Returns treatment/control main and total steps (the first run of each side) and a label such as
    "main-task steps matched (40 vs 40); total steps not matched (80 vs 40)".
    """
    def steps(ids: tuple[str, ...]) -> tuple[int, int]:
        sel = runs[runs["run_id"].isin(ids)]
        if sel.empty:
            return (0, 0)
        main = int(sel["budget"].iloc[0])
        return main, main + int(sel["init_steps"].max())

    tm, tt = steps(test.treatment_runs)
    cm, ct = steps(test.control_runs)

    def part(name: str, a: int, b: int) -> str:
        return f"{name} {'matched' if a == b else 'not matched'} ({a} vs {b})"

    label = f"{part('main-task steps', tm, cm)}; {part('total steps', tt, ct)}"
    return {"treatment_main_steps": tm, "control_main_steps": cm, "treatment_total_steps": tt,
            "control_total_steps": ct, "label": label}


def compared_runs(analysis: Analysis) -> dict[str, dict[str, tuple[str, ...]]]:
    """Per claim that ran: the run ids of each compared side, keyed by a readable label.

    The labels name method and main-task budget (e.g. "fsp 40+40 steps", "scratch 120 steps").
    """
    runs = analysis.runs.set_index("run_id")
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for claim in analysis.claims:
        sides: dict[str, tuple[str, ...]] = {}
        for t in claim.tests:
            if t.metric != "final_acc_diff":
                continue
            for ids in (t.treatment_runs, t.control_runs):
                if ids:
                    sides.setdefault(side_label(runs.loc[list(ids)]), ids)
        if sides:
            out[claim.key] = sides
    return out


def side_label(sel: pd.DataFrame) -> str:
    """"fsp 40+40 steps" for a set of runs of one method and budget (stage-1 steps first)."""
    method = str(sel["method"].iloc[0])
    init, main = int(sel["init_steps"].max()), int(sel["budget"].iloc[0])
    return f"{method} {init}+{main} steps" if init else f"{method} {main} steps"
