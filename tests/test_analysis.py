"""Claim statistics on constructed runs tables where the truth is known."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from fspbench.analysis import ablation, ablation_json, analyze, claims_json, final_runs, steps_to_target
from fspbench.spec import AblationSpec, ClaimSpec


def _curve(run_id: str, method: str, group: str, budget: int, seed: int, accs: list[float], init: int = 0,
           status: str = "ok", step_every: int = 10, teacher: str = "t") -> list[dict]:
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
        r.update(run_id=run_id, role="student", method=method, arch="resnet8", task="fashion-mnist", seed=seed,
                 teacher_run_id=teacher if method != "scratch" else "", images_seen=r["step"] * 64,
                 test_loss=1.0, status=status, eval_images=1000, group=group, budget=budget, init_steps=init,
                 train_images=1000, curve_acc=r["test_acc"], curve_images=1000, precision="fp32")
    return rows


def _group(group: str, budget: int, means: dict[str, float], seeds: int = 5, spread: float = 0.002,
           init: int = 0, teachers: tuple[str, ...] = ("t",)) -> list[dict]:
    rows = []
    rng = np.random.default_rng(len(group) + budget)
    for method, mean in means.items():
        for s in range(seeds):
            final = mean + spread * rng.standard_normal()
            accs = list(np.linspace(0.5, final, budget // 10))
            rows += _curve(f"{group}-{method}-{budget}-{s}", method, group, budget, s, accs,
                           init=init if method in ("fsp", "fitnet") else 0, teacher=teachers[s % len(teachers)])
    return rows


def _converged(group: str, budget: int, acc: float = 0.80, seeds: int = 3) -> list[dict]:
    """Scratch at 2x the budget, as good as at 1x: a converged regime."""
    return _group(group, 2 * budget, {"scratch": acc}, seeds=seeds)


CLAIMS = {"better_accuracy": ClaimSpec("better_accuracy", "g", "resnet8", 100),
          "cross_task_transfer": ClaimSpec("cross_task_transfer", "x", "resnet8", 100)}


def _analyze(rows: list[dict], claims: dict = CLAIMS):
    return analyze(pd.DataFrame(rows), claims)


def _claim(a, key):
    return next(c for c in a.claims if c.key == key)


def test_verdicts_in_a_converged_regime() -> None:
    rows = _group("g", 100, {"fsp": 0.85, "scratch": 0.80}) + _converged("g", 100)  # +5 points
    rows += _group("x", 100, {"fsp": 0.70, "scratch": 0.78}) + _converged("x", 100, 0.78)  # -8 points
    a = _analyze(rows)
    better = _claim(a, "better_accuracy")
    assert better.verdict == "supported" and better.regime.converged is True
    main = better.tests[0]
    assert main.role == "decides" and main.estimate == pytest.approx(5.0, abs=0.5)
    assert main.ci[0] > 0 and main.p_value < 0.01
    assert _claim(a, "cross_task_transfer").verdict == "contradicted"

    overlap = _converged("g", 20)  # the same five accuracies on both sides, in another order
    for s, (f, c) in enumerate(zip([0.78, 0.80, 0.82, 0.79, 0.81], [0.81, 0.79, 0.80, 0.82, 0.78])):
        overlap += _curve(f"f{s}", "fsp", "g", 20, s, [0.5, f]) + _curve(f"c{s}", "scratch", "g", 20, s, [0.5, c])
    claim = _claim(_analyze(overlap, {"better_accuracy": replace(CLAIMS["better_accuracy"], budget=20)}),
                   "better_accuracy")
    assert claim.tests[0].estimate == pytest.approx(0.0, abs=1e-9)
    assert claim.verdict == "inconclusive" and claim.seeds_needed is None  # the estimate sits on the boundary


def test_not_converged_or_unchecked_regime_is_inconclusive_whatever_the_interval() -> None:
    rows = _group("g", 100, {"fsp": 0.85, "scratch": 0.80})
    unchecked = _claim(_analyze(rows), "better_accuracy")
    assert unchecked.verdict == "inconclusive" and unchecked.test_verdict == "supported"
    assert unchecked.reason.startswith("regime not checked")
    growing = rows + _converged("g", 100, acc=0.83)  # doubling scratch's budget still gains 3 points
    claim = _claim(_analyze(growing), "better_accuracy")
    assert claim.verdict == "inconclusive" and claim.reason.startswith("not converged")
    assert claim.regime.gain.estimate == pytest.approx(3.0, abs=0.3) and claim.regime.converged is False
    js = claims_json(_analyze(growing))["better_accuracy"]
    assert js["regime"]["converged"] is False and js["regime"]["doubling_gain"] == pytest.approx(3.0, abs=0.3)
    assert js["regime"]["epochs_per_run"] == pytest.approx(100 * 64 / 1000)


def test_missing_group_or_claim_is_not_run() -> None:
    a = _analyze(_group("g", 100, {"fsp": 0.85, "scratch": 0.80}))
    assert _claim(a, "cross_task_transfer").verdict == "not_run"  # no runs in group x
    assert _claim(a, "fast_optimization").verdict == "not_run"  # not declared
    js = claims_json(a)["fast_optimization"]
    assert js["verdict"] == "not_run" and js["tests"] == [] and js["regime"] is None


def test_estimate_and_interval_match_hand_computation() -> None:
    rows = _converged("g", 20)
    f, c = [0.9, 0.8, 0.7], [0.8, 0.7, 0.75]
    for s in range(3):
        rows += _curve(f"f{s}", "fsp", "g", 20, s, [0.5, f[s]]) + _curve(f"c{s}", "scratch", "g", 20, s, [0.5, c[s]])
    test = _claim(_analyze(rows, {"better_accuracy": replace(CLAIMS["better_accuracy"], budget=20)}),
                  "better_accuracy").tests[0]
    t, k = 100 * np.array(f), 100 * np.array(c)
    se = math.sqrt(t.var(ddof=1) / 3 + k.var(ddof=1) / 3)
    df = se**4 / ((t.var(ddof=1) / 3) ** 2 / 2 + (k.var(ddof=1) / 3) ** 2 / 2)
    half = sps.t.ppf(0.975, df) * se
    assert test.estimate == pytest.approx(t.mean() - k.mean())
    assert test.ci == pytest.approx((t.mean() - k.mean() - half, t.mean() - k.mean() + half))
    assert test.treatment_runs == ("f0", "f1", "f2") and test.control_runs == ("c0", "c1", "c2")
    assert test.n == 6


def test_compute_matched_controls_teachers_and_sweep() -> None:
    rows = _group("g", 100, {"fsp": 0.85, "kd": 0.83, "fitnet": 0.82}, init=30, teachers=("t1", "t2"))
    rows += _group("g", 100, {"scratch": 0.80}) + _converged("g", 100)
    rows += _group("g", 130, {"scratch": 0.81})  # the full budget plus FSP's 30 stage-1 steps
    for b, gap in ((20, 0.10), (30, 0.05)):
        rows += _group("g", b, {"fsp": 0.70 + gap}, init=30) + _group("g", b, {"scratch": 0.70})
    claim = _claim(_analyze(rows), "better_accuracy")
    by = {t.name: t for t in claim.tests}
    assert by["fsp_vs_scratch_total_steps"].estimate == pytest.approx(4.0, abs=0.5)
    assert "total steps matched (130 vs 130)" in by["fsp_vs_scratch_total_steps"].budget
    assert "main-task steps matched (100 vs 100)" in by["fsp_vs_scratch"].budget
    assert by["fsp_vs_kd"].estimate == pytest.approx(2.0, abs=0.5)
    assert by["fsp_vs_fitnet"].estimate == pytest.approx(3.0, abs=0.5)
    teachers = [t for t in claim.tests if t.role == "teacher"]
    assert [t.extra["teacher_run_id"] for t in teachers] == ["t1", "t2"]
    assert [t.extra["n_treatment"] for t in teachers] == [3, 2]  # seeds 0, 2, 4 and 1, 3
    sweep = {t.extra["fraction_of_full"]: t.estimate for t in claim.tests if t.role == "sweep"}
    assert sweep == pytest.approx({0.2: 10.0, 0.3: 5.0}, abs=0.5)


def test_diverged_run_is_counted_as_failure() -> None:
    rows = _group("g", 100, {"fsp": 0.85, "scratch": 0.80}) + _converged("g", 100)
    rows += _curve("g-fsp-diverged", "fsp", "g", 100, 9, [0.5, 0.1], status="diverged")
    failed_row = _curve("g-scratch-failed", "scratch", "g", 100, 9, [0.0])[0] | {
        "test_acc": math.nan, "curve_acc": math.nan, "status": "failed", "step": 0}
    df = pd.concat([pd.DataFrame(rows), pd.DataFrame([failed_row])], ignore_index=True)
    test = _claim(analyze(df, CLAIMS), "better_accuracy").tests[0]
    assert test.failures == 2
    assert "g-fsp-diverged" in test.treatment_runs and "g-scratch-failed" in test.control_runs
    assert test.n == 12
    runs = final_runs(df).set_index("run_id")
    assert runs.loc["g-scratch-failed", "final_acc"] == 0.0
    assert runs.loc["g-fsp-diverged", "final_acc"] == pytest.approx(0.1)


def test_steps_to_target_on_hand_made_curve() -> None:
    curve = pd.DataFrame(_curve("r", "fsp", "g", 40, 0, [0.6, 0.7, 0.8, 0.9], init=20))
    hit = steps_to_target(curve, 0.75)
    assert hit == {"step": 50.0, "main_step": 30.0, "wall_time_s": 70.0}  # 20 init steps + 30 main
    assert math.isnan(steps_to_target(curve, 0.95)["step"])
    # the target is checked on curve_acc (the curve's images), not on test_acc
    curve.loc[curve["step"] == 50, "curve_acc"] = 0.74
    assert steps_to_target(curve, 0.75)["main_step"] == 40.0


def test_fast_optimization_non_inferiority_margins_and_ratios() -> None:
    fast = ClaimSpec("fast_optimization", "f", "resnet8", 150, short_budget=50)
    rows = _group("f", 50, {"fsp": 0.90}, init=50) + _group("f", 150, {"scratch": 0.90})
    rows += _group("f", 150, {"fsp": 0.905}, init=50) + _group("f", 50, {"scratch": 0.85}) + _converged("f", 150, 0.90)
    a = analyze(pd.DataFrame(rows), {"fast_optimization": fast})
    claim = _claim(a, "fast_optimization")
    assert claim.verdict == "supported" and set(claim.by_margin) == {0.25, 0.5, 1.0}
    by = {t.name: t for t in claim.tests}
    assert by["fsp_short_vs_scratch_short"].estimate == pytest.approx(5.0, abs=0.5)
    assert a.targets["fast_optimization"] == pytest.approx(0.99 * 0.90, abs=0.01)
    # steps-to-target compares FSP with stage 2 at the full budget against scratch at the full budget:
    # both curves rise over 15 points, so neither is censored and the ratio is near 1
    main = by["to_target_main_step"]
    assert main.extra["treatment_reached"] == 5 and main.extra["control_reached"] == 5
    assert main.treatment_runs == tuple(f"f-fsp-150-{s}" for s in range(5))
    assert 0.85 < main.estimate < 1.05
    assert by["to_target_step"].estimate > main.estimate  # stage-1 steps counted
    assert by["fsp_short_vs_scratch_full"].p_value < 0.025  # one-sided at the margin
    sweep = {t.extra["fraction_of_full"] for t in claim.tests if t.role == "sweep"}
    assert sweep == {1 / 3, 1.0}

    worse = _group("f", 50, {"fsp": 0.80}, init=50) + _group("f", 150, {"scratch": 0.90}) + _converged("f", 150, 0.9)
    assert _claim(analyze(pd.DataFrame(worse), {"fast_optimization": fast}), "fast_optimization").verdict \
        == "contradicted"


def test_power_estimate_for_an_inconclusive_verdict() -> None:
    rows = _group("g", 100, {"fsp": 0.805, "scratch": 0.80}, spread=0.01) + _converged("g", 100)
    claim = _claim(_analyze(rows), "better_accuracy")
    assert claim.verdict == "inconclusive" and claim.seeds_needed is not None and claim.seeds_needed > 5
    main = claim.tests[0]
    n = claim.seeds_needed
    sd_t, sd_c = main.extra["treatment_sd"], main.extra["control_sd"]
    df = (sd_t**2 / n + sd_c**2 / n) ** 2 / ((sd_t**2 / n) ** 2 / (n - 1) + (sd_c**2 / n) ** 2 / (n - 1))
    assert sps.t.ppf(0.975, df) * math.sqrt((sd_t**2 + sd_c**2) / n) < abs(main.estimate)


def test_claims_json_is_the_same_in_a_fresh_process() -> None:
    code = ("import json, sys; sys.path.insert(0, 'tests'); import test_analysis as T, pandas as pd; "
            "from fspbench.analysis import analyze, claims_json; "
            "rows = T._group('g', 100, {'fsp': 0.8, 'scratch': 0.8}, spread=0.03) + T._converged('g', 100); "
            "print(json.dumps(claims_json(analyze(pd.DataFrame(rows), T.CLAIMS)), sort_keys=True))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    rows = _group("g", 100, {"fsp": 0.8, "scratch": 0.8}, spread=0.03) + _converged("g", 100)
    assert json.loads(out) == json.loads(json.dumps(claims_json(_analyze(rows)), sort_keys=True))


def test_ablation_answers_yes_no_inconclusive() -> None:
    rows = _group("paper", 100, {"fsp": 0.850, "scratch": 0.80}, init=30) + _converged("paper", 100)
    rows += _group("moved", 100, {"fsp": 0.830}, init=30)  # -2 points: the interval excludes 0
    rows += _group("same", 100, {"fsp": 0.8505}, init=30, spread=0.0005)  # within +-0.5 points
    rows += _group("noisy", 100, {"fsp": 0.853}, init=30, spread=0.02)  # too noisy to say
    spec = AblationSpec("paper", ("moved", "same", "noisy"), 100)
    abl = ablation(pd.DataFrame(rows), spec)
    assert abl is not None and abl.regime.converged is True
    answers = {a.group: a.changes_accuracy for a in abl.arms}
    assert answers == {"moved": "yes", "same": "no", "noisy": "inconclusive"}
    moved = next(a for a in abl.arms if a.group == "moved")
    assert moved.vs_reference.estimate == pytest.approx(-2.0, abs=0.3)
    assert moved.vs_scratch.estimate == pytest.approx(3.0, abs=0.3)
    assert moved.stage1_first == pytest.approx(1.0) and moved.stage1_last == pytest.approx(10 / 30)
    js = ablation_json(abl)
    assert [a["changes_accuracy"] for a in js["arms"]] == ["yes", "no", "inconclusive"]
    assert ablation(pd.DataFrame(rows), None) is None
