"""The trials' measured seconds folded back into the calibration cache (fspbench.measured), and the
calibration's own corrections: a grid's measurement before a calibration, a timing taken again when the
machine was busy. The committed default's records are the measured runs."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

import fspbench.estimate as est
from fspbench.config import RunConfig
from fspbench.estimate import (
    BUSY_PREFIX,
    FIXED_SCALE_KEY,
    GRID_PREFIX,
    Calibration,
    Estimate,
    calibrate,
    estimate_from,
    grid_kinds,
    machine_key,
    run_parts,
    teacher_configs,
)
from fspbench.grid import GridRun, at_look, first_look, load_benchmark
from fspbench.hardware import Hardware
from fspbench.measured import fixed_scale_fit, learn, measured_seconds, stage_seconds
from fspbench.results import RunRecord

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "results" / "default"
TINY_BENCH = Path(__file__).parent / "benchmarks" / "tiny.toml"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSPBENCH_CACHE_DIR", str(tmp_path / "cache"))


def _raw(run_id: str) -> dict[str, Any]:
    return json.loads((DEFAULT / "runs" / f"{run_id}.json").read_text())


@pytest.fixture(scope="module")
def first_look_runs() -> tuple[list[GridRun], dict[str, RunConfig], dict[str, RunRecord]]:
    """The committed default's first look: its runs, their teachers' configs and their records."""
    bench = load_benchmark("default", DEFAULT)
    assert bench.spec is not None
    look = at_look(bench, first_look(bench.spec))
    records = {r.run_id: RunRecord.load(DEFAULT / "runs" / f"{r.run_id}.json") for r in look.runs}
    return look.runs, teacher_configs(look), records


def _estimate(runs: list[GridRun], teachers: dict[str, RunConfig], record: RunRecord, threads: int = 1,
              fixed_scale: float = 1.0) -> Estimate:
    """An estimate of ``runs`` calibrated (1 ms a step, 1 us an image) for the machine ``record`` ran on."""
    assert record.env is not None
    machine = f"{Hardware(**record.env['hardware']).key()}|threads={threads}|alongside=1|torch=x|fspbench=y"
    seconds = {k.key: (1e-6 if k.stage < 0 else 1e-3) for k in grid_kinds(runs, teachers)}
    cal = Calibration(machine, seconds, measured_s=4.0, measured=0, cached=len(seconds), alongside=1,
                      fixed_scale=fixed_scale)
    return estimate_from(runs, teachers, cal, slots=2, threads=threads, cores=2.0)


def test_a_stages_seconds_are_its_curves_training_seconds_at_its_end(first_look_runs) -> None:
    runs, _, records = first_look_runs
    fsp = next(r for r in runs if r.config.method == "fsp")
    raw = _raw(fsp.run_id)
    init, main = (s["steps"] for s in raw["stages"])
    # by hand: the curve's training seconds where stage 1 ends, then what stage 2 added to the last point
    at_init = [p["wall_time_s"] for p in raw["curve"] if p["step"] == init]
    assert len(at_init) == 1
    expected = [at_init[0], raw["curve"][-1]["wall_time_s"] - at_init[0]]
    assert stage_seconds(records[fsp.run_id], [init, main]) == pytest.approx(expected)
    assert raw["curve"][-1]["step"] == init + main
    assert stage_seconds(records[fsp.run_id], [init + 1, main - 1]) is None  # no point where that stage ends


def test_each_kind_takes_the_median_of_its_runs_measured_seconds(first_look_runs) -> None:
    runs, teachers, records = first_look_runs
    estimate = _estimate(runs, teachers, next(iter(records.values())))
    measured = measured_seconds(runs, teachers, records, estimate)
    scratch = [r for r in runs if r.config.method == "scratch" and r.role == "student"]
    kind = run_parts(scratch[0], teachers)[0][0][0]
    # by hand, from the JSON: every stage of that kind (scratch students and teachers, FSP's second stage), its
    # training seconds (the curve's at its end less at the previous stage's end) per step, Ray's share out
    per_step = []
    for r in runs:
        raw, before, end = _raw(r.run_id), 0.0, 0
        for (k, _), stage in zip(run_parts(r, teachers)[0], raw["stages"], strict=True):
            end += stage["steps"]
            wall = next(p["wall_time_s"] for p in raw["curve"] if p["step"] == end)
            if k.key == kind.key:
                per_step.append((wall - before) / stage["steps"] / estimate.slowdown)
            before = wall
    assert len(per_step) >= 20
    assert measured[kind.key] == pytest.approx(statistics.median(per_step), rel=1e-3)  # records round to 0.1 ms
    ev = run_parts(scratch[0], teachers)[1]
    per_image = [_raw(r.run_id)["eval_time_s"] / sum(run_parts(r, teachers)[2]) / estimate.slowdown
                 for r in runs if run_parts(r, teachers)[1].key == ev.key]
    assert measured[ev.key] == pytest.approx(statistics.median(per_image), rel=1e-3)
    # every kind of the look with a stage of at least MIN_STAGE_STEPS steps is measured
    assert set(measured) == {k.key for k in grid_kinds(runs, teachers)}


def test_runs_of_another_machine_or_thread_count_teach_nothing(first_look_runs) -> None:
    runs, teachers, records = first_look_runs
    other = _estimate(runs, teachers, next(iter(records.values())), threads=2)
    assert measured_seconds(runs, teachers, records, other) == {}


def test_the_cache_keeps_each_kinds_fastest_grid(first_look_runs) -> None:
    runs, teachers, records = first_look_runs
    estimate = _estimate(runs, teachers, next(iter(records.values())))
    machine = estimate.calibration.machine
    written = learn(runs, teachers, records, estimate, {})
    measured = measured_seconds(runs, teachers, records, estimate)
    assert {k: v for k, v in written.items() if k != GRID_PREFIX + FIXED_SCALE_KEY} == {
        GRID_PREFIX + k: v for k, v in measured.items()}
    cache = json.loads(est.cache_path().read_text())[machine]
    assert all(cache[k] == v for k, v in written.items())
    # a grid that measured slower (a busy machine) leaves the faster in place; a faster one replaces it
    key = next(iter(measured))
    slower = {GRID_PREFIX + k: v / 2 for k, v in measured.items()}
    assert key not in {k.removeprefix(GRID_PREFIX) for k in learn(runs, teachers, records, estimate, slower)}
    faster = {GRID_PREFIX + k: v * 2 for k, v in measured.items()}
    assert GRID_PREFIX + key in learn(runs, teachers, records, estimate, faster)


def test_the_fixed_cost_fit_finds_the_scale_that_gave_the_wall_time(first_look_runs) -> None:
    runs, teachers, records = first_look_runs
    record = next(iter(records.values()))
    estimate = _estimate(runs, teachers, record)
    for truth in (0.37, 1.0, 2.6):  # the wall time an estimate at that scale gives, and the fit recovers it
        wall = _estimate(runs, teachers, record, fixed_scale=truth).wall_s
        assert fixed_scale_fit(runs, teachers, estimate, estimate.calibration.seconds, wall) == pytest.approx(
            truth, rel=1e-6)
    # beyond the range's ends: its ends
    assert fixed_scale_fit(runs, teachers, estimate, estimate.calibration.seconds, 0.0) == 0.05
    assert fixed_scale_fit(runs, teachers, estimate, estimate.calibration.seconds, 1e9) == 20.0
    # with the runs' own measured seconds and the look's measured wall time, a fit the cache keeps
    wall = json.loads((DEFAULT / "grid.json").read_text())["looks"][0]["wall_time_s"]
    written = learn(runs, teachers, records, estimate, {}, wall_s=wall)
    fit = written[GRID_PREFIX + FIXED_SCALE_KEY]
    assert 0.05 < fit < 20.0
    assert not learn(runs, teachers, records, estimate, {GRID_PREFIX + FIXED_SCALE_KEY: fit / 2}, wall_s=wall).get(
        GRID_PREFIX + FIXED_SCALE_KEY)  # a faster fit is kept


def _kinds() -> list[Any]:
    bench = load_benchmark(str(TINY_BENCH), Path("/nonexistent/results"))
    return grid_kinds(bench.runs, teacher_configs(bench))


def test_a_calibration_takes_a_grids_seconds_before_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = _kinds()
    machine = machine_key("cpu", 1, 0)
    grid = {GRID_PREFIX + k.key: 0.5 + i for i, k in enumerate(kinds)}
    est.cache_update(machine, {**grid, FIXED_SCALE_KEY: 1.5, GRID_PREFIX + FIXED_SCALE_KEY: 0.25})
    cal = calibrate(kinds, threads=1)
    assert cal.measured == 0 and cal.cached == len(kinds)  # nothing timed: the grid measured them all
    assert cal.seconds == {k.key: 0.5 + i for i, k in enumerate(kinds)}
    assert cal.fixed_scale == 0.25


class _Load:
    """OtherLoad's stand-in: the cores other processes took, as the test says."""

    cores_now = 0.0

    def cores(self) -> float:
        return self.cores_now


@pytest.mark.slow
def test_a_timing_taken_on_a_busy_machine_is_taken_again_and_the_faster_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = _kinds()[:2]
    monkeypatch.setattr(est, "OtherLoad", _Load)
    _Load.cores_now = 0.9  # another process took 0.9 cores while the kinds were timed
    busy = calibrate(kinds, threads=1)
    assert busy.measured == len(kinds)
    cache = json.loads(est.cache_path().read_text())[busy.machine]
    assert all(cache[BUSY_PREFIX + k.key] == 0.9 for k in kinds)
    assert calibrate(kinds, threads=1).measured == 0  # once per invocation: not at each of its estimates
    monkeypatch.setattr(est, "_TIMED_HERE", set())  # the next invocation
    _Load.cores_now = 0.0  # the machine is quiet now: timed again, the faster of the two kept
    quiet = calibrate(kinds, threads=1)
    assert quiet.measured == len(kinds)
    for k in kinds:
        assert quiet.seconds[k.key] <= busy.seconds[k.key]
    cache = json.loads(est.cache_path().read_text())[busy.machine]
    assert all(cache[BUSY_PREFIX + k.key] == 0.0 for k in kinds)
    monkeypatch.setattr(est, "_TIMED_HERE", set())
    assert calibrate(kinds, threads=1).measured == 0  # timed on a quiet machine once: not again
