"""The [ablation] table: which FSP implementation choices change final accuracy (pure: runs table in).

Every arm's FSP students are set against the reference group's FSP students (the paper's style) and
against its scratch students, at one budget, with the reference group's regime beside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from fspbench.claims import CONTROL, TREATMENT
from fspbench.comparisons import (
    INTERVALS,
    Regime,
    Test,
    compare_accuracy,
    final_runs,
    matching,
    num,
    regime,
    regime_json,
    select,
    test_json,
)
from fspbench.spec import AblationSpec


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
    seeding: str = "independent"  # paired: arms share seed index i (a paired [design] grid)


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


def ablation_of(df: pd.DataFrame, spec: AblationSpec | None, paired: bool = False) -> Ablation | None:
    """Each arm of the [ablation] table against the reference group's FSP students and its scratch students."""
    if spec is None:
        return None
    runs = final_runs(df)
    ref, budget, eq = spec.reference, spec.budget, spec.equivalence
    ref_fsp, scratch = select(runs, ref, TREATMENT, None, budget), select(runs, ref, CONTROL, None, budget)
    reg = regime(runs, ref, None, budget, spec.converged_gain, paired=paired)
    arms = []
    for group in spec.arms:
        fsp = select(runs, group, TREATMENT, None, budget)
        if fsp.empty or ref_fsp.empty or scratch.empty:
            continue
        vs_ref = compare_accuracy(f"{group}_vs_{ref}", fsp, ref_fsp, matching(fsp, ref_fsp), role="ablation",
                                  paired=paired)
        vs_scr = compare_accuracy(f"{group}_vs_{CONTROL}", fsp, scratch, matching(fsp, scratch), role="ablation",
                                  paired=paired)
        first, last = _stage1_scale(df, fsp["run_id"])
        arms.append(AblationArm(group, vs_ref, vs_scr, changes_accuracy(vs_ref, eq), first, last,
                                int((fsp["status"] == "diverged").sum())))
    return Ablation(ref, reg, eq, tuple(arms), _stage1_scale(df, ref_fsp["run_id"]),
                    "paired" if paired else "independent")


def ablation_json(abl: Ablation) -> dict[str, Any]:
    """ablation.json: the regime and, per arm, both comparisons, the answer and the stage-1 loss scale."""
    return {"reference": abl.reference, "equivalence": abl.equivalence, "regime": regime_json(abl.regime),
            "interval_method": f"{INTERVALS[abl.seeding]}, 95%", "seeding": abl.seeding,
            "rule": f"changes final accuracy: yes if the 95% interval of arm minus {abl.reference} excludes 0; no if "
                    f"it lies within +-{abl.equivalence:g} points; else inconclusive",
            "reference_stage1_loss": [num(abl.reference_stage1[0]), num(abl.reference_stage1[1])],
            "arms": [{"group": a.group, "changes_accuracy": a.changes_accuracy, "diverged": a.diverged,
                      "stage1_loss": [num(a.stage1_first), num(a.stage1_last)],
                      "vs_reference": test_json(a.vs_reference), "vs_scratch": test_json(a.vs_scratch)}
                     for a in abl.arms]}
