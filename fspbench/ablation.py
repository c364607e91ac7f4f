"""The [ablation] table: which FSP implementation choices change final accuracy (pure: runs table in).

Every arm's FSP students are set against the reference group's FSP students (the paper's style) and
against its scratch students, at one budget, with the reference group's regime beside them.

In a grid with a [design] table the arms are seeded as they are analysed: arm and reference share seed i
(initial weights, batch order, training subset i and teacher i), and each arm is decided as a claim is
(fspbench.sequential): its repeated paired interval at one-sided alpha / (number of arms) per side (Bonferroni
over the arms), bootstrap-t calibrated where the design says so, at looks gated by the reference's regime
(scratch and FSP at 2F against F, paired 90% intervals within +-equivalence). Changes final accuracy: yes when
the interval excludes 0, no ("no effect as large as the equivalence") when it lies within +-equivalence, else
open at that look and inconclusive after the last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from fspbench import sequential
from fspbench.claims import CONTROL, TREATMENT
from fspbench.comparisons import (
    INTERVALS,
    Regime,
    Test,
    compare_accuracy,
    final_runs,
    matching,
    num,
    pairs,
    regime,
    regime_json,
    select,
    test_json,
)
from fspbench.spec import AblationSpec, DesignSpec, claim_alpha


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
    decided_at: int | None = None  # [design] grids: the look where the arm was decided (None: not decided)
    why: str = ""  # [design] grids: what decided it, or why it could not be


@dataclass(frozen=True)
class Ablation:
    reference: str
    regime: Regime
    equivalence: float
    arms: tuple[AblationArm, ...]
    reference_stage1: tuple[float, float]  # the reference's stage-1 loss at its first and last point
    seeding: str = "independent"  # paired: arms share seed index i (a paired [design] grid)
    design: dict[str, Any] | None = None  # [design] grids: the looks, the level per arm and its correction


def _stage1_scale(df: pd.DataFrame, run_ids: pd.Series) -> tuple[float, float]:
    cur = df[df["run_id"].isin(list(run_ids)) & (df["stage"] == "init")]
    if cur.empty:
        return (math.nan, math.nan)
    mean = cur.groupby("stage_step")["train_loss"].mean()
    return (float(mean.iloc[0]), float(mean.iloc[-1]))


def changes_accuracy(test: Test, equivalence: float) -> str:
    """yes if the 95% interval excludes 0, no if it lies within +-equivalence points, else inconclusive."""
    return _answer(test.ci[0], test.ci[1], equivalence)


def ablation_of(df: pd.DataFrame, spec: AblationSpec | None, paired: bool = False,
                design: DesignSpec | None = None) -> Ablation | None:
    """Each arm of the [ablation] table against the reference group's FSP students and its scratch students;
    with ``design`` (a [design] grid), each arm decided by the sequential rule (module docstring)."""
    if spec is None:
        return None
    runs = final_runs(df)
    ref, budget, eq = spec.reference, spec.budget, spec.equivalence
    ref_fsp, scratch = select(runs, ref, TREATMENT, None, budget), select(runs, ref, CONTROL, None, budget)
    if design is not None:
        reg = regime(runs, ref, None, budget, eq, paired=True, fsp=True, level=0.9, two_sided=True)
    else:
        reg = regime(runs, ref, None, budget, spec.converged_gain, paired=paired)
    seq = _sequential_design(spec, design, paired) if design is not None else None
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
        arm = AblationArm(group, vs_ref, vs_scr, changes_accuracy(vs_ref, eq), first, last,
                          int((fsp["status"] == "diverged").sum()))
        if seq is not None and design is not None:
            arm = _decide_arm(arm, runs, fsp, ref_fsp, spec, design, seq)
        arms.append(arm)
    described = None if seq is None else {
        "look_every": seq.look_every, "max_seeds": seq.max_seeds, "looks": seq.looks, "arms": len(spec.arms),
        "alpha_per_side": num(seq.alpha), "family_alpha_per_side": design.alpha if design else None,
        "correction": spec.correction,
        "calibration": sequential.CALIBRATION.describe() if _calibrated(design) else "none",
        "regime_checks": f"at every look: the reference's scratch and FSP at 2F against F, paired 90% intervals "
                         f"within +-{eq:g}"}
    return Ablation(ref, reg, eq, tuple(arms), _stage1_scale(df, ref_fsp["run_id"]),
                    "paired" if paired else "independent", described)


def _calibrated(design: DesignSpec | None) -> bool:
    return design is not None and design.calibrate == "bootstrap_t"


def _sequential_design(spec: AblationSpec, design: DesignSpec, paired: bool) -> sequential.Design:
    """One arm's design: the grid's looks, at alpha / arms per side under Bonferroni."""
    return sequential.Design(design.look_every, design.max_seeds, paired,
                             claim_alpha(design.alpha, len(spec.arms), spec.correction))


def _decide_arm(arm: AblationArm, runs: pd.DataFrame, fsp: pd.DataFrame, ref_fsp: pd.DataFrame, spec: AblationSpec,
                design: DesignSpec, seq: sequential.Design) -> AblationArm:
    """The arm minus the reference, look by look: the repeated interval at the arm's level, gated by the
    reference's regime at each look; the first look whose interval answers yes or no decides."""
    t, c = pairs(fsp, ref_fsp) if seq.paired else (fsp, ref_fsp)
    n = min(len(t), len(c), seq.max_seeds) // seq.look_every * seq.look_every
    if n < seq.look_every:
        return replace(arm, changes_accuracy="inconclusive", why=f"fewer than {seq.look_every} seeds per arm")
    t, c = t.iloc[:n], c.iloc[:n]
    tv, cv = 100 * t["final_acc"].to_numpy(float), 100 * c["final_acc"].to_numpy(float)
    gates, whys = [], []
    for j in range(1, n // seq.look_every + 1):
        reg = regime(runs, spec.reference, None, spec.budget, spec.equivalence, paired=True, n=j * seq.look_every,
                     fsp=True, level=0.9, two_sided=True)
        gates.append(bool(reg.converged))
        whys.append("" if reg.converged else (reg.not_converged or "convergence of the reference not shown"))
    looks = sequential.run_looks(tv[None, :], cv[None, :], seq, sequential.Rule("superiority", spec.equivalence),
                                 calibration=sequential.CALIBRATION if _calibrated(design) else None)
    for j in range(len(looks.n)):
        low, high = float(looks.low[0, j]), float(looks.high[0, j])
        answer = _answer(low, high, spec.equivalence) if gates[j] else "inconclusive"
        if answer != "inconclusive" or j == len(looks.n) - 1:
            test = replace(compare_accuracy(arm.vs_reference.name, t, c, matching(t, c), role="ablation",
                                            paired=seq.paired),
                           ci=(low, high), look=j + 1, critical=float(looks.critical[0, j]),
                           interval=f"repeated (group-sequential) interval, one-sided {seq.alpha:.4g} per side "
                                    f"(Bonferroni over {len(spec.arms)} arms)")
            why = whys[j] or (f"at look {j + 1} (n = {int(looks.n[j])} per arm): the repeated interval "
                              f"[{low:+.2f}, {high:+.2f}]")
            return replace(arm, vs_reference=test, changes_accuracy=answer,
                           decided_at=j + 1 if answer != "inconclusive" else None, why=why)
    return arm


def _answer(low: float, high: float, eq: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if low > 0 or high < 0:
        return "yes"
    if -eq < low and high < eq:
        return "no"
    return "inconclusive"


def ablation_json(abl: Ablation) -> dict[str, Any]:
    """ablation.json: the regime and, per arm, both comparisons, the answer and the stage-1 loss scale."""
    level = "the repeated interval" if abl.design else "the 95% interval"
    return {"reference": abl.reference, "equivalence": abl.equivalence, "regime": regime_json(abl.regime),
            "interval_method": f"{INTERVALS[abl.seeding]}, " + ("repeated, Bonferroni over the arms" if abl.design
                                                                else "95%"),
            "seeding": abl.seeding, "design": abl.design,
            "rule": f"changes final accuracy: yes if {level} of arm minus {abl.reference} excludes 0; no if "
                    f"it lies within +-{abl.equivalence:g} points; else inconclusive",
            "reference_stage1_loss": [num(abl.reference_stage1[0]), num(abl.reference_stage1[1])],
            "arms": [{"group": a.group, "changes_accuracy": a.changes_accuracy, "diverged": a.diverged,
                      **({"decided_at_look": a.decided_at, "reason": a.why} if abl.design else {}),
                      "stage1_loss": [num(a.stage1_first), num(a.stage1_last)],
                      "vs_reference": test_json(a.vs_reference), "vs_scratch": test_json(a.vs_scratch)}
                     for a in abl.arms]}
