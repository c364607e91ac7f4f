"""The claims decided from a runs table, look by look: pure functions, a DataFrame in, dataclasses out.

Each claim compares a treatment arm (FSP) with a control arm (scratch) of one student group and
network (spec.ClaimSpec.deciding_arms), group-sequentially (fspbench.sequential; the rules in full:
docs/METHOD.md):

- Looks after every k seeds per arm up to a maximum; at look j the first n_j = j k runs of each arm
  by seed index. The interval is Welch's (each arm its own seeds) or the paired t interval (arms
  share seed i on purpose), as the claim's seeding declares; its width is the repeated confidence
  interval's, whose coverage holds over all looks at once.
- The regime, in the grid itself: converged when doubling the full budget F gains less than the
  smallest effect of interest for scratch and for FSP (stage 2 at 2F), upper end of the paired 95%
  interval over the first look's seeds; a claim whose regime is not converged stops at the first
  look, inconclusive. A claim with a ``headroom`` also needs its teachers to lead its scratch students
  by that many points at the lower end of the look's repeated interval; a look without headroom
  decides nothing.
- The claim kind (fspbench.claims) gives the arms, the rule (superiority: supported above 0,
  contradicted below 0 or below the smallest effect of interest while holding 0; non-inferiority:
  supported above -margin, contradicted below it) and its own descriptive tests, which stand beside
  the deciding one on the first look's seeds with the budget sweep.

A diverged or failed run keeps its last accuracy, or 0 when it never reached an evaluation: it stays
in every test as a failure. Accuracy differences are in percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
import pandas as pd

from fspbench import claims as kinds
from fspbench import sequential
from fspbench.comparisons import (
    INTERVALS,
    Regime,
    Test,
    arm_label,
    compare_accuracy,
    final_runs,
    matching,
    num,
    regime,
    regime_json,
    select,
    steps_label,
    steps_to_target,
    test_json,
)
from fspbench.spec import ClaimSpec

__all__ = ["Analysis", "Claim", "Look", "Regime", "Test", "analyze", "arm_label", "claims_json", "final_runs",
           "steps_label", "steps_to_target"]

REPORT_MARGINS = (0.25, 0.5, 1.0)  # non-inferiority margins the report reads off the interval beside the declared one
POWER = 0.8  # the power at which the report gives seeds per arm


@dataclass(frozen=True)
class Look:
    """One look of a claim's sequential test (fspbench.sequential): n seeds per arm, the repeated interval."""

    look: int  # 1-based
    n: int  # seeds per arm
    estimate: float
    se: float
    df: float
    z: float  # the look's boundary on the normal scale
    critical: float  # the t critical value of the repeated interval
    low: float
    high: float
    alpha_spent: float  # error spent per side up to this look
    error_spent: float  # error spent per side at this look
    decision: str  # supported | contradicted | open
    gate: str  # why this look could not decide ("" when it could)
    treatment_runs: tuple[str, ...]
    control_runs: tuple[str, ...]


@dataclass(frozen=True)
class TeacherGain:
    """One FSP student of a deciding arm: its teacher's accuracy and its gain over scratch (points)."""

    run_id: str
    teacher_run_id: str
    teacher_acc: float
    student_acc: float
    gain: float  # paired: minus its own scratch partner; independent: minus the scratch arm's mean


@dataclass(frozen=True)
class Claim:
    key: str
    verdict: str  # supported | contradicted | inconclusive | not_run
    reason: str
    rule: str
    tests: tuple[Test, ...]  # the deciding test (at the look it stopped) first, then regime and descriptive ones
    summary: str
    regime: Regime | None = None
    seeding: str = ""  # independent | paired
    design: str = ""  # the sequential design in words
    looks: tuple[Look, ...] = ()
    stopped_at: int | None = None  # the look where it was decided or ran out (None: still open)
    max_looks: int = 0
    power_n: int | None = None  # fixed-n seeds per arm for POWER at power_effect, at the observed spread
    power_effect: float = math.nan  # the true distance to the boundary that power_n is for (points)
    by_margin: dict[float, str] = field(default_factory=dict)  # non-inferiority: margin -> reading
    gains: tuple[TeacherGain, ...] = ()
    spec: ClaimSpec | None = None

    @property
    def n_per_arm(self) -> int:
        return self.looks[-1].n if self.looks else 0

    @property
    def open(self) -> bool:
        """More seeds would be trained for it: no decision yet and looks left."""
        return self.verdict != "not_run" and self.stopped_at is None


@dataclass(frozen=True)
class Analysis:
    claims: tuple[Claim, ...]
    runs: pd.DataFrame  # one row per run: labels, final_acc, status, steps, wall time
    targets: dict[str, float]  # target accuracy (fraction, on the curve images) per claim that uses one


# ---------------------------------------------------------------- the sequential test of one claim


def _design(cfg: ClaimSpec) -> sequential.Design:
    return sequential.Design(cfg.look_every, cfg.max_seeds, cfg.paired, cfg.alpha)


def _rule(cfg: ClaimSpec) -> sequential.Rule:
    return sequential.Rule(kinds.get(cfg.key).rule, cfg.smallest_effect, cfg.margin)


def _complete(arms: list[pd.DataFrame], k: int) -> int:
    """Seeds per arm of the complete looks: the largest multiple of k such that every arm has seed indices 0..n-1."""
    n = min(len(a) for a in arms)
    for a in arms:
        idx = a["seed_index"].to_numpy()
        n = min(n, next((i for i, v in enumerate(idx) if v != i), len(idx)))
    return n // k * k


def _headroom_gate(runs: pd.DataFrame, treat: pd.DataFrame, ctrl: pd.DataFrame, cfg: ClaimSpec,
                   n: int) -> tuple[np.ndarray, list[Test]]:
    """Per look: do the teachers of the FSP arm beat the scratch arm by ``headroom`` points at the lower
    end of the look's repeated interval (Welch: teachers and students have their own seeds)?"""
    design, k = _design(cfg), cfg.look_every
    by_id = runs.set_index("run_id")
    teacher_ids = [str(t) for t in treat["teacher_run_id"].iloc[:n]]
    if any(t not in by_id.index for t in teacher_ids):
        return np.zeros(n // k, dtype=bool), []
    teachers = by_id.loc[teacher_ids].reset_index()
    t_acc, c_acc = 100 * teachers["final_acc"].to_numpy(float), 100 * ctrl["final_acc"].to_numpy(float)[:n]
    looks = sequential.run_looks(t_acc[None, :], c_acc[None, :], replace(design, paired=False),
                                 sequential.Rule("superiority"))
    tests = []
    for j in range(len(looks.n)):
        m = int(looks.n[j])
        base = compare_accuracy("headroom", teachers.iloc[:m], ctrl.iloc[:m], "teachers vs scratch students",
                                role="regime", metric="headroom")
        tests.append(replace(base, ci=(float(looks.low[0, j]), float(looks.high[0, j])),
                             critical=float(looks.critical[0, j]), look=j + 1))
    return looks.low[0] >= cfg.headroom, tests


def _looks(cfg: ClaimSpec, treat: pd.DataFrame, ctrl: pd.DataFrame, seq: sequential.Looks,
           gate_why: list[str]) -> tuple[Look, ...]:
    design = _design(cfg)
    spent = design.spent
    out = []
    for j in range(len(seq.n)):
        n = int(seq.n[j])
        out.append(Look(j + 1, n, float(seq.estimate[0, j]), float(seq.se[0, j]), float(seq.df[0, j]),
                        float(seq.z[j]), float(seq.critical[0, j]), float(seq.low[0, j]), float(seq.high[0, j]),
                        float(spent[j]), float(spent[j] - (spent[j - 1] if j else 0.0)),
                        sequential.VERDICTS[int(seq.decision[0, j])], gate_why[j],
                        tuple(treat["run_id"].iloc[:n]), tuple(ctrl["run_id"].iloc[:n])))
    return tuple(out)


def _decision_text(cfg: ClaimSpec, look: Look, code: int, looks: int) -> str:
    where = f"at look {look.look} of {looks} (n = {look.n} per arm)"
    iv = f"the repeated interval [{look.low:+.2f}, {look.high:+.2f}]"
    if kinds.get(cfg.key).rule == "noninferiority":
        return (f"{where}: {iv} lies above -{cfg.margin:g}" if code == sequential.SUPPORTED
                else f"{where}: {iv} lies below -{cfg.margin:g}")
    if code == sequential.NO_EFFECT:
        return (f"{where}: no benefit as large as {cfg.smallest_effect:g} points ({iv} holds 0 and ends below "
                f"{cfg.smallest_effect:g})")
    return f"{where}: {iv} lies {'above' if code == sequential.SUPPORTED else 'below'} 0"


def _verdict(cfg: ClaimSpec, looks: tuple[Look, ...], seq: sequential.Looks) -> tuple[str, str, int | None]:
    """(verdict, reason, the look where it stopped or None while open)."""
    stop, code = int(seq.stop[0]), int(seq.verdict[0])
    if stop < 0:
        last = looks[-1]
        return ("inconclusive", f"open after look {last.look} of {cfg.looks} (n = {last.n} per arm): the next look's "
                                "seeds are not trained yet; run the grid again to continue", None)
    look = looks[stop]
    if code != sequential.OPEN:
        return sequential.VERDICTS[code], _decision_text(cfg, look, code, cfg.looks), stop + 1
    why = f"; {look.gate}" if look.gate else ""
    return ("inconclusive", f"not decided by the last look ({look.look} of {cfg.looks}, n = {look.n} per arm): the "
                            f"repeated interval [{look.low:+.2f}, {look.high:+.2f}]{why}", stop + 1)


def _sequential(runs: pd.DataFrame, cfg: ClaimSpec, treat: pd.DataFrame, ctrl: pd.DataFrame,
                reg: Regime) -> tuple[tuple[Look, ...], str, str, int | None, Regime]:
    """The claim's looks and its verdict: the regime gates, the repeated interval decides."""
    k = cfg.look_every
    n = min(_complete([treat, ctrl], k), cfg.max_seeds)
    t, c = treat.iloc[:n], ctrl.iloc[:n]
    t_vals, c_vals = 100 * t["final_acc"].to_numpy(float), 100 * c["final_acc"].to_numpy(float)
    looks_n = n // k
    gate, why = np.ones(looks_n, dtype=bool), [""] * looks_n
    headroom: list[Test] = []
    if cfg.headroom:
        gate, headroom = _headroom_gate(runs, t, c, cfg, n)
        why = [("" if ok else f"no headroom: teachers minus scratch {h.estimate:+.2f}, repeated interval low end "
                               f"{h.ci[0]:+.2f} < {cfg.headroom:g}") for ok, h in zip(gate, headroom)]
        if not headroom:
            why = ["no headroom: the teachers' runs are not in the table"] * looks_n
    seq = sequential.run_looks(t_vals[None, :], c_vals[None, :], _design(cfg), _rule(cfg), gate[None, :])
    looks = _looks(cfg, t, c, seq, why)
    verdict, reason, stopped = _verdict(cfg, looks, seq)
    looks = looks[:stopped] if stopped else looks  # looks after the stop are not part of the procedure
    at = len(looks) - 1
    if headroom:
        reg = replace(reg, headroom=headroom[at])
    return looks, verdict, reason, stopped, reg


def _not_converged(reg: Regime) -> str | None:
    """Why the regime fails its convergence check, or None when it passes."""
    if reg.converged:
        return None
    if reg.converged is None:
        return "regime not checked: the grid has no scratch and FSP runs at twice the full budget"
    bad = [(label, g) for label, g in ((kinds.CONTROL, reg.gain), ("FSP", reg.fsp_gain))
           if g is not None and not g.ci[1] < reg.threshold]
    return "not converged: " + "; ".join(
        f"doubling {label}'s budget still gains {g.estimate:+.2f} points [{g.ci[0]:+.2f}, {g.ci[1]:+.2f}], upper "
        f"end not below {reg.threshold:g}" for label, g in bad)


# ---------------------------------------------------------------- descriptive tests (the first look's seeds)


def _descriptive(df: pd.DataFrame, runs: pd.DataFrame, cfg: ClaimSpec) -> tuple[list[Test], float | None]:
    """The claim kind's own descriptive tests, then the budget sweep, each on the first look's seeds of its arms."""
    g, a, f, k, paired = cfg.group, cfg.arch, cfg.budget, cfg.look_every, cfg.paired
    kind = kinds.get(cfg.key)
    out: list[Test] = []

    def add(name: str, treat: pd.DataFrame, ctrl: pd.DataFrame, role: str = "control") -> None:
        if not treat.empty and not ctrl.empty:
            out.append(compare_accuracy(name, treat, ctrl, matching(treat, ctrl), role=role, paired=paired))

    own, target = kind.descriptive(add, df, runs, cfg, select)
    out += own
    student = runs[(runs["group"] == g) & (runs["role"] == "student")]
    t_name, c_name = kinds.TREATMENT, kinds.CONTROL
    budgets = sorted(set(student.loc[student["method"] == t_name, "budget"])
                     & set(student.loc[student["method"] == c_name, "budget"]))
    for b in budgets:
        if b < f or (b == f and kind.sweep_at_full):
            before = len(out)
            add(f"sweep_{b}", select(runs, g, t_name, a, b, k), select(runs, g, c_name, a, b, k), role="sweep")
            if len(out) > before:
                out[-1] = replace(out[-1], fraction_of_full=b / f)
    return out, target


# ---------------------------------------------------------------- a claim


def _gains(runs: pd.DataFrame, treat: pd.DataFrame, ctrl: pd.DataFrame, paired: bool) -> tuple[TeacherGain, ...]:
    by_id = runs.set_index("run_id")
    scratch = 100 * ctrl["final_acc"].to_numpy(float)
    out = []
    for i, row in enumerate(treat.itertuples()):
        tid = str(row.teacher_run_id)
        if tid not in by_id.index:
            continue
        base = scratch[i] if paired and i < len(scratch) else float(scratch.mean())
        acc = 100 * float(cast(float, row.final_acc))
        out.append(TeacherGain(str(row.run_id), tid, 100 * float(cast(float, by_id.at[tid, "final_acc"])), acc,
                               acc - base))
    return tuple(out)


def _power(cfg: ClaimSpec, main: Test) -> tuple[int | None, float]:
    """Fixed-n seeds per arm for 80% power at the stated effect: the smallest effect of interest
    (superiority) or a true difference of 0 against -margin (non-inferiority); noncentral t."""
    effect = cfg.margin if kinds.get(cfg.key).rule == "noninferiority" else cfg.smallest_effect
    sd_t, sd_c = main.treatment_sd, main.control_sd
    n = sequential.seeds_for_power(effect, math.nan if sd_t is None else sd_t, math.nan if sd_c is None else sd_c,
                                   POWER, cfg.alpha, cfg.paired, main.difference_sd)
    return n, effect


def _not_run(key: str, why: str) -> Claim:
    return Claim(key, "not_run", why, "", (), why)


def claim(df: pd.DataFrame, runs: pd.DataFrame, cfg: ClaimSpec | None, key: str) -> tuple[Claim, float | None]:
    """One claim from the runs table: its looks, verdict, regime and descriptive tests."""
    if cfg is None:
        return _not_run(key, "the benchmark declares no comparison for this claim"), None
    (tm, tb), (cm, cb) = cfg.deciding_arms()
    treat, ctrl = select(runs, cfg.group, tm, cfg.arch, tb), select(runs, cfg.group, cm, cfg.arch, cb)
    k = cfg.look_every
    if _complete([treat, ctrl], k) < k:
        return _not_run(key, f"group {cfg.group}: fewer than {k} {tm} runs at {tb} or {cm} runs at {cb} steps "
                             "with consecutive seed indices (the first look is not complete)"), None
    reg = regime(runs, cfg.group, cfg.arch, cfg.budget, cfg.smallest_effect, paired=True, n=k, fsp=True)
    reg = replace(reg, headroom_threshold=cfg.headroom, teacher_images=_teacher_images(runs, treat))
    failed = _not_converged(reg)
    stopped: int | None
    if failed:  # the regime cannot be tested: stop at the first look (its interval kept for the record)
        looks, _, _, _, reg = _sequential(runs, cfg, treat.iloc[:k], ctrl.iloc[:k], reg)
        looks = tuple(replace(lk, decision="open", gate=failed) for lk in looks)
        verdict, reason, stopped = "inconclusive", failed, 1
    else:
        looks, verdict, reason, stopped, reg = _sequential(runs, cfg, treat, ctrl, reg)
    last = looks[-1]
    t_at, c_at = treat[treat["run_id"].isin(last.treatment_runs)], ctrl[ctrl["run_id"].isin(last.control_runs)]
    base = compare_accuracy(kinds.get(cfg.key).decides, t_at, c_at, matching(t_at, c_at), role="decides",
                            paired=cfg.paired)
    main = replace(base, ci=(last.low, last.high),
                   look=last.look, critical=last.critical, se=last.se, df=last.df,
                   interval="repeated (group-sequential) 95% interval")
    descriptive, target = _descriptive(df, runs, cfg)
    tests = [main, *(g for g in (reg.gain, reg.fsp_gain, reg.headroom) if g is not None), *descriptive]
    power_n, effect = _power(cfg, main)
    by_margin = ({m: sequential.VERDICTS[int(sequential.decide(last.low, last.high, replace(_rule(cfg), margin=m)))]
                  for m in sorted({*REPORT_MARGINS, cfg.margin})} if _rule(cfg).kind == "noninferiority" else {})
    summary = (f"{steps_label(t_at)}: {main.treatment_mean:.2f}% vs {steps_label(c_at)}: {main.control_mean:.2f}%: "
               f"{main.estimate:+.2f} points, repeated 95% CI [{last.low:+.2f}, {last.high:+.2f}] at look "
               f"{last.look} of {cfg.looks}, n = {last.n} per arm ({cfg.seeding})")
    design = _design(cfg)
    return Claim(key, verdict, reason, f"{kinds.get(key).what}: {_rule(cfg).describe()}", tuple(tests), summary, reg,
                 cfg.seeding, design.describe(), looks, stopped, cfg.looks, power_n, effect, by_margin,
                 _gains(runs, t_at, c_at, cfg.paired), cfg), target


def _teacher_images(runs: pd.DataFrame, treat: pd.DataFrame) -> int:
    teachers = runs[runs["run_id"].isin(set(treat["teacher_run_id"]))]
    return int(teachers["train_images"].max()) if not teachers.empty and "train_images" in teachers else 0


def analyze(df: pd.DataFrame, claims: Mapping[str, ClaimSpec]) -> Analysis:
    """Every claim of the benchmark from a labelled runs table, each through its looks."""
    runs = final_runs(df)
    out, targets = [], {}
    for key in kinds.keys():
        c, target = claim(df, runs, claims.get(key), key)
        out.append(c)
        if target is not None:
            targets[key] = target
    return Analysis(tuple(out), runs, targets)


# ---------------------------------------------------------------- claims.json


def _look_json(lk: Look) -> dict[str, Any]:
    return {"look": lk.look, "n_per_arm": lk.n, "estimate": num(lk.estimate), "se": num(lk.se), "df": num(lk.df),
            "z_boundary": num(lk.z), "critical_value": num(lk.critical), "repeated_ci": [num(lk.low), num(lk.high)],
            "alpha_spent": num(lk.alpha_spent), "error_spent": num(lk.error_spent), "decision": lk.decision,
            "gate": lk.gate or None, "treatment_runs": list(lk.treatment_runs), "control_runs": list(lk.control_runs)}


def _design_json(c: Claim) -> dict[str, Any] | None:
    s = c.spec
    if s is None:
        return None
    out: dict[str, Any] = {"seeding": s.seeding, "interval": INTERVALS[s.seeding], "look_every": s.look_every,
                           "max_seeds": s.max_seeds, "looks": s.looks, "alpha_per_side": s.alpha,
                           "spending": "Lan-DeMets O'Brien-Fleming type", "smallest_effect": s.smallest_effect,
                           "description": c.design}
    if kinds.get(c.key).rule == "noninferiority":
        out["margin"] = s.margin
    if s.headroom:
        out["headroom"] = s.headroom
    return out


def claims_json(analysis: Analysis) -> dict[str, Any]:
    """claims.json: per claim its verdict, reason, design, regime, every look and its tests; floats rounded to
    6 decimals (byte-stable)."""
    out: dict[str, Any] = {}
    for c in analysis.claims:
        out[c.key] = {
            "verdict": c.verdict, "reason": c.reason, "rule": c.rule or None, "summary": c.summary,
            "design": _design_json(c), "regime": regime_json(c.regime), "stopped_at_look": c.stopped_at,
            "n_per_arm": c.n_per_arm or None, "looks": [_look_json(lk) for lk in c.looks],
            "power": ({"power": POWER, "effect": num(c.power_effect), "seeds_per_arm": c.power_n,
                       "what": f"fixed-n seeds per arm for {POWER:.0%} power at a true distance of "
                               f"{c.power_effect:g} points from the decision boundary, at the observed spread "
                               "(noncentral t, one-sided)"} if c.looks else None),
            "verdict_by_margin": {f"{m:g}": v for m, v in c.by_margin.items()} or None,
            "teacher_gains": [{"run_id": g.run_id, "teacher_run_id": g.teacher_run_id,
                               "teacher_acc": num(g.teacher_acc), "student_acc": num(g.student_acc),
                               "gain": num(g.gain)} for g in c.gains],
            "tests": [test_json(t) for t in c.tests],
        }
    return out
