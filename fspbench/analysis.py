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
    critical: float  # the t critical value of the repeated interval (at the claim's corrected level)
    critical_low: float  # the critical value of the interval's low side (bootstrap-t calibrated: >= critical)
    critical_high: float
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
    plain_t: tuple[str, int | None, float, float] | None = None  # the sensitivity: verdict, look, interval, plain t

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
    """The claim's sequential design at its level after the family's correction (Bonferroni: alpha / k)."""
    return sequential.Design(cfg.look_every, cfg.max_seeds, cfg.paired, cfg.claim_alpha)


CALIBRATION = sequential.CALIBRATION

def _calibration(cfg: ClaimSpec) -> sequential.Calibration | None:
    return CALIBRATION if cfg.calibrate == "bootstrap_t" else None


def _rule(cfg: ClaimSpec) -> sequential.Rule:
    return sequential.Rule(kinds.get(cfg.key).rule, cfg.smallest_effect, cfg.margin)


def _complete(arms: list[pd.DataFrame], k: int) -> int:
    """Seeds per arm of the complete looks: the largest multiple of k such that every arm has seed indices 0..n-1."""
    n = min(len(a) for a in arms)
    for a in arms:
        idx = a["seed_index"].to_numpy()
        n = min(n, next((i for i, v in enumerate(idx) if v != i), len(idx)))
    return n // k * k


REGIME_LEVEL = 0.90  # the regime checks' intervals: convergence as TOST at 0.05 (the 90% interval within +-X)


def _headroom(runs: pd.DataFrame, treat: pd.DataFrame, ctrl: pd.DataFrame, n: int) -> Test | None:
    """Teachers of the first n FSP students minus the first n scratch students (Welch: they have their own
    seeds), the 90% interval; None when a teacher's run is missing."""
    by_id = runs.set_index("run_id")
    teacher_ids = [str(t) for t in treat["teacher_run_id"].iloc[:n]]
    if len(teacher_ids) < n or any(t not in by_id.index for t in teacher_ids):
        return None
    teachers = by_id.loc[teacher_ids].reset_index()
    return compare_accuracy("headroom", teachers, ctrl.iloc[:n], "teachers vs scratch students", role="regime",
                            metric="headroom", level=REGIME_LEVEL)


@dataclass(frozen=True)
class RegimeCheck:
    """The regime at one look: ``state`` ok (may decide), open (not shown yet: this look may not decide) or
    failed (shown outside the regime: the claim stops inconclusive), and why."""

    regime: Regime
    state: str
    why: str


def _regime_at(runs: pd.DataFrame, cfg: ClaimSpec, treat: pd.DataFrame, ctrl: pd.DataFrame, n: int) -> RegimeCheck:
    """Convergence (scratch and FSP at 2F against F, paired 90% intervals within +-smallest effect) and, for a
    claim that requires it, headroom (the teachers' 90% interval low end at least ``headroom`` points above the
    scratch students) on the first n seeds of the look."""
    reg = regime(runs, cfg.group, cfg.arch, cfg.budget, cfg.smallest_effect, paired=True, n=n, fsp=True,
                 level=REGIME_LEVEL, two_sided=True, control_group=cfg.control)
    reg = replace(reg, headroom_threshold=cfg.headroom, teacher_images=_teacher_images(runs, treat),
                  headroom_gates=cfg.headroom_gates, headroom=_headroom(runs, treat, ctrl, n) if cfg.headroom else None)
    gains = [g for g in (reg.gain, reg.fsp_gain) if g is not None]
    if len(gains) < 2 or any(g.n_treatment is None or g.n_treatment < n for g in gains):
        return RegimeCheck(reg, "open", f"regime not checked: scratch and FSP at twice the full budget lack the "
                                        f"look's {n} seeds")
    if reg.not_converged:
        return RegimeCheck(reg, "failed", reg.not_converged)
    h = reg.headroom
    if cfg.headroom and cfg.headroom_gates:
        if h is None:
            return RegimeCheck(reg, "open", "no headroom: the teachers' runs are not in the table")
        if h.ci[1] < cfg.headroom:
            return RegimeCheck(reg, "failed", f"no headroom: teachers minus scratch {h.estimate:+.2f} points, 90% "
                                              f"interval [{h.ci[0]:+.2f}, {h.ci[1]:+.2f}] below {cfg.headroom:g}")
        if not h.ci[0] >= cfg.headroom:
            return RegimeCheck(reg, "open", f"headroom not shown: teachers minus scratch {h.estimate:+.2f}, 90% "
                                            f"interval low end {h.ci[0]:+.2f} < {cfg.headroom:g}")
    if not reg.converged:
        return RegimeCheck(reg, "open", "convergence not shown: " + "; ".join(
            f"doubling {label}'s budget {g.estimate:+.2f} points, 90% interval [{g.ci[0]:+.2f}, {g.ci[1]:+.2f}] "
            f"not within +-{cfg.smallest_effect:g}" for label, g in ((kinds.CONTROL, reg.gain), ("FSP", reg.fsp_gain))
            if g is not None and not (-cfg.smallest_effect < g.ci[0] and g.ci[1] < cfg.smallest_effect)))
    return RegimeCheck(reg, "ok", "")


def _looks(cfg: ClaimSpec, treat: pd.DataFrame, ctrl: pd.DataFrame, seq: sequential.Looks,
           gate_why: list[str]) -> tuple[Look, ...]:
    design = _design(cfg)
    spent = design.spent
    out = []
    for j in range(len(seq.n)):
        n = int(seq.n[j])
        out.append(Look(j + 1, n, float(seq.estimate[0, j]), float(seq.se[0, j]), float(seq.df[0, j]),
                        float(seq.z[j]), float(seq.critical[0, j]), float(seq.low_critical[0, j]),
                        float(seq.high_critical[0, j]), float(seq.low[0, j]), float(seq.high[0, j]),
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


def _stop(seq: sequential.Looks, checks: list[RegimeCheck]) -> tuple[int, int, str]:
    """(0-based stopping look or -1 while open, decision code, regime failure or "") of a procedure whose regime
    fails at the first look with a failed check: it stops there unless an earlier look decided."""
    stop, code = int(seq.stop[0]), int(seq.verdict[0])
    failed = next((j for j, ch in enumerate(checks) if ch.state == "failed"), None)
    if failed is not None and (code == sequential.OPEN or stop > failed):
        return failed, sequential.OPEN, checks[failed].why
    return stop, code, ""


def _sequential(runs: pd.DataFrame, cfg: ClaimSpec, treat: pd.DataFrame,
                ctrl: pd.DataFrame) -> tuple[tuple[Look, ...], str, str, int | None, Regime, sequential.Looks]:
    """The claim's looks and its verdict: the regime checks gate each look, the repeated interval decides."""
    k = cfg.look_every
    n = min(_complete([treat, ctrl], k), cfg.max_seeds)
    t, c = treat.iloc[:n], ctrl.iloc[:n]
    t_vals, c_vals = 100 * t["final_acc"].to_numpy(float), 100 * c["final_acc"].to_numpy(float)
    checks = [_regime_at(runs, cfg, t, c, (j + 1) * k) for j in range(n // k)]
    gate = np.array([ch.state == "ok" for ch in checks])
    plain = sequential.run_looks(t_vals[None, :], c_vals[None, :], _design(cfg), _rule(cfg), gate[None, :])
    cal = _calibration(cfg)  # without a calibration the deciding procedure is the plain one: computed once
    seq = plain if cal is None else sequential.run_looks(t_vals[None, :], c_vals[None, :], _design(cfg), _rule(cfg),
                                                         gate[None, :], calibration=cal)
    looks = _looks(cfg, t, c, seq, [ch.why for ch in checks])
    stop, code, failed = _stop(seq, checks)
    seq = replace(seq, stop=np.array([stop]), verdict=np.array([code]))
    verdict, reason, stopped = _verdict(cfg, looks, seq)
    if failed:
        verdict, reason = "inconclusive", f"at look {stop + 1} of {cfg.looks} (n = {looks[stop].n} per arm): {failed}"
    looks = looks[:stopped] if stopped else looks  # looks after the stop are not part of the procedure
    return looks, verdict, reason, stopped, checks[len(looks) - 1].regime, plain


def _plain_t(cfg: ClaimSpec, plain: sequential.Looks, stopped: int | None) -> tuple[str, int | None, float, float]:
    """The sensitivity line: the same looks and gates with the plain t critical values (no bootstrap-t)."""
    stop, code = int(plain.stop[0]), int(plain.verdict[0])
    if stopped is not None and (stop < 0 or stop + 1 > stopped):
        stop = stopped - 1  # the primary procedure ended there: the plain t is read at that look
        code = int(plain.decision[0, stop])
    if stop < 0:
        return "open", None, math.nan, math.nan
    verdict = "inconclusive" if code == sequential.OPEN else sequential.VERDICTS[code]
    return verdict, stop + 1, float(plain.low[0, stop]), float(plain.high[0, stop])


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
                                   POWER, cfg.claim_alpha, cfg.paired, main.difference_sd)
    return n, effect


def _not_run(key: str, why: str) -> Claim:
    return Claim(key, "not_run", why, "", (), why)


def claim(df: pd.DataFrame, runs: pd.DataFrame, cfg: ClaimSpec | None, key: str) -> tuple[Claim, float | None]:
    """One claim from the runs table: its looks, verdict, regime and descriptive tests."""
    if cfg is None:
        return _not_run(key, "the benchmark declares no comparison for this claim"), None
    (tm, tb), (cm, cb) = cfg.deciding_arms()
    treat, ctrl = select(runs, cfg.group, tm, cfg.arch, tb), select(runs, cfg.control, cm, cfg.arch, cb)
    k = cfg.look_every
    if _complete([treat, ctrl], k) < k:
        return _not_run(key, f"group {cfg.group}: fewer than {k} {tm} runs at {tb} or {cm} runs at {cb} steps "
                             "with consecutive seed indices (the first look is not complete)"), None
    looks, verdict, reason, stopped, reg, plain = _sequential(runs, cfg, treat, ctrl)
    last = looks[-1]
    t_at, c_at = treat[treat["run_id"].isin(last.treatment_runs)], ctrl[ctrl["run_id"].isin(last.control_runs)]
    base = compare_accuracy(kinds.get(cfg.key).decides, t_at, c_at, matching(t_at, c_at), role="decides",
                            paired=cfg.paired)
    main = replace(base, ci=(last.low, last.high),
                   look=last.look, critical=last.critical, se=last.se, df=last.df,
                   interval=_interval_words(cfg))
    descriptive, target = _descriptive(df, runs, cfg)
    at_2f = _at_double(runs, cfg, last.n)
    tests = [main, *(g for g in (reg.gain, reg.fsp_gain, reg.headroom, at_2f) if g is not None), *descriptive]
    power_n, effect = _power(cfg, main)
    by_margin = ({m: sequential.VERDICTS[int(sequential.decide(last.low, last.high, replace(_rule(cfg), margin=m)))]
                  for m in sorted({*REPORT_MARGINS, cfg.margin})} if _rule(cfg).kind == "noninferiority" else {})
    summary = (f"{steps_label(t_at)}: {main.treatment_mean:.2f}% vs {steps_label(c_at)}: {main.control_mean:.2f}%: "
               f"{main.estimate:+.2f} points, repeated CI [{last.low:+.2f}, {last.high:+.2f}] at look "
               f"{last.look} of {cfg.looks}, n = {last.n} per arm ({cfg.seeding})")
    design = _design(cfg)
    return Claim(key, verdict, reason, f"{kinds.get(key).what}: {_rule(cfg).describe()}", tuple(tests), summary, reg,
                 cfg.seeding, design.describe(), looks, stopped, cfg.looks, power_n, effect, by_margin,
                 _gains(runs, t_at, c_at, cfg.paired), cfg, _plain_t(cfg, plain, stopped)), target


def _interval_words(cfg: ClaimSpec) -> str:
    fam = (f"Bonferroni over {len(cfg.family)} claims: one-sided {cfg.claim_alpha:.4g} per side, "
           f"{1 - 2 * cfg.alpha:.0%} family-wise" if cfg.correction == "bonferroni" and len(cfg.family) > 1
           else f"one-sided {cfg.claim_alpha:g} per side")
    how = "; bootstrap-t calibrated" if cfg.calibrate == "bootstrap_t" else ""
    return f"repeated (group-sequential) interval ({fam}{how})"


def _at_double(runs: pd.DataFrame, cfg: ClaimSpec, n: int) -> Test | None:
    """FSP (stage 2 at 2F) minus scratch (2F) on the deciding look's seeds: the effect with twice the budget."""
    t = select(runs, cfg.group, kinds.TREATMENT, cfg.arch, 2 * cfg.budget, n)
    c = select(runs, cfg.control, kinds.CONTROL, cfg.arch, 2 * cfg.budget, n)
    if t.empty or c.empty:
        return None
    return compare_accuracy(f"{kinds.TREATMENT}_vs_{kinds.CONTROL}_at_2F", t, c, matching(t, c), role="control",
                            paired=cfg.paired)


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
            "z_boundary": num(lk.z), "critical_value": num(lk.critical),
            "critical_value_low": num(lk.critical_low), "critical_value_high": num(lk.critical_high),
            "repeated_ci": [num(lk.low), num(lk.high)],
            "alpha_spent": num(lk.alpha_spent), "error_spent": num(lk.error_spent), "decision": lk.decision,
            "gate": lk.gate or None, "treatment_runs": list(lk.treatment_runs), "control_runs": list(lk.control_runs)}


def _design_json(c: Claim) -> dict[str, Any] | None:
    s = c.spec
    if s is None:
        return None
    out: dict[str, Any] = {"seeding": s.seeding, "interval": INTERVALS[s.seeding], "look_every": s.look_every,
                           "max_seeds": s.max_seeds, "looks": s.looks, "alpha_per_side": num(s.claim_alpha),
                           "family_alpha_per_side": s.alpha, "family": list(s.family), "correction": s.correction,
                           "calibration": ({**CALIBRATION.to_json(), "description": CALIBRATION.describe()}
                                           if s.calibrate == "bootstrap_t" else None),
                           "spending": "Lan-DeMets O'Brien-Fleming type", "smallest_effect": s.smallest_effect,
                           "regime_checks": "at every look: scratch and FSP at 2F against F, paired 90% intervals "
                                            f"within +-{s.smallest_effect:g}" + (
                                                f"; teachers minus scratch, 90% Welch interval low end at least "
                                                f"{s.headroom:g}" if s.headroom and s.headroom_gates else ""),
                           "description": c.design}
    if s.control_group:
        out["control_group"] = s.control_group
    if kinds.get(c.key).rule == "noninferiority":
        out["margin"] = s.margin
    if s.headroom:
        out["headroom"] = s.headroom
        out["headroom_gates"] = s.headroom_gates
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
            "sensitivity": ({"plain_t": {"verdict": c.plain_t[0], "look": c.plain_t[1],
                                         "repeated_ci": [num(c.plain_t[2]), num(c.plain_t[3])],
                                         "holds": c.plain_t[0] == c.verdict,
                                         "what": "the same looks and gates with the t critical values alone"}}
                            if c.plain_t is not None and c.looks else None),
            "teacher_gains": [{"run_id": g.run_id, "teacher_run_id": g.teacher_run_id,
                               "teacher_acc": num(g.teacher_acc), "student_acc": num(g.student_acc),
                               "gain": num(g.gain)} for g in c.gains],
            "tests": [test_json(t) for t in c.tests],
        }
    return out
