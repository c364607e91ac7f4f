"""The time estimate: evaluation points as train_run makes them, the simulated schedule by hand,
the per-machine calibration cache, and `fspbench run --dry-run` through the real command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli, tiny

from fspbench.config import RunConfig
from fspbench.estimate import calibrate, eval_points, grid_kinds, run_seconds, simulate
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


@pytest.mark.slow
def test_calibration_is_cached_per_machine(tmp_path: Path) -> None:
    bench = load_benchmark(str(TINY_BENCH), tmp_path / "results")
    teachers = {t.run_id: t.config for t in bench.teachers}
    kinds = grid_kinds(bench.runs, teachers)
    first = calibrate(kinds, threads=1)
    assert first.measured == len(kinds) > 0 and first.cached == 0
    assert all(s > 0 for s in first.seconds.values())
    second = calibrate(kinds, threads=1)
    assert second.measured == 0 and second.cached == len(kinds) and second.seconds == first.seconds
    other = calibrate(kinds[:1], threads=2)  # another thread count is another machine entry
    assert other.measured == 1
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
    assert "read from" in again.stdout  # the second dry run reads the cache
    assert json.loads((tmp_path / "cache" / "calibration.json").read_text())["version"] == 1
