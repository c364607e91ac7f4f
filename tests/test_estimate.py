"""The time estimate: evaluation points as train_run makes them, the simulated schedule by hand (trial
actors' starts included), the median of the calibration's rounds, the fixed costs and Ray's share of the
CPU added up by hand, the per-machine calibration cache (alone and beside copies of the work), and
`fspbench run --dry-run` through the real command. Speed figures are tools/estimate_check.py's, not a test's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import run_cli, tiny

import fspbench.estimate as est
from fspbench.cluster import Node
from fspbench.config import RunConfig
from fspbench.estimate import (
    Calibration,
    calibrate,
    estimate_from,
    eval_points,
    grid_kinds,
    median,
    per_machine,
    ray_slowdown,
    run_parts,
    run_seconds,
    simulate,
)
from fspbench.grid import GridRun, load_benchmark
from fspbench.train import train_run

TINY_BENCH = Path(__file__).parent / "benchmarks" / "tiny.toml"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSPBENCH_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.slow
def test_eval_points_are_those_train_run_makes(tmp_path: Path, teacher_record: Path) -> None:
    # two stages (FSP: 3 init steps, then 5), a point every 2 steps and at each stage's end
    cfg = tiny(method="fsp", teacher=str(teacher_record), steps=5, init_steps=3, eval_every=2, eval_subset=50)
    rec = train_run(cfg, tmp_path)
    points = eval_points(cfg)
    assert len(points) == len(rec["curve"]) == 5  # steps 2, 3 (end of stage 1), 4, 6 and 8 (final)
    assert [n for n, final in points if not final] == [row["eval_images"] for row in rec["curve"][:-1]]
    final_images, final = points[-1]
    # the final point scores the full test set and the curve's own 50 images
    assert final and final_images == rec["curve"][-1]["eval_images"] + 50


def _children() -> list[str]:
    """Process ids of this process's children (Linux)."""
    return [pid for t in Path(f"/proc/{os.getpid()}/task").iterdir() for pid in (t / "children").read_text().split()]


def _run(run_id: str, teacher: str = "") -> GridRun:
    return GridRun(run_id, RunConfig(), "student" if teacher else "teacher", "g", teacher)


def test_simulated_schedule_by_hand() -> None:
    runs = [_run("A"), _run("B"), _run("A1", "A"), _run("A2", "A")]
    secs = {"A": 10.0, "B": 8.0, "A1": 5.0, "A2": 5.0}
    # 2 slots: A and B at 0; A1 and A2 wait for A (10) and end at 15
    assert simulate(runs, secs, 2) == 15.0
    # 1 slot: A (chain 15) first, then B (8) before A1 and A2 (5 each): 10 + 8 + 5 + 5
    assert simulate(runs, secs, 1) == 28.0
    # B already running takes its slot first whatever its priority: B 8, then A 18, A1 23, A2 28
    assert simulate(runs, secs, 1, first=["B"]) == 28.0
    assert simulate(runs, {**secs, "B": 30.0}, 1, first=["B"]) == 50.0
    assert simulate([], secs, 2) == 0.0


def test_simulated_schedule_counts_each_new_trial_actor() -> None:
    runs = [_run("A"), _run("B"), _run("A1", "A"), _run("A2", "A")]
    secs = {"A": 10.0, "B": 8.0, "A1": 5.0, "A2": 5.0}
    # A and B start two actors (1 s each); A1 and A2 reuse them when A (11) has ended and B (9) is idle
    assert simulate(runs, secs, 2, actor_start_s=1.0) == 16.0
    # one slot: one actor for all four runs
    assert simulate(runs, secs, 1, actor_start_s=1.0) == 29.0
    fan = [_run("A"), _run("A1", "A"), _run("A2", "A"), _run("A3", "A")]
    fan_s = {"A": 10.0, "A1": 5.0, "A2": 5.0, "A3": 5.0}
    # A ends at 11 on the only actor; A1 reuses it (16), A2 and A3 each wait for a new one (17)
    assert simulate(fan, fan_s, 3, actor_start_s=1.0) == 17.0
    # runs already running have their actors
    assert simulate(runs, secs, 2, first=["A", "B"], actor_start_s=1.0) == 15.0


class _FakeMachine:
    """Works whose calls advance a fake clock by a set number of seconds per call, in order."""

    def __init__(self, costs: dict[str, list[float]]) -> None:
        self.now, self.order, self.costs = 0.0, [], {k: iter(v) for k, v in costs.items()}

    def clock(self) -> float:
        return self.now

    def work(self, name: str, units: float = 1.0) -> est.Work:
        def run() -> None:
            self.order.append(name)
            self.now += next(self.costs[name])

        return est.Work(run, units, lambda: None)


def test_rounds_are_interleaved_and_a_kind_takes_their_median() -> None:
    # a slow spell of the machine (5 s) falls once on each kind
    m = _FakeMachine({"a": [0.1, 5.0, 0.3], "b": [0.2, 0.2, 5.2]})
    times = est.interleaved_times([m.work("a"), m.work("b")], rounds=3, clock=m.clock)
    assert m.order == ["a", "b", "a", "b", "a", "b"]  # one call of each kind per round, in turn
    assert times[0] == pytest.approx([0.1, 5.0, 0.3]) and times[1] == pytest.approx([0.2, 0.2, 5.2])
    assert median(times[0]) == pytest.approx(0.3) and median(times[1]) == pytest.approx(0.2)  # means: 1.8, 1.87
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        median([])


def test_a_calibration_warms_up_then_times_its_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    rounds, warmup = est.CALIBRATION_ROUNDS, est.WARMUP_STEPS
    # warm-up calls are slow (10 s) and not timed; an evaluation's call scores 128 images
    m = _FakeMachine({"step": [10.0] * warmup + [0.2] * (rounds - 1) + [9.0],
                      "eval": [10.0] * warmup + [0.064] * rounds})
    kinds = [est.Kind("step", RunConfig(), None, 0), est.Kind("eval", RunConfig(), None, -1)]
    monkeypatch.setattr(est, "_workload", lambda k: m.work(k.key, 1.0 if k.stage >= 0 else 128.0))
    step_s, image_s = est._time_kinds(kinds, clock=m.clock)
    assert step_s == pytest.approx(0.2) and image_s == pytest.approx(0.0005)
    assert m.order == ["step"] * warmup + ["eval"] * warmup + ["step", "eval"] * rounds


def test_ray_takes_idle_cores_first() -> None:
    assert ray_slowdown(cores=2, busy=2, ray_cpu=0.1) == pytest.approx(2 / 1.9)  # every core booked
    assert ray_slowdown(cores=4, busy=2, ray_cpu=0.1) == 1.0  # two idle cores absorb it
    assert ray_slowdown(cores=2, busy=1.95, ray_cpu=0.1) == pytest.approx(1.95 / 1.9)  # 0.05 of it idle
    assert ray_slowdown(cores=2, busy=0, ray_cpu=0.1) == 1.0


def test_trials_beside_each_other_follow_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import fspbench.cluster

    monkeypatch.setattr(fspbench.cluster, "this_machine", lambda: [Node("local", 4.0, 0.0)])
    assert per_machine(8, {"cpu": 1.0, "gpu": 0.0}) == 4  # 8 slots over a cluster: 4 on each 4-core node
    assert per_machine(2, {"cpu": 1.0, "gpu": 0.0}) == 2
    assert per_machine(8, {"cpu": 2.0, "gpu": 0.0}) == 2
    assert per_machine(8, {"cpu": 8.0, "gpu": 0.0}) == 1  # none fits here: the trials run elsewhere, alone


def test_a_process_connected_to_ray_starts_no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: False  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert not est.ray_is_up()
    fake.is_initialized = lambda: True  # type: ignore[attr-defined]
    assert est.ray_is_up()
    monkeypatch.delitem(sys.modules, "ray")
    assert not est.ray_is_up()


def _fake_calibration(runs: list[GridRun], teachers: dict[str, RunConfig], alongside: int) -> Calibration:
    seconds = {k.key: (0.001 if k.stage < 0 else 0.1) for k in grid_kinds(runs, teachers)}
    return Calibration("fake", seconds, measured_s=7.5, measured=len(seconds), cached=0, alongside=alongside)


def test_the_estimate_adds_up_its_fixed_costs(tmp_path: Path) -> None:
    bench = load_benchmark(str(TINY_BENCH), tmp_path / "results")
    teachers = {t.run_id: t.config for t in bench.teachers}
    runs = bench.runs
    cal = _fake_calibration(runs, teachers, alongside=1)
    first = estimate_from(runs, teachers, cal, slots=2, threads=1, cores=2.0)
    again = estimate_from(runs, teachers, cal, slots=2, threads=1, cores=2.0, include_ray_start=False)
    slow = ray_slowdown(2.0, 2.0)
    assert first.slowdown == pytest.approx(slow)
    for r in runs:  # by hand: steps and images at the calibrated speeds, Ray's share, then the fixed costs
        stages, _, points = run_parts(r, teachers)
        by_hand = ((sum(n for _, n in stages) * 0.1 + sum(points) * 0.001) * slow
                   + len(points) * est.POINT_OVERHEAD_S + est.TRIAL_OVERHEAD_S)
        assert first.run_s[r.run_id] == pytest.approx(by_hand)
        assert first.run_s[r.run_id] == pytest.approx(run_seconds(r, teachers, cal.seconds, slow))
    once = est.PREPARE_S + est.RAY_START_S  # once per invocation
    assert first.startup_s == pytest.approx(7.5 + once + est.TUNE_START_S + est.TUNE_END_S)
    assert first.startup_s - again.startup_s == pytest.approx(once) == pytest.approx(est.PREPARE_S + est.ray_start_s())
    assert again.startup_s == pytest.approx(7.5 + est.tune_run_startup_s())
    # the seconds the estimate took, when given, replace the calibration's
    spent = estimate_from(runs, teachers, cal, slots=2, threads=1, cores=2.0, spent_s=10.0)
    assert spent.startup_s == pytest.approx(first.startup_s + 2.5)
    schedule = simulate(runs, first.run_s, 2, actor_start_s=est.ACTOR_START_S)
    assert first.wall_s == pytest.approx(first.startup_s + schedule)
    assert first.schedule_s == pytest.approx(schedule)
    summary = first.summary()
    assert summary["wall_time_s"] == round(first.wall_s, 1) and summary["startup_s"] == round(first.startup_s, 1)
    assert summary["alongside"] == 1
    # one slot: the teacher, then its two students, one after the other on one actor
    one = estimate_from(runs, teachers, _fake_calibration(runs, teachers, 0), slots=1, threads=1, cores=2.0)
    assert one.slowdown == 1.0  # one trial on two cores: Ray runs on the idle one
    assert one.schedule_s == pytest.approx(sum(one.run_s.values()) + est.ACTOR_START_S)


def test_a_machines_fixed_cost_scale_scales_every_fixed_cost_and_no_work(tmp_path: Path) -> None:
    bench = load_benchmark(str(TINY_BENCH), tmp_path / "results")
    teachers = {t.run_id: t.config for t in bench.teachers}
    runs = bench.runs
    ref = _fake_calibration(runs, teachers, alongside=0)
    half = Calibration("fake", ref.seconds, measured_s=7.5, measured=ref.measured, cached=0, fixed_scale=0.5)
    a = estimate_from(runs, teachers, ref, slots=1, threads=1, cores=2.0)
    b = estimate_from(runs, teachers, half, slots=1, threads=1, cores=2.0)
    fixed = est.PREPARE_S + est.RAY_START_S + est.TUNE_START_S + est.TUNE_END_S
    assert a.startup_s - b.startup_s == pytest.approx(fixed / 2)  # the calibration's 7.5 s stays whole
    for r in runs:
        _, _, points = run_parts(r, teachers)
        overhead = len(points) * est.POINT_OVERHEAD_S + est.TRIAL_OVERHEAD_S
        assert a.run_s[r.run_id] - b.run_s[r.run_id] == pytest.approx(overhead / 2)
    # one slot, one actor: the schedule is the runs' seconds and one actor's start
    assert b.schedule_s == pytest.approx(sum(b.run_s.values()) + est.ACTOR_START_S / 2)
    assert b.summary()["fixed_cost_scale"] == 0.5


@pytest.mark.slow
def test_calibration_is_cached_per_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # timings are taken again when other processes kept the machine busy (tests/test_measured.py): not here
    monkeypatch.setattr(est, "BUSY_CORES", float("inf"))
    before = set(_children())  # e.g. the S3 server other tests of the session started
    bench = load_benchmark(str(TINY_BENCH), tmp_path / "results")
    teachers = {t.run_id: t.config for t in bench.teachers}
    kinds = grid_kinds(bench.runs, teachers)
    first = calibrate(kinds, threads=1)
    assert first.measured == len(kinds) > 0 and first.cached == 0
    assert all(s > 0 for s in first.seconds.values())
    second = calibrate(kinds, threads=1)
    assert second.measured == 0 and second.cached == len(kinds) and second.seconds == first.seconds
    # the machine's fixed-cost scale, a fresh interpreter's torch import over the reference's, is cached too
    assert 0.05 < first.fixed_scale < 20 and second.fixed_scale == first.fixed_scale
    other = calibrate(kinds[:1], threads=2)  # another thread count is another machine entry
    assert other.measured == 1
    beside = calibrate(kinds[:2], threads=1, alongside=1)  # so is another count of trials beside it
    assert beside.measured == 2 and beside.alongside == 1 and "alongside=1" in beside.machine
    assert all(s > 0 for s in beside.seconds.values())
    assert set(_children()) <= before  # the processes that ran beside it have ended (a session's servers stay)
    assert calibrate(kinds[:2], threads=1, alongside=1).measured == 0
    # a run's seconds grow with its steps
    r = bench.runs[0]
    longer = GridRun(r.run_id, r.config.replace(steps=r.config.steps * 2), r.role, r.group, r.teacher_run_id)
    assert run_seconds(longer, teachers, first.seconds) > run_seconds(r, teachers, first.seconds)


@pytest.mark.slow
def test_dry_run_prints_the_estimate_and_the_runs_and_writes_nothing(tmp_path: Path) -> None:
    results = tmp_path / "results"
    env = {"FSPBENCH_CACHE_DIR": str(tmp_path / "cache")}
    res = run_cli("run", str(TINY_BENCH), "--results", str(results), "--dry-run", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    bench = load_benchmark(str(TINY_BENCH), results)
    assert all(r.run_id in res.stdout for r in bench.runs)
    assert "[fspbench] estimate:" in res.stdout and "calibrated in" in res.stdout
    assert not results.exists()
    again = run_cli("run", str(TINY_BENCH), "--results", str(results), "--dry-run", env=env)
    cache = json.loads((tmp_path / "cache" / "calibration.json").read_text())
    busy = any(k.startswith(est.BUSY_PREFIX) and v > est.BUSY_CORES for entry in cache.values()
               if isinstance(entry, dict) for k, v in entry.items())
    # the second dry run reads the cache, unless other processes kept the machine busy while the first timed
    # (then it times again: tests/test_measured.py)
    assert "read from" in again.stdout or (busy and "calibrated in" in again.stdout)
    assert json.loads((tmp_path / "cache" / "calibration.json").read_text())["version"] == est.CACHE_VERSION
