"""Claim statistics on constructed runs tables where the truth is known: looks, regimes, verdicts."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from fspbench import comparisons, sequential
from fspbench.ablation import ablation_json, ablation_of
from fspbench.analysis import analyze, claims_json, final_runs, steps_to_target
from fspbench.spec import AblationSpec, ClaimSpec, DesignSpec

K, N = 5, 15  # seeds per look, seeds at the last look


def _curve(run_id: str, method: str, group: str, budget: int, seed_index: int, accs: list[float], init: int = 0,
           status: str = "ok", step_every: int = 10, teacher: str = "", role: str = "student",
           images: int = 1000) -> list[dict]:
    """Rows of one run: ``init`` stage-1 steps (chance accuracy) then one row per value of ``accs``."""
    rows = []
    for k in range(init // step_every):
        s = (k + 1) * step_every
        rows.append(dict(stage="init", step=s, stage_step=s, test_acc=0.1, wall_time_s=2.0 * s, train_loss=10 / s))
    for k, acc in enumerate(accs):
        s = (k + 1) * step_every
        rows.append(dict(stage="main", step=init + s, stage_step=s, test_acc=acc, wall_time_s=2.0 * init + s,
                         train_loss=1.0))
    for r in rows:
        r.update(run_id=run_id, role=role, method=method, arch="resnet8", task="fashion-mnist", seed=seed_index,
                 teacher_run_id=teacher, images_seen=r["step"] * 64, test_loss=1.0, status=status, eval_images=1000,
                 group=group, budget=budget, init_steps=init, train_images=images, curve_acc=r["test_acc"],
                 curve_images=1000, precision="fp32", seed_index=seed_index)
    return rows


def _arm(group: str, method: str, budget: int, finals: list[float] | np.ndarray, init: int = 0,
         teacher_acc: float | None = 0.95, start: int = 0) -> list[dict]:
    """One arm: run i (seed index start + i) ends at finals[i]; FSP, KD and FitNet runs get their own teacher."""
    rows = []
    for j, final in enumerate(finals):
        i = start + j
        teacher = ""
        if method != "scratch" and teacher_acc is not None:
            teacher = f"teacher-{group}-{i}"
            rows += _curve(teacher, "scratch", group, 2 * budget, i, [teacher_acc], role="teacher", images=5000)
        accs = list(np.linspace(0.5, final, max(2, budget // 10)))
        rows += _curve(f"{group}-{method}-{budget}-{i}", method, group, budget, i, accs,
                       init=init if method in ("fsp", "fitnet") else 0, teacher=teacher)
    return rows


def _finals(mean: float, n: int = N, spread: float = 0.002, seed: int = 0) -> np.ndarray:
    return mean + spread * np.random.default_rng(seed).standard_normal(n)


def _claim_rows(group: str, budget: int, fsp: np.ndarray, scratch: np.ndarray, init: int = 30,
                gain: tuple[float, float] = (0.0, 0.0), teacher_acc: float = 0.95) -> list[dict]:
    """The deciding arms (FSP and scratch at the full budget) and the regime arms at 2x (every look's seeds: the
    regime is checked at each look), each 2x run ``gain`` (fraction) above its F partner: gain (0, 0) is a
    converged regime."""
    rows = _arm(group, "fsp", budget, fsp, init, teacher_acc) + _arm(group, "scratch", budget, scratch)
    rows += _arm(group, "fsp", 2 * budget, fsp + gain[0], init, None)
    rows += _arm(group, "scratch", 2 * budget, scratch + gain[1])
    return rows


def spec(key: str = "better_accuracy", group: str = "g", budget: int = 100, paired: bool = False,
         **kw: object) -> ClaimSpec:
    return ClaimSpec(key, group, "resnet8", budget, "paired" if paired else "independent", K, N, **kw)  # type: ignore


def _one(rows: list[dict], cfg: ClaimSpec):
    return next(c for c in analyze(pd.DataFrame(rows), {cfg.key: cfg}).claims if c.key == cfg.key)


def test_a_large_benefit_is_supported_at_the_first_look() -> None:
    claim = _one(_claim_rows("g", 100, _finals(0.85), _finals(0.80, seed=1)), spec())
    assert claim.verdict == "supported" and claim.stopped_at == 1 and claim.n_per_arm == K
    assert len(claim.looks) == 1 and claim.looks[0].decision == "supported"
    assert claim.regime.converged is True and claim.tests[0].role == "decides"
    assert claim.tests[0].estimate == pytest.approx(5.0, abs=0.3)
    harm = _one(_claim_rows("g", 100, _finals(0.75), _finals(0.80, seed=1)), spec())
    assert harm.verdict == "contradicted" and "lies below 0" in harm.reason


def test_no_benefit_as_large_as_the_smallest_effect_contradicts() -> None:
    claim = _one(_claim_rows("g", 100, _finals(0.8000), _finals(0.8001, seed=1), ), spec(smallest_effect=0.5))
    assert claim.verdict == "contradicted" and "no benefit as large as 0.5 points" in claim.reason
    lk = claim.looks[claim.stopped_at - 1]
    assert lk.low < 0 < lk.high < 0.5


def test_an_open_claim_reads_inconclusive_until_its_next_look_is_trained() -> None:
    fsp, scratch = _finals(0.803, spread=0.01, seed=3), _finals(0.800, spread=0.01, seed=4)
    rows = _claim_rows("g", 100, fsp, scratch)
    first = [r for r in rows if r["seed_index"] < K]
    claim = _one(first, spec())
    assert claim.verdict == "inconclusive" and claim.open and claim.stopped_at is None
    assert claim.reason.startswith("open after look 1 of 3")
    full = _one(rows, spec())  # all three looks: decided somewhere, or inconclusive at the last
    assert not full.open and full.stopped_at is not None and len(full.looks) == full.stopped_at
    assert [lk.n for lk in full.looks] == [K * (j + 1) for j in range(full.stopped_at)]
    assert [lk.treatment_runs for lk in full.looks[:1]] == [tuple(f"g-fsp-100-{i}" for i in range(K))]


def test_each_look_is_the_repeated_interval_of_its_seeds() -> None:
    fsp, scratch = _finals(0.803, spread=0.01, seed=3), _finals(0.800, spread=0.01, seed=4)
    for paired in (False, True):
        claim = _one(_claim_rows("g", 100, fsp, scratch), spec(paired=paired))
        z = sequential.Design(K, N, paired).z
        spent = sequential.obf_spending(np.array([1 / 3, 2 / 3, 1.0]))
        for j, lk in enumerate(claim.looks):
            t, c = 100 * fsp[: lk.n], 100 * scratch[: lk.n]
            if paired:
                d = t - c
                est, se, df = d.mean(), d.std(ddof=1) / math.sqrt(lk.n), lk.n - 1
            else:
                est, se = t.mean() - c.mean(), math.sqrt(t.var(ddof=1) / lk.n + c.var(ddof=1) / lk.n)
                df = sps.ttest_ind(t, c, equal_var=False).df
            crit = sps.t.isf(sps.norm.sf(z[j]), df)
            assert (lk.estimate, lk.se, lk.df, lk.critical) == pytest.approx((est, se, df, crit))
            assert (lk.low, lk.high) == pytest.approx((est - crit * se, est + crit * se))
            assert lk.alpha_spent == pytest.approx(spent[j])
        assert claim.tests[0].seeding == ("paired" if paired else "independent")
        assert claim.tests[0].ci == (claim.looks[-1].low, claim.looks[-1].high)


def test_not_converged_stops_at_the_first_look_inconclusive() -> None:
    fsp, scratch = _finals(0.85), _finals(0.80, seed=1)
    for gain, who, how in (((0.0, 0.03), "scratch", "still gains"), ((0.03, 0.0), "FSP", "still gains"),
                           ((0.0, -0.03), "scratch", "overfitting"), ((-0.03, 0.0), "FSP", "overfitting")):
        claim = _one(_claim_rows("g", 100, fsp, scratch, gain=gain), spec())
        assert claim.verdict == "inconclusive" and claim.stopped_at == 1 and not claim.open
        assert f"not converged: doubling {who}'s budget" in claim.reason and how in claim.reason
        assert claim.regime.converged is False
    js = claims_json(analyze(pd.DataFrame(_claim_rows("g", 100, fsp, scratch, gain=(0.0, 0.03))),
                             {"better_accuracy": spec()}))["better_accuracy"]
    assert js["regime"]["converged"] is False and js["regime"]["doubling_gain"] == pytest.approx(3.0, abs=0.1)
    assert js["regime"]["epochs_per_run"] == pytest.approx(100 * 64 / 1000)
    # the doubling checks are paired: the 2x run of seed i against the 1x run of seed i, a 90% interval
    gain = next(t for t in claim.tests if t.name == "doubling_gain")
    assert gain.seeding == "paired" and gain.n_treatment == K and gain.interval == "90% interval"


def test_convergence_is_two_sided_and_checked_at_every_look() -> None:
    """A doubling gain whose 90% interval straddles +-0.5 decides nothing (the look is gated) until the
    interval lies within +-0.5; a regime that loses more than 0.5 points stops as overfitting."""
    fsp, scratch = _finals(0.85), _finals(0.80, seed=1)
    rows = _arm("g", "fsp", 100, fsp, 30) + _arm("g", "scratch", 100, scratch)
    rows += _arm("g", "fsp", 200, fsp, 30, None)
    noisy = scratch + np.r_[0.012, -0.012, 0.011, -0.011, 0.0, np.zeros(N - K)]  # wide at look 1, narrow after
    rows += _arm("g", "scratch", 200, noisy)
    claim = _one(rows, spec())
    assert claim.looks[0].decision == "open" and claim.looks[0].gate.startswith("convergence not shown")
    assert claim.verdict == "supported" and claim.stopped_at == 2


def test_without_headroom_the_claim_stops_and_an_unshown_headroom_decides_nothing() -> None:
    fsp, scratch = _finals(0.85), _finals(0.80, seed=1)
    weak = _one(_claim_rows("g", 100, fsp, scratch, teacher_acc=0.81), spec(headroom=2.0))  # 1 point ahead
    assert weak.verdict == "inconclusive" and weak.stopped_at == 1 and "no headroom" in weak.reason
    assert weak.regime.has_headroom is False and weak.regime.headroom.estimate == pytest.approx(1.0, abs=0.2)
    strong = _one(_claim_rows("g", 100, fsp, scratch, teacher_acc=0.95), spec(headroom=2.0))
    assert strong.verdict == "supported" and strong.regime.has_headroom is True
    assert strong.regime.headroom.metric == "headroom" and strong.regime.teacher_images == 5000
    # better_accuracy's own form (headroom_gates False): the lead is reported, it gates nothing
    reported = _one(_claim_rows("g", 100, fsp, scratch, teacher_acc=0.81), spec(headroom=2.0, headroom_gates=False))
    assert reported.verdict == "supported" and reported.regime.headroom.estimate == pytest.approx(1.0, abs=0.2)


def test_every_fsp_student_has_its_own_teacher_and_a_gain_against_it() -> None:
    claim = _one(_claim_rows("g", 100, _finals(0.85), _finals(0.80, seed=1)), spec(paired=True))
    assert len({g.teacher_run_id for g in claim.gains}) == len(claim.gains) == K
    g0 = claim.gains[0]
    assert g0.teacher_acc == pytest.approx(95.0) and g0.gain == pytest.approx(g0.student_acc - 100 * 0.80, abs=0.3)


def test_descriptive_tests_use_the_first_looks_seeds() -> None:
    rows = _claim_rows("g", 100, _finals(0.85), _finals(0.80, seed=1))
    rows += _arm("g", "kd", 100, _finals(0.83, K)) + _arm("g", "fitnet", 100, _finals(0.82, K), init=30)
    rows += _arm("g", "scratch", 130, _finals(0.81, K))  # the full budget plus FSP's 30 stage-1 steps
    for b, gap in ((20, 0.10), (30, 0.05)):
        rows += _arm("g", "fsp", b, _finals(0.70 + gap, K), init=30) + _arm("g", "scratch", b, _finals(0.70, K))
    claim = _one(rows, spec())
    by = {t.name: t for t in claim.tests}
    assert by["fsp_vs_scratch_total_steps"].estimate == pytest.approx(4.0, abs=0.5)
    assert "total steps matched (130 vs 130)" in by["fsp_vs_scratch_total_steps"].budget
    assert "main-task steps matched (100 vs 100)" in by["fsp_vs_scratch"].budget
    assert by["fsp_vs_kd"].estimate == pytest.approx(2.0, abs=0.5) and by["fsp_vs_kd"].n == 2 * K
    assert by["fsp_vs_fitnet"].estimate == pytest.approx(3.0, abs=0.5)
    sweep = {t.fraction_of_full: t.estimate for t in claim.tests if t.role == "sweep"}
    assert sweep == pytest.approx({0.2: 10.0, 0.3: 5.0}, abs=0.5)
    assert not any(t.role == "teacher" for t in claim.tests)


def test_diverged_and_failed_runs_stay_in_the_test() -> None:
    fsp, scratch = _finals(0.85), _finals(0.80, seed=1)
    rows = _claim_rows("g", 100, fsp, scratch)
    for r in rows:
        if r["run_id"] == "g-fsp-100-2":
            r.update(status="diverged", test_acc=0.1, curve_acc=0.1)
    rows = [r for r in rows if r["run_id"] != "g-scratch-100-3"]
    rows += [_curve("g-scratch-100-3", "scratch", "g", 100, 3, [0.0])[0] | {
        "test_acc": math.nan, "curve_acc": math.nan, "status": "failed", "step": 0}]
    claim = _one(rows, spec())
    main = claim.tests[0]
    assert main.failures == 2 and "g-fsp-100-2" in main.treatment_runs and "g-scratch-100-3" in main.control_runs
    runs = final_runs(pd.DataFrame(rows)).set_index("run_id")
    assert runs.loc["g-scratch-100-3", "final_acc"] == 0.0
    assert runs.loc["g-fsp-100-2", "final_acc"] == pytest.approx(0.1)


def test_missing_group_or_incomplete_first_look_is_not_run() -> None:
    rows = _claim_rows("g", 100, _finals(0.85), _finals(0.80, seed=1))
    a = analyze(pd.DataFrame(rows), {"better_accuracy": spec(), "cross_task_transfer": spec("cross_task_transfer",
                                                                                           "x")})
    assert next(c for c in a.claims if c.key == "cross_task_transfer").verdict == "not_run"
    assert next(c for c in a.claims if c.key == "fast_optimization").verdict == "not_run"
    js = claims_json(a)["fast_optimization"]
    assert js["verdict"] == "not_run" and js["tests"] == [] and js["regime"] is None and js["looks"] == []
    few = [r for r in rows if r["seed_index"] < 3]
    assert _one(few, spec()).verdict == "not_run"


def test_steps_to_target_interpolates_between_curve_points() -> None:
    curve = pd.DataFrame(_curve("r", "fsp", "g", 40, 0, [0.6, 0.7, 0.8, 0.9], init=20))
    hit = steps_to_target(curve, 0.75)  # half-way between main steps 20 (0.7) and 30 (0.8)
    assert hit == pytest.approx({"step": 45.0, "main_step": 25.0, "wall_time_s": 65.0})
    assert steps_to_target(curve, 0.7) == pytest.approx({"step": 40.0, "main_step": 20.0, "wall_time_s": 60.0})
    assert math.isnan(steps_to_target(curve, 0.95)["step"])
    # the target is checked on curve_acc (the curve's images), not on test_acc
    curve.loc[curve["step"] == 50, "curve_acc"] = 0.74
    assert steps_to_target(curve, 0.75)["main_step"] == pytest.approx(30 + 10 * (0.75 - 0.74) / (0.9 - 0.74))


def test_fast_optimization_is_non_inferiority_at_the_margin() -> None:
    fast = spec("fast_optimization", "f", 150, short_budget=50, margin=0.5)
    scratch = _finals(0.90, seed=1)
    rows = _claim_rows("f", 150, _finals(0.905), scratch, init=50)
    rows += _arm("f", "fsp", 50, _finals(0.899, seed=2), init=50) + _arm("f", "scratch", 50, _finals(0.85, K))
    a = analyze(pd.DataFrame(rows), {"fast_optimization": fast})
    claim = a.claims[0]
    assert claim.key == "fast_optimization" and claim.verdict == "supported" and claim.stopped_at == 2
    assert "lies above -0.5" in claim.reason and set(claim.by_margin) == {0.25, 0.5, 1.0}
    by = {t.name: t for t in claim.tests}
    assert by["fsp_short_vs_scratch_short"].estimate == pytest.approx(4.9, abs=0.5)
    assert a.targets["fast_optimization"] == pytest.approx(0.99 * 0.90, abs=0.01)
    main = by["to_target_main_step"]  # FSP with stage 2 at the full budget against scratch at the full budget
    assert main.treatment_reached == K and main.control_reached == K
    assert main.treatment_runs == tuple(f"f-fsp-150-{i}" for i in range(K))
    assert 0.85 < main.estimate < 1.05 and by["to_target_step"].estimate > main.estimate
    worse = _claim_rows("f", 150, _finals(0.905), scratch, init=50) + _arm("f", "fsp", 50, _finals(0.80), init=50)
    assert analyze(pd.DataFrame(worse), {"fast_optimization": fast}).claims[0].verdict == "contradicted"


def test_power_is_the_fixed_n_for_80_percent_at_the_stated_effect() -> None:
    fsp, scratch = _finals(0.803, spread=0.01, seed=3), _finals(0.800, spread=0.01, seed=4)
    claim = _one(_claim_rows("g", 100, fsp, scratch), spec(smallest_effect=0.5))
    main, n = claim.tests[0], claim.power_n
    assert claim.power_effect == 0.5 and n is not None
    sd_t, sd_c = main.treatment_sd, main.control_sd
    assert sequential.power(n, 0.5, sd_t, sd_c) >= 0.8 > sequential.power(n - 1, 0.5, sd_t, sd_c)
    js = claims_json(analyze(pd.DataFrame(_claim_rows("g", 100, fsp, scratch)), {"better_accuracy": spec()}))
    assert js["better_accuracy"]["power"]["seeds_per_arm"] == n


def test_claims_json_is_the_same_in_a_fresh_process() -> None:
    code = ("import json, sys; sys.path.insert(0, 'tests'); import test_analysis as T, pandas as pd; "
            "from fspbench.analysis import analyze, claims_json; "
            "rows = T._claim_rows('g', 100, T._finals(0.8, spread=0.03), T._finals(0.8, spread=0.03, seed=1)); "
            "print(json.dumps(claims_json(analyze(pd.DataFrame(rows), {'better_accuracy': T.spec()})), "
            "sort_keys=True))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    rows = _claim_rows("g", 100, _finals(0.8, spread=0.03), _finals(0.8, spread=0.03, seed=1))
    here = claims_json(analyze(pd.DataFrame(rows), {"better_accuracy": spec()}))
    assert json.loads(out) == json.loads(json.dumps(here, sort_keys=True))
    look = here["better_accuracy"]["looks"][0]
    assert {"n_per_arm", "estimate", "repeated_ci", "critical_value", "error_spent", "alpha_spent"} <= set(look)


def _old_group(group: str, budget: int, means: dict[str, float], seeds: int = 5, spread: float = 0.002,
               init: int = 0) -> list[dict]:
    """A group whose table lists its seeds (no [design]): seed_index -1."""
    rows = []
    rng = np.random.default_rng(len(group) + budget)
    for method, mean in means.items():
        for s in range(seeds):
            final = mean + spread * rng.standard_normal()
            rows += [r | {"seed_index": -1, "seed": s} for r in _curve(
                f"{group}-{method}-{budget}-{s}", method, group, budget, s, list(np.linspace(0.5, final, budget // 10)),
                init=init if method == "fsp" else 0, teacher="t" if method != "scratch" else "")]
    return rows


def test_ablation_answers_yes_no_inconclusive() -> None:
    rows = _old_group("paper", 100, {"fsp": 0.850, "scratch": 0.80}, init=30) + _old_group("paper", 200,
                                                                                          {"scratch": 0.80})
    rows += _old_group("moved", 100, {"fsp": 0.830}, init=30)  # -2 points: the interval excludes 0
    rows += _old_group("same", 100, {"fsp": 0.8505}, init=30, spread=0.0005)  # within +-0.5 points
    rows += _old_group("noisy", 100, {"fsp": 0.853}, init=30, spread=0.02)  # too noisy to say
    abl_spec = AblationSpec("paper", ("moved", "same", "noisy"), 100)
    abl = ablation_of(pd.DataFrame(rows), abl_spec)
    assert abl is not None and abl.regime.converged is True and abl.seeding == "independent"
    answers = {a.group: a.changes_accuracy for a in abl.arms}
    assert answers == {"moved": "yes", "same": "no", "noisy": "inconclusive"}
    moved = next(a for a in abl.arms if a.group == "moved")
    assert moved.vs_reference.estimate == pytest.approx(-2.0, abs=0.3)
    assert moved.vs_scratch.estimate == pytest.approx(3.0, abs=0.3)
    assert moved.stage1_first == pytest.approx(1.0) and moved.stage1_last == pytest.approx(10 / 30)
    js = ablation_json(abl)
    assert [a["changes_accuracy"] for a in js["arms"]] == ["yes", "no", "inconclusive"]
    assert ablation_of(pd.DataFrame(rows), None) is None


def _paired_ablation_rows(arms: dict[str, tuple[float, float]], ref_gain: float = 0.0) -> list[dict]:
    """A paired [design] ablation: 10 seeds per arm, arm i shares seed index i with the reference; each arm's
    finals are the reference's plus (shift, noise) points; the reference's scratch and FSP at 2F gain ref_gain."""
    rng = np.random.default_rng(4)
    base = 0.85 + 0.004 * rng.standard_normal(10)
    rows = _arm("paper", "fsp", 100, base, 30) + _arm("paper", "scratch", 100, base - 0.05)
    rows += _arm("paper", "fsp", 200, base + ref_gain, 30, None) + _arm("paper", "scratch", 200, base - 0.05 + ref_gain)
    for g, (shift, noise) in arms.items():
        rows += _arm(g, "fsp", 100, base + shift / 100 + noise / 100 * rng.standard_normal(10), 30)
    return rows


def test_a_paired_design_ablation_decides_each_arm_at_alpha_over_the_arms() -> None:
    arms = {"moved": (-2.0, 0.2), "same": (0.02, 0.05), "noisy": (0.3, 1.5)}
    spec = AblationSpec("paper", tuple(arms), 100)
    design = DesignSpec("paired", look_every=10, max_seeds=10, calibrate="none")
    abl = ablation_of(pd.DataFrame(_paired_ablation_rows(arms)), spec, paired=True, design=design)
    assert abl is not None and abl.design is not None
    assert abl.design["alpha_per_side"] == pytest.approx(0.025 / 3, abs=1e-6)
    answers = {a.group: a.changes_accuracy for a in abl.arms}
    assert answers == {"moved": "yes", "same": "no", "noisy": "inconclusive"}
    moved = next(a for a in abl.arms if a.group == "moved")
    assert moved.decided_at == 1 and moved.vs_reference.seeding == "paired"
    # the repeated interval at 0.025 / 3 per side: wider than the plain paired 95% one, by the t quantiles' ratio
    plain = comparisons.compare_accuracy("x", *comparisons.pairs(
        *(comparisons.select(final_runs(pd.DataFrame(_paired_ablation_rows(arms))), g, "fsp", None, 100)
          for g in ("moved", "paper"))), "", paired=True)
    ratio = (moved.vs_reference.ci[1] - moved.vs_reference.ci[0]) / (plain.ci[1] - plain.ci[0])
    assert ratio == pytest.approx(sps.t.isf(0.025 / 3, 9) / sps.t.isf(0.025, 9), rel=1e-6)
    # a reference that still gains 2 points from doubling: nothing is decided, and the reason says why
    failed = ablation_of(pd.DataFrame(_paired_ablation_rows(arms, ref_gain=0.02)), spec, paired=True, design=design)
    assert failed is not None and all(a.changes_accuracy == "inconclusive" and "not converged" in a.why
                                      for a in failed.arms)
    assert ablation_json(abl)["arms"][0]["decided_at_look"] == 1


def test_a_tests_typed_fields_are_claims_json_extra_object() -> None:
    """Only the fields a test has, sorted, floats to 6 places and NaN as null (as claims.json keeps them)."""
    t = comparisons.Test("a", "final_acc_diff", "control", 1.0, (0.0, 2.0), 10, (), (), "", n_treatment=5,
                         n_control=5, treatment_mean=81.1234567, control_mean=math.nan, df=8.0, look=2)
    assert list(comparisons.test_json(t)["extra"].items()) == [
        ("control_mean", None), ("df", 8.0), ("look", 2), ("n_control", 5), ("n_treatment", 5),
        ("treatment_mean", 81.123457)]
    assert t.n_per_side == "5 + 5" and dataclasses.replace(t, seeding="paired").n_per_side == "5 pairs"
