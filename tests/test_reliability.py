"""Reliability on a real Ray cluster: a crashed trial, altered files, two runners (a killed driver and lost
nodes: test_cluster.py).

Every case is compared with one uninterrupted run of the same five-run grid (the session's
cluster_reference): the CPU path is deterministic, so the rows must be identical apart from timings.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import CLUSTER_BENCH, grid_rows, run_cli

from fspbench.lock import ResultsLock

TINY = str((Path(__file__).parent / "benchmarks" / "tiny.toml").resolve())


def _run(results: Path, cluster: dict, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli("run", CLUSTER_BENCH, "--results", str(results), "--address", cluster["address"], "--quiet",
                   env={**cluster["env"], **(env or {})})


@pytest.mark.slow
def test_crashed_trial_is_retried_from_its_checkpoint(cluster_reference: Path, ray_cluster, tmp_path: Path) -> None:
    results = tmp_path / "crash"
    # an FSP student (20 + 40 steps, evaluations every 20) raises after step 30, once
    res = _run(results, ray_cluster, {"FSPBENCH_FAULT": "crash@step:30@run:student-resnet8-fsp-s0"})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    (marker,) = (results / "checkpoints").glob("*.fault")
    assert marker.read_text().startswith("crashed at step 30")
    rows = grid_rows(results)
    assert not rows.duplicated(["run_id", "step"]).any()
    pd.testing.assert_frame_equal(rows, grid_rows(cluster_reference))
    (retry,) = json.loads((results / "grid.json").read_text())["retries"]  # the driver saw one lost attempt
    assert retry["run_id"].startswith("student-resnet8-fsp-s0") and "injected crash" in retry["error"]
    assert retry["lost_s"] > 0 and retry["kept_s"] > 0  # it had reported step 20 before it crashed


@pytest.mark.slow
def test_altered_record_and_missing_teacher_weights_are_redone(cluster_reference: Path, ray_cluster,
                                                               tmp_path: Path) -> None:
    results = tmp_path / "altered"
    shutil.copytree(cluster_reference, results, ignore=shutil.ignore_patterns("ray"))
    fsp_record = next((results / "runs").glob("student-resnet8-fsp-s0-*.json"))
    rec = json.loads(fsp_record.read_text())
    rec["final"]["test_acc"] = 0.99  # a hand edit: its checksum no longer matches
    fsp_record.write_text(json.dumps(rec))
    (teacher_record,) = (results / "runs").glob("teacher-*.json")
    teacher_ckpt = results / "runs" / json.loads(teacher_record.read_text())["checkpoint"]["path"]
    teacher_ckpt.unlink()  # the FSP student must be retrained, and it needs these weights
    res = _run(results, ray_cluster)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "does not match its sha256" in res.stdout and "trained again" in res.stdout
    assert "2 to train" in res.stdout  # the student and its teacher; the other students are left alone
    assert teacher_ckpt.is_file()
    pd.testing.assert_frame_equal(grid_rows(results), grid_rows(cluster_reference))


@pytest.mark.slow
def test_diverged_run_is_recorded_and_the_grid_goes_on(ray_cluster, tmp_path: Path) -> None:
    from fspbench.report import build_report

    results = tmp_path / "diverge"
    bench = str(Path(TINY).with_name("diverge.toml"))
    res = run_cli("run", bench, "--results", str(results), "--address", ray_cluster["address"], "--quiet",
                  env=ray_cluster["env"])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]  # diverging is a result, not an error
    grid = json.loads((results / "grid.json").read_text())
    assert grid["runs"] == {"total": 2, "ok": 1, "diverged": 1, "failed": 0, "not_run": 0, "skipped": 0}
    df = pd.read_parquet(results / "runs.parquet")
    bad = df[df.status == "diverged"]
    assert bad.run_id.nunique() == 1 and bad.step.max() < 30  # stopped early, its last metrics kept
    assert bad.test_acc.notna().all()
    summary = build_report(results, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "1 diverged" in md and bad.run_id.iloc[0] in md
    assert set(summary["verdicts"].values()) == {"not_run"}


def test_second_runner_is_refused_at_once(tmp_path: Path) -> None:
    results = tmp_path / "busy"
    results.mkdir()
    with ResultsLock(results) as lock:
        lock.acquire()
        t0 = time.monotonic()
        res = run_cli("run", TINY, "--results", str(results), "--address", "127.0.0.1:1")
        assert res.returncode == 2
        assert time.monotonic() - t0 < 30
        assert res.stderr.count("\n") == 1 and "in use by another fspbench run" in res.stderr
    assert sorted(p.name for p in results.iterdir()) == [".fspbench.lock"]


def test_lock_of_a_killed_runner_is_free(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from fspbench.lock import ResultsLock; "
         f"lock = ResultsLock(Path({str(tmp_path)!r})); lock.acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    from fspbench.errors import BadInput

    with pytest.raises(BadInput, match="in use"):
        ResultsLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    lock = ResultsLock(tmp_path)
    lock.acquire()  # the kernel dropped the dead holder's lock
    lock.release()


BAD_BENCHMARKS = [
    ("unknown_key", "[defaults]\nstepz = 3\n", "defaults.stepz"),
    ("wrong_type", "[defaults]\nsteps = \"many\"\n", "defaults.steps"),
    ("zero_budget", "[students.s]\nmethods = [\"scratch\"]\narchs = [\"resnet8\"]\nseeds = [0]\nbudgets = [0]\n",
     "students.s.budgets"),
    ("unknown_arch", "[students.s]\nmethods = [\"scratch\"]\narchs = [\"resnet7\"]\nseeds = [0]\nbudgets = [5]\n",
     "resnet7"),
    ("missing_teacher", "[students.s]\nteacher = \"t9\"\nmethods = [\"fsp\"]\narchs = [\"resnet8\"]\nseeds = [0]\n"
     "budgets = [5]\n", "students.s.teacher"),
    ("no_seeds", "[teachers.t]\narch = \"resnet8\"\nseeds = []\n", "teachers.t.seeds"),
    ("invalid_toml", "[defaults\n", "invalid TOML"),
]


@pytest.mark.parametrize("case,text,expected", BAD_BENCHMARKS, ids=[c for c, _, _ in BAD_BENCHMARKS])
def test_run_with_a_malformed_benchmark_exits_2(case: str, text: str, expected: str, tmp_path: Path) -> None:
    bench = tmp_path / f"{case}.toml"
    bench.write_text(text)
    res = run_cli("run", str(bench), "--results", str(tmp_path / "R"))
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and f"{case}.toml" in res.stderr and expected in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "R").exists()


@pytest.mark.parametrize("args,expected", [
    (["run", "nonexistent-preset"], "no such benchmark file or preset; expected a path to a .toml file or one of"),
    (["run", TINY, "--results", "/dev/null/results"], "cannot write there"),
    (["report", "/nonexistent/results"], "fspbench run"),
], ids=["unknown-benchmark", "unwritable-results", "report-without-results"])
def test_cli_bad_input_exits_2(args: list[str], expected: str) -> None:
    res = run_cli(*args)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and expected in res.stderr and "Traceback" not in res.stderr


def test_runs_never_started_are_not_run_not_failed(tmp_path: Path) -> None:
    """An interrupted grid: runs without a record are counted as not run, none as failed or trained, exit 1."""
    from dataclasses import replace

    from fspbench import cli, tune
    from fspbench.cluster import Node
    from fspbench.grid import load_benchmark
    from fspbench.hardware import detect
    from fspbench.results import Paths, RunCounts, now

    bench = load_benchmark(TINY, tmp_path / "R")
    paths = Paths(tmp_path / "R")
    paths.runs.mkdir(parents=True)
    plan = tune.Plan(bench.runs, [], detect("cpu"), [Node("n", 2.0, 0.0)], None)
    grid = tune._write_outputs(bench, paths, now(), 5.0, plan, tune.Outcome(set(), [], 0, 0))
    n = len(bench.runs)
    assert grid.runs == RunCounts(total=n, ok=0, diverged=0, failed=0, not_run=n, skipped=0)
    assert grid.trained_runs == 0
    assert cli._exit_code(grid.runs) == 1
    assert cli._exit_code(replace(grid.runs, not_run=0, diverged=1)) == 0  # diverged is a result
