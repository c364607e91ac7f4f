"""Time to target with censoring (fspbench.survival) against hand computations, and fast_optimization's use of it."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from test_analysis import K, _arm, _claim_rows, _curve, _finals, spec

from fspbench import comparisons, survival
from fspbench.analysis import analyze, claims_json, final_runs
from fspbench.claims.fast_optimization import to_target_tests

# arm A: runs reach the target at 3, 5 and 8; one is censored at its budget 5, one at 10
A_HITS, A_BUDGETS = np.array([3.0, 5.0, np.nan, 8.0, np.nan]), np.array([10.0, 10.0, 5.0, 10.0, 10.0])
# product-limit by hand: at 3, 5 of 5 at risk, 1 event: S = 4/5; at 5, 4 at risk (the run censored at 5 is
# still at risk at 5), 1 event: S = 4/5 * 3/4 = 3/5; at 8, 2 at risk, 1 event: S = 3/5 * 1/2 = 3/10
A_STEPS = [(0.0, 1.0), (3.0, 0.8), (5.0, 0.6), (8.0, 0.3)]
# arm B: reached at 4, 6, 7 and 9, one censored at 10: S = 4/5, 3/5, 2/5, 1/5
B_HITS, B_BUDGETS = np.array([4.0, 6.0, 7.0, 9.0, np.nan]), np.full(5, 10.0)
B_STEPS = [(0.0, 1.0), (4.0, 0.8), (6.0, 0.6), (7.0, 0.4), (9.0, 0.2)]


def _area(steps: list[tuple[float, float]], horizon: float) -> float:
    """The area under a right-continuous step function given as (time, value from then on), from 0 to horizon."""
    ends = [t for t, _ in steps[1:]] + [math.inf]
    return sum(s * (min(end, horizon) - t) for (t, s), end in zip(steps, ends) if t < horizon)


def test_censored_runs_are_kept_at_their_budget() -> None:
    durations, events = survival.censored(A_HITS, A_BUDGETS)
    assert durations.tolist() == [3.0, 5.0, 5.0, 8.0, 10.0] and events.tolist() == [1, 1, 0, 1, 0]
    km = survival.kaplan_meier(durations, events)
    assert (km.n, km.reached, km.censored) == (5, 3, 2)
    assert km.median == 8.0  # the first time the hand product-limit falls to 0.5 or below (3/10 at 8)
    assert km.low <= km.median <= km.high
    # dropping the censored runs instead: 3 runs all reached, S = 2/3 at 3, 1/3 at 5: the median moves to 5
    dropped = survival.kaplan_meier(np.array([3.0, 5.0, 8.0]), np.ones(3, dtype=int))
    assert dropped.n == 3 and dropped.median == 5.0 != km.median
    # no budget at all (a run without a curve point): censored at 0, still counted
    d, e = survival.censored(np.array([np.nan, 2.0]), np.array([np.nan, 4.0]))
    assert d.tolist() == [0.0, 2.0] and e.tolist() == [0, 1]


def test_median_not_reached_when_fewer_than_half_reach_the_target() -> None:
    km = survival.kaplan_meier(*survival.censored(np.array([2.0, np.nan, np.nan]), np.full(3, 10.0)))
    assert (km.reached, km.censored) == (1, 2) and km.median == math.inf and km.high == math.inf


def test_rmst_is_the_area_under_the_hand_computed_step_function() -> None:
    a, b = survival.censored(A_HITS, A_BUDGETS), survival.censored(B_HITS, B_BUDGETS)
    assert _area(A_STEPS, 9.0) == pytest.approx(3 * 1.0 + 2 * 0.8 + 3 * 0.6 + 1 * 0.3)  # the helper itself
    for horizon in (2.0, 5.0, 9.0, 10.0):
        assert survival.rmst(*a, horizon) == pytest.approx(_area(A_STEPS, horizon))
        assert survival.rmst(*b, horizon) == pytest.approx(_area(B_STEPS, horizon))
    res = survival.time_to_target(A_HITS, np.where(A_BUDGETS == 10.0, 9.0, A_BUDGETS), B_HITS, B_BUDGETS)
    assert res.horizon == 9.0  # the smaller of the arms' largest budgets (9 and 10)
    assert res.rmst_diff == pytest.approx(_area(A_STEPS, 9.0) - _area(B_STEPS, 9.0))  # 6.7 - 7.0
    assert res.rmst_low <= res.rmst_diff <= res.rmst_high
    assert (res.treatment.n, res.treatment.censored, res.control.n, res.control.censored) == (5, 2, 5, 1)


def test_logrank_p_against_the_hand_built_statistic() -> None:
    # A reaches the target at 1 and 2, B at 3 and 4. At 1: 4 at risk (2 of A), 1 event: E_A = 1/2,
    # V = 1/2 * 1/2 * 3/3 = 1/4. At 2: 3 at risk (1 of A): E_A = 1/3, V = 1/3 * 2/3 * 2/2 = 2/9. At 3 and 4
    # no run of A is at risk: E_A = V = 0. O_A - E_A = 2 - 5/6 = 7/6, chi2 = (7/6)^2 / (17/36) = 49/17.
    p = survival.logrank_p(np.array([1.0, 2.0]), np.ones(2, dtype=int), np.array([3.0, 4.0]), np.ones(2, dtype=int))
    assert p == pytest.approx(math.erfc(math.sqrt(49 / 17 / 2)))  # chi-square with 1 df, scipy-free
    # a censored run of A at 2.5 stays at risk until then: at 1, 5 at risk (3 of A): E = 3/5, V = 3/5*2/5*4/4;
    # at 2, 4 at risk (2 of A): E = 1/2, V = 1/4; then none of A at risk. chi2 = (2 - 11/10)^2 / (6/25 + 1/4)
    p2 = survival.logrank_p(np.array([1.0, 2.0, 2.5]), np.array([1, 1, 0]), np.array([3.0, 4.0]),
                            np.ones(2, dtype=int))
    assert p2 == pytest.approx(math.erfc(math.sqrt(0.9 ** 2 / (6 / 25 + 1 / 4) / 2)))
    assert math.isnan(survival.logrank_p(np.array([5.0]), np.zeros(1, dtype=int), np.array([5.0]),
                                         np.zeros(1, dtype=int)))


def test_bootstrap_is_deterministic_and_resamples_pairs_together() -> None:
    first = survival.time_to_target(A_HITS, A_BUDGETS, B_HITS, B_BUDGETS, paired=True, resamples=500)
    again = survival.time_to_target(A_HITS, A_BUDGETS, B_HITS, B_BUDGETS, paired=True, resamples=500)
    assert first == again and "500 resamples, pairs resampled together" in first.interval
    other = survival.time_to_target(A_HITS, A_BUDGETS, B_HITS, B_BUDGETS, seed=1, paired=True, resamples=500)
    assert (other.rmst_low, other.rmst_high) != (first.rmst_low, first.rmst_high)  # the seed is what fixes it
    # identical arms: every paired resample's difference is 0; resampled on their own they are not
    same = survival.time_to_target(A_HITS, A_BUDGETS, A_HITS, A_BUDGETS, paired=True, resamples=500)
    assert (same.rmst_diff, same.rmst_low, same.rmst_high) == (0.0, 0.0, 0.0)
    apart = survival.time_to_target(A_HITS, A_BUDGETS, A_HITS, A_BUDGETS, paired=False, resamples=500)
    assert apart.rmst_low < 0 < apart.rmst_high
    with pytest.raises(ValueError, match="paired arms differ"):
        survival.bootstrap_rmst_diff(np.ones(2), np.ones(2, dtype=int), np.ones(3), np.ones(3, dtype=int), 1.0,
                                     paired=True)


def _censored_rows() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """FSP (stage 1 of 50 steps) and scratch at 150 main steps, 5 seeds each; FSP seed 2 ends below the target."""
    rows: list[dict] = []
    for i in range(5):
        rows += _curve(f"f-fsp-{i}", "fsp", "f", 150, i, list(np.linspace(0.5, 0.80 if i == 2 else 0.90, 15)),
                       init=50)
        rows += _curve(f"f-scratch-{i}", "scratch", "f", 150, i, list(np.linspace(0.5, 0.90 - 0.002 * i, 15)))
    df = pd.DataFrame(rows)
    runs = final_runs(df)
    pick = {m: runs[runs["method"] == m].sort_values("seed_index") for m in ("fsp", "scratch")}
    return df, pick["fsp"], pick["scratch"]


def test_to_target_tests_keep_a_censored_run() -> None:
    df, fsp, scratch = _censored_rows()
    tests = {t.name: t for t in to_target_tests(df, fsp, scratch, 0.85, "label", paired=True)}
    assert set(tests) == {"to_target_main_step", "to_target_step", "to_target_wall_time_s"}
    main = tests["to_target_main_step"]
    assert main.n == 10 and (main.treatment_reached, main.treatment_censored) == (4, 1)
    assert (main.control_reached, main.control_censored) == (5, 0)
    assert math.isnan(main.estimate) and math.isnan(main.treatment_mean or math.nan)  # ratio omitted
    assert main.control_mean is not None and main.control_mean > 0
    assert main.p_value is not None and 0 <= main.p_value <= 1
    assert main.rmst_horizon == 150.0 and tests["to_target_step"].rmst_horizon == 150.0  # scratch: no stage 1
    assert main.rmst_low is not None and main.rmst_high is not None
    assert main.rmst_low <= (main.rmst_diff or math.nan) <= main.rmst_high
    assert "pairs resampled together" in (main.rmst_interval or "")
    # the censored run enters at its budget: recompute the arms from the curves by hand
    hits = [comparisons.steps_to_target(df[df["run_id"] == r].sort_values("step"), 0.85)["main_step"]
            for r in fsp["run_id"]]
    assert math.isnan(hits[2]) and not any(math.isnan(h) for i, h in enumerate(hits) if i != 2)
    ref = survival.time_to_target(np.array(hits), np.full(5, 150.0),
                                  np.array([comparisons.steps_to_target(df[df["run_id"] == r].sort_values("step"),
                                                                        0.85)["main_step"] for r in scratch["run_id"]]),
                                  np.full(5, 150.0), paired=True)
    assert main.treatment_km_median == ref.treatment.median and main.rmst_diff == ref.rmst_diff
    assert (main.rmst_low, main.rmst_high) == (ref.rmst_low, ref.rmst_high)
    # the JSON keeps them (inf as null) and is the same on a second computation
    again = to_target_tests(df, fsp, scratch, 0.85, "label", paired=True)
    one = json.dumps([comparisons.test_json(t) for t in tests.values()], sort_keys=True)
    assert one == json.dumps([comparisons.test_json(t) for t in again], sort_keys=True)
    extra = comparisons.test_json(main)["extra"]
    assert extra["treatment_censored"] == 1 and extra["rmst_diff"] == round(ref.rmst_diff, 6)
    assert comparisons.test_json(main)["estimate"] is None


def test_all_reached_keeps_the_ratio_beside_the_survival_figures() -> None:
    df, fsp, scratch = _censored_rows()
    main = next(t for t in to_target_tests(df, fsp, scratch, 0.75, "label") if t.name == "to_target_main_step")
    assert (main.treatment_censored, main.control_censored) == (0, 0)
    assert main.estimate > 0 and main.ci[0] <= main.estimate <= main.ci[1]
    assert main.rmst_interval is not None and "each arm resampled on its own" in main.rmst_interval


def test_fast_optimization_claim_reports_the_censored_run() -> None:
    fast = spec("fast_optimization", "f", 150, short_budget=50, margin=0.5)
    fsp = _finals(0.905)
    fsp[1] = 0.80  # never reaches 0.99 x scratch's mean: censored, not dropped
    rows = _claim_rows("f", 150, fsp, _finals(0.90, seed=1), init=50)
    rows += _arm("f", "fsp", 50, _finals(0.899, seed=2), init=50) + _arm("f", "scratch", 50, _finals(0.85, K))
    a = analyze(pd.DataFrame(rows), {"fast_optimization": fast})
    by = {t.name: t for t in a.claims[0].tests}
    main = by["to_target_main_step"]
    assert main.n == 10 and main.treatment_censored == 1 and main.treatment_reached == 4
    assert math.isnan(main.estimate) and main.rmst_diff is not None and math.isfinite(main.rmst_diff)
    js = claims_json(a)["fast_optimization"]["tests"]
    main_js = next(t for t in js if t["name"] == "to_target_main_step")
    assert main_js["estimate"] is None and main_js["p_value"] is not None
    assert "pairs" not in main_js["extra"]["rmst_interval"]  # an independent-seeding claim
