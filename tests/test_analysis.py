"""Claim statistics on constructed runs tables where the truth is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fspbench.analysis import analyze, claims_json, final_runs, steps_to_target

ACC = {"fsp": 0.0, "scratch": 0.0}


def _curve(run_id: str, method: str, group: str, budget: int, seed: int, accs: list[float], init: int = 0,
           status: str = "ok", step_every: int = 10) -> list[dict]:
    """Rows of one run: ``init`` stage-1 steps (chance accuracy) then one row per value of ``accs``."""
    rows = []
    for k in range(init // step_every):
        s = (k + 1) * step_every
        rows.append(dict(stage="init", step=s, stage_step=s, test_acc=0.1, wall_time_s=2.0 * s))
    for k, acc in enumerate(accs):
        s = (k + 1) * step_every
        rows.append(dict(stage="main", step=init + s, stage_step=s, test_acc=acc, wall_time_s=2.0 * init + s))
    for r in rows:
        r.update(run_id=run_id, role="student", method=method, arch="resnet8", task="fashion-mnist", seed=seed,
                 teacher_run_id="t" if method != "scratch" else "", images_seen=r["step"] * 64, train_loss=1.0,
                 test_loss=1.0, status=status, eval_images=1000, group=group, budget=budget)
    return rows


def _group(group: str, budget: int, means: dict[str, float], seeds: int = 5, spread: float = 0.002,
           init: int = 0) -> list[dict]:
    rows = []
    rng = np.random.default_rng(len(group) + budget)
    for method, mean in means.items():
        for s in range(seeds):
            final = mean + spread * rng.standard_normal()
            accs = list(np.linspace(0.5, final, budget // 10))
            rows += _curve(f"{group}-{method}-{budget}-{s}", method, group, budget, s, accs,
                           init=init if method == "fsp" else 0)
    return rows


CLAIMS = {"better_accuracy": {"group": "g", "arch": "resnet8", "budget": 100},
          "cross_task_transfer": {"group": "x", "arch": "resnet8", "budget": 100}}


def _analyze(rows: list[dict], claims: dict = CLAIMS):
    return analyze(pd.DataFrame(rows), claims, random_state=0)


def _claim(a, key):
    return next(c for c in a.claims if c.key == key)


def test_clear_improvement_supported_harm_contradicted_overlap_inconclusive() -> None:
    rows = _group("g", 100, {"fsp": 0.85, "scratch": 0.80})  # +5 points, tiny noise
    rows += _group("x", 100, {"fsp": 0.70, "scratch": 0.78})  # -8 points
    a = _analyze(rows)
    better = _claim(a, "better_accuracy")
    assert better.verdict == "supported"
    assert better.tests[0].estimate == pytest.approx(5.0, abs=0.5)
    assert better.tests[0].ci[0] > 0 and better.tests[0].p_value < 0.01
    assert better.tests[0].p_improvement == pytest.approx(1.0)
    assert _claim(a, "cross_task_transfer").verdict == "contradicted"

    overlap = []  # the same five accuracies on both sides, in another order
    for s, (f, c) in enumerate(zip([0.78, 0.80, 0.82, 0.79, 0.81], [0.81, 0.79, 0.80, 0.82, 0.78])):
        overlap += _curve(f"f{s}", "fsp", "g", 20, s, [0.5, f]) + _curve(f"c{s}", "scratch", "g", 20, s, [0.5, c])
    assert _claim(_analyze(overlap, {"better_accuracy": CLAIMS["better_accuracy"] | {"budget": 20}}),
                  "better_accuracy").tests[0].estimate == pytest.approx(0.0, abs=1e-9)
    assert _claim(_analyze(overlap, {"better_accuracy": CLAIMS["better_accuracy"] | {"budget": 20}}),
                  "better_accuracy").verdict == "inconclusive"


def test_missing_group_or_claim_is_not_run() -> None:
    rows = _group("g", 100, {"fsp": 0.85, "scratch": 0.80})
    a = _analyze(rows)
    assert _claim(a, "cross_task_transfer").verdict == "not_run"  # no runs in group x
    assert _claim(a, "fast_optimization").verdict == "not_run"  # not declared
    assert claims_json(a)["fast_optimization"] == {
        "verdict": "not_run", "rule": _claim(a, "fast_optimization").rule,
        "summary": "the benchmark declares no comparison for this claim", "tests": []}


def test_estimate_matches_hand_computation_and_run_ids_listed() -> None:
    rows = []
    for s, (f, c) in enumerate([(0.9, 0.8), (0.8, 0.7), (0.7, 0.75)]):
        rows += _curve(f"f{s}", "fsp", "g", 20, s, [0.5, f])
        rows += _curve(f"c{s}", "scratch", "g", 20, s, [0.5, c])
    test = _claim(_analyze(rows, {"better_accuracy": CLAIMS["better_accuracy"] | {"budget": 20}}),
                  "better_accuracy").tests[0]
    assert test.estimate == pytest.approx(100 * ((0.9 + 0.8 + 0.7) / 3 - (0.8 + 0.7 + 0.75) / 3))
    assert test.treatment_runs == ("f0", "f1", "f2") and test.control_runs == ("c0", "c1", "c2")
    assert test.n == 6
    # by hand, ties count 1/2: 0.9 beats all 3; 0.8 beats 0.7 and 0.75 and ties 0.8; 0.7 ties 0.7 -> 6 of 9
    assert test.p_improvement == pytest.approx(6 / 9)


def test_diverged_run_is_counted_as_failure() -> None:
    rows = _group("g", 100, {"fsp": 0.85, "scratch": 0.80})
    rows += _curve("g-fsp-diverged", "fsp", "g", 100, 9, [0.5, 0.1], status="diverged")
    rows += _curve("g-scratch-failed", "scratch", "g", 100, 9, [], status="failed")
    rows.append({**rows[-1], "step": 0} if rows[-1:] else {})  # a failed run keeps a row without metrics
    df = pd.DataFrame(rows)
    failed_row = _curve("g-scratch-failed", "scratch", "g", 100, 9, [0.0])[0] | {"test_acc": math.nan,
                                                                              "status": "failed", "step": 0}
    df = pd.concat([df[df.run_id != "g-scratch-failed"], pd.DataFrame([failed_row])], ignore_index=True)
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


def test_fast_optimization_non_inferiority_and_ratios() -> None:
    fast = {"group": "f", "arch": "resnet8", "short_budget": 50, "full_budget": 150, "margin": 0.5,
            "target": 0.99}
    rows = _group("f", 50, {"fsp": 0.90}, init=50)
    rows += _group("f", 150, {"scratch": 0.90})
    rows += _group("f", 50, {"scratch": 0.85})
    a = analyze(pd.DataFrame(rows), {"fast_optimization": fast}, random_state=0)
    claim = _claim(a, "fast_optimization")
    assert claim.verdict == "supported"
    by_name = {t.name: t for t in claim.tests}
    assert by_name["fsp_short_vs_scratch_short"].estimate == pytest.approx(5.0, abs=0.5)
    assert a.targets["fast_optimization"] == pytest.approx(0.99 * 0.90, abs=0.01)
    main = by_name["to_target_main_step"]
    # the fsp curve rises over 5 points, scratch's over 15: main-task steps to target ~ 1/3
    assert main.estimate == pytest.approx(50 / 150, abs=0.08)
    assert by_name["to_target_step"].estimate > main.estimate  # stage-1 steps counted
    assert "main-task steps" in by_name["fsp_short_vs_scratch_full"].budget

    worse = _group("f", 50, {"fsp": 0.80}, init=50) + _group("f", 150, {"scratch": 0.90})
    assert _claim(analyze(pd.DataFrame(worse), {"fast_optimization": fast}), "fast_optimization").verdict \
        == "contradicted"


def test_claims_json_is_deterministic() -> None:
    rows = _group("g", 100, {"fsp": 0.80, "scratch": 0.80}, spread=0.03)
    assert claims_json(_analyze(rows)) == claims_json(_analyze(rows))
