"""The order of a grid's runs: each student starts as soon as its own teacher has ended ok.

The searcher is driven by hand here (as Tune drives it: suggest, then on_trial_complete), and
once through the real command on the shared Ray, where a student must start while another,
longer teacher is still training. The time estimate's simulation follows the same policy
(fspbench.schedule): driven on a clock, the searcher ends where the simulation says.
"""

from __future__ import annotations

import heapq
import json
from datetime import datetime
from pathlib import Path

import pytest
from helpers import run_cli

from fspbench.config import RunConfig
from fspbench.estimate import simulate
from fspbench.grid import GridRun
from fspbench.schedule import ReadyRuns, chain_priority, next_run
from fspbench.searcher import TeacherFirst

ORDER = str((Path(__file__).parent / "benchmarks" / "order.toml").resolve())


def _run(run_id: str, teacher: str = "") -> GridRun:
    return GridRun(run_id=run_id, config=RunConfig(), role="student" if teacher else "teacher",
                   group=run_id, teacher_run_id=teacher)


# two teachers, a long one (A) and a short one (B), each with students, and a scratch run
COST = {"A": 100.0, "A1": 10.0, "B": 5.0, "B1": 30.0, "B2": 20.0, "S": 40.0}
RUNS = [_run("A"), _run("B"), _run("S"), _run("A1", "A"), _run("B1", "B"), _run("B2", "B")]


def _cost(run: GridRun) -> float:
    return COST[run.run_id]


def _order(status: dict[str, str], runs: list[GridRun] = RUNS) -> tuple[TeacherFirst, list[tuple[str, str]]]:
    blocked: list[tuple[str, str]] = []
    order = TeacherFirst(runs, _cost, lambda rid: status.get(rid, "missing"),
                         lambda run, st: blocked.append((run.run_id, st)))
    return order, blocked


def test_chain_priority_by_hand() -> None:
    # a teacher's priority: its own cost plus its costliest student's (B: 5 + 30, not 5 + 30 + 20)
    assert chain_priority(RUNS, _cost) == {"A": 110.0, "B": 35.0, "S": 40.0, "A1": 10.0, "B1": 30.0, "B2": 20.0}


def test_next_run_by_hand() -> None:
    prio = chain_priority(RUNS, _cost)
    assert next_run(RUNS, prio).run_id == "A"  # the longest chain
    assert next_run([r for r in RUNS if r.run_id in ("B1", "S")], prio).run_id == "S"
    assert next_run(RUNS, prio, running={"B2"}).run_id == "B2"  # a run already running keeps its slot
    assert next_run(RUNS, {**prio, "S": 110.0}).run_id == "A"  # a tie: the run ready first
    assert next_run([], prio) is None


def _drive(runs: list[GridRun], cost: dict[str, float], slots: int) -> float:
    """Drive TeacherFirst as Tune does on ``slots`` slots, each trial lasting its run's cost; its end time."""
    order = TeacherFirst(runs, lambda r: cost[r.run_id], lambda rid: "ok", lambda run, st: None)
    now, live, n = 0.0, [], 0  # live: (end time, run id, trial id)
    while True:
        while len(live) < slots and isinstance(got := order.suggest(f"t{n}"), dict):
            heapq.heappush(live, (now + cost[got["run_id"]], got["run_id"], f"t{n}"))
            n += 1
        if not live:
            assert order.suggest(f"t{n}") == TeacherFirst.FINISHED
            return now
        now, _, trial = heapq.heappop(live)
        order.on_trial_complete(trial)


@pytest.mark.parametrize("slots", [1, 2, 3, 4])
def test_the_estimate_simulates_the_order_the_searcher_hands_out(slots: int) -> None:
    assert simulate(RUNS, COST, slots) == _drive(RUNS, COST, slots)
    # a second student of the long teacher, a second scratch run
    more, cost = [*RUNS, _run("A2", "A"), _run("S2")], {**COST, "A2": 60.0, "S2": 55.0}
    assert simulate(more, cost, slots) == _drive(more, cost, slots)


def test_student_starts_when_its_teacher_ends_not_when_all_teachers_do() -> None:
    status: dict[str, str] = {}
    order, blocked = _order(status)
    first, second, third = (order.suggest(f"t{i}") for i in range(3))
    assert [first, second, third] == [{"run_id": "A"}, {"run_id": "S"}, {"run_id": "B"}]
    assert order.suggest("t3") is None  # only students of running teachers are left: wait, not finish
    status["B"] = "ok"
    order.on_trial_complete("t2")  # B ends while A still trains
    assert order.suggest("t4") == {"run_id": "B1"}  # costlier student first
    assert order.suggest("t5") == {"run_id": "B2"}
    assert order.suggest("t6") is None  # A1 still waits for A
    status["A"] = "ok"
    order.on_trial_complete("t0")
    assert order.suggest("t7") == {"run_id": "A1"}
    assert order.suggest("t8") == TeacherFirst.FINISHED
    assert blocked == [] and order.blocked == []


@pytest.mark.parametrize("teacher_status", ["diverged", "failed", "missing"])
def test_students_of_a_teacher_that_did_not_end_ok_are_blocked(teacher_status: str) -> None:
    status: dict[str, str] = {}
    order, blocked = _order(status)
    handed = [order.suggest(f"t{i}")["run_id"] for i in range(3)]
    if teacher_status != "missing":  # missing: a trial that errored before writing its record
        status["B"] = teacher_status
    order.on_trial_complete(f"t{handed.index('B')}", error=teacher_status != "diverged")
    assert blocked == [("B1", teacher_status), ("B2", teacher_status)] and order.blocked == ["B1", "B2"]
    status["A"] = "ok"
    order.on_trial_complete(f"t{handed.index('A')}")
    assert order.suggest("t9") == {"run_id": "A1"}
    assert order.suggest("t10") == TeacherFirst.FINISHED


def test_teachers_finished_before_are_read_at_the_start() -> None:
    # a resumed grid: teacher A ended ok earlier, teacher B diverged earlier; only students remain
    order, blocked = _order({"A": "ok", "B": "diverged"}, [r for r in RUNS if r.teacher_run_id])
    assert blocked == [("B1", "diverged"), ("B2", "diverged")]
    assert order.suggest("t0") == {"run_id": "A1"}
    assert order.suggest("t1") == TeacherFirst.FINISHED


@pytest.mark.slow
def test_no_barrier_between_teachers_and_students_on_ray(ray_cluster, tmp_path: Path) -> None:
    results = tmp_path / "order"
    res = run_cli("run", ORDER, "--results", str(results), "--address", ray_cluster["address"], "--quiet",
                  env=ray_cluster["env"])
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]  # 1: the grid has a failed run
    recs = [json.loads(p.read_text()) for p in (results / "runs").glob("*.json")]
    teachers = {r["seed"]: r for r in recs if r["role"] == "teacher"}
    long_teacher, short_teacher, bad_teacher = teachers[0], teachers[1], teachers[2]
    (short_student,) = [r for r in recs if r["teacher_run_id"] == short_teacher["run_id"]]
    at = datetime.fromisoformat
    # the short teacher's student trained while the 600-step teacher was still training
    assert at(short_teacher["finished_at"]) <= at(short_student["started_at"])
    assert at(short_student["finished_at"]) < at(long_teacher["finished_at"])
    # the diverged teacher's student is recorded as failed, with the reason, and never trained
    (blocked,) = [r for r in recs if r["status"] == "failed"]
    assert blocked["error"] == f"teacher {bad_teacher['run_id']} ended with status diverged"
    assert bad_teacher["status"] == "diverged" and not blocked["curve"]
    grid = json.loads((results / "grid.json").read_text())
    assert grid["runs"] == {"total": 5, "ok": 3, "diverged": 1, "failed": 1, "not_run": 0, "skipped": 0}
    assert grid["trained_runs"] == 4  # the blocked student is not counted as trained
    assert "not started, its teacher ended with status diverged" in res.stdout

    # a rerun trains nothing: the diverged teacher is finished, its student stays failed without Ray
    bad_text = (results / "runs" / f"{bad_teacher['run_id']}.json").read_text()
    again = run_cli("run", ORDER, "--results", str(results), "--address", ray_cluster["address"], "--quiet",
                    env=ray_cluster["env"])
    assert again.returncode == 1, again.stdout[-2000:] + again.stderr[-2000:]
    assert "0 to train" in again.stdout and "0 trained now" in again.stdout
    assert (results / "runs" / f"{bad_teacher['run_id']}.json").read_text() == bad_text
    assert json.loads((results / "grid.json").read_text())["runs"]["failed"] == 1


def test_ready_runs_pop_in_next_runs_order_on_a_large_random_grid() -> None:
    """ReadyRuns keeps its ready runs in a heap: its pops against next_run over the list in ready order,
    with ties in priority, runs already running and teachers ending in a random order."""
    import random

    rng = random.Random(7)
    teachers = [_run(f"T{i}") for i in range(60)]
    runs = teachers + [_run(f"T{i}-S{j}", f"T{i}") for i in range(60) for j in range(rng.randint(0, 4))]
    runs += [_run(f"X{i}") for i in range(40)]
    priority = {r.run_id: float(rng.randint(1, 8)) for r in runs}  # few values: many ties
    running = {r.run_id for r in rng.sample(runs, 10) if not r.teacher_run_id}
    ready = ReadyRuns(runs, priority, running=running)
    by_hand = [r for r in runs if not r.teacher_run_id]  # the ready list, in the order runs became ready
    started: list[str] = []
    popped = 0
    while True:
        run, expected = ready.pop(), next_run(by_hand, priority, running)
        assert (run and run.run_id) == (expected and expected.run_id)
        if run is not None:
            by_hand.remove(run)
            started.append(run.run_id)
            popped += 1
        if not started:
            break
        if run is None or rng.random() < 0.5:  # a started run ends: its students become ready, in order
            done = started.pop(rng.randrange(len(started)))
            ready.ended(done)
            by_hand += [r for r in runs if r.teacher_run_id == done]
    assert popped == len(runs) and not ready.waiting
