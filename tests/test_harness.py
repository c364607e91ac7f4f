"""The benchmark harness on a real Ray cluster started by the tests, through the real command."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import free_port, run_cli

from fspbench.results import PARQUET_COLUMNS

TESTS = Path(__file__).parent


def _last_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("step").groupby("run_id").tail(1)


@pytest.mark.slow
def test_smoke_benchmark_end_to_end_then_resume_trains_nothing(ray_cluster, smoke_run) -> None:
    results, first_s = smoke_run["path"], smoke_run["seconds"]
    df = pd.read_parquet(results / "runs.parquet")
    assert set(PARQUET_COLUMNS) <= set(df.columns)
    assert not df.duplicated(["run_id", "step"]).any()
    runs = df.drop_duplicates("run_id")
    assert set(runs[runs.role == "teacher"].method) == {"scratch"}
    assert {"fsp", "scratch"} <= set(runs[runs.role == "student"].method)
    assert (runs.status == "ok").all()
    fsp = runs[runs.method == "fsp"]
    assert (fsp.teacher_run_id.isin(runs[runs.role == "teacher"].run_id)).all()
    assert df.test_acc.between(0, 1).all()
    last = _last_rows(df)
    assert (last[last.role == "teacher"].test_acc > 0.5).all()  # chance is 0.1
    assert len(list((results / "runs").glob("*.json"))) == len(runs)
    grid = json.loads((results / "grid.json").read_text())
    assert grid["runs"]["ok"] == len(runs) and grid["cpus"] == 2.0 and grid["concurrent_slots"] == 2
    assert 0 < grid["harness_efficiency"] <= 1.0
    assert "[students.main]" in grid["benchmark_text"]
    # what the trials measured is folded into this machine's calibration cache (fspbench.measured): the
    # kinds' seconds in a grid, and the fixed-cost scale fitted to the looks' wall times
    cache = json.loads((Path(os.environ["FSPBENCH_CACHE_DIR"]) / "calibration.json").read_text())
    learned = cache[grid["estimate"]["machine"]]
    assert any(k.startswith("grid:") and k != "grid:fixed_cost_scale" for k in learned)
    assert 0.05 <= learned["grid:fixed_cost_scale"] <= 20

    t0 = time.monotonic()
    second = run_cli("run", "smoke", "--results", str(results), "--address", ray_cluster["address"], "--quiet",
                     env=ray_cluster["env"])
    second_s = time.monotonic() - t0
    assert second.returncode == 0, second.stderr[-3000:]
    assert "0 to train" in second.stdout
    assert second_s < first_s / 4, (first_s, second_s)
    # the rerun goes through the same looks and reaches the same decisions, having trained nothing
    decisions = [[ln for ln in out.splitlines() if re.match(r"\[fspbench\] look \d+: ", ln)]
                 for out in (smoke_run["stdout"], second.stdout)]
    assert decisions[0] and decisions[0] == decisions[1]
    assert any(ln.startswith("[fspbench] look 2: ") for ln in decisions[0])  # the smoke reaches its second look
    again = pd.read_parquet(results / "runs.parquet")
    pd.testing.assert_frame_equal(again, df)


@pytest.mark.slow
def test_submit_runs_the_grid_as_a_ray_job(ray_cluster, tmp_path: Path) -> None:
    results = tmp_path / "J"
    bench = str((TESTS / "benchmarks" / "tiny.toml").resolve())
    res = run_cli("submit", bench, "--address", ray_cluster["dashboard"], "--results", str(results),
                  env=ray_cluster["env"])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "SUCCEEDED" in res.stdout
    assert "[fspbench] tiny: 3 runs" in res.stdout  # the job's own log, streamed back
    df = pd.read_parquet(results / "runs.parquet")
    assert df.run_id.nunique() == 3 and (df.status == "ok").all()
    assert set(df.drop_duplicates("run_id").method) == {"scratch", "fsp"}


@pytest.mark.slow  # the shared Ray cluster
def test_submit_without_token_is_refused_clearly(ray_cluster, tmp_path: Path) -> None:
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "", "HOME": str(tmp_path)}
    res = run_cli("submit", "smoke", "--address", ray_cluster["dashboard"], "--results", str(tmp_path / "R"),
                  env=env)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "RAY_AUTH_TOKEN" in res.stderr
    assert not (tmp_path / "R").exists()


@pytest.mark.parametrize("command,address", [("run", "127.0.0.1:{port}"), ("submit", "http://127.0.0.1:{port}")])
def test_unreachable_address_exits_2_quickly(command: str, address: str, tmp_path: Path) -> None:
    addr = address.format(port=free_port())  # nothing listens there
    t0 = time.monotonic()
    res = run_cli(command, "smoke", "--address", addr, "--results", str(tmp_path / "R"))
    assert res.returncode == 2, res.stderr
    assert time.monotonic() - t0 < 60
    assert res.stderr.count("\n") == 1 and addr in res.stderr
    assert not (tmp_path / "R" / "runs.parquet").exists()
