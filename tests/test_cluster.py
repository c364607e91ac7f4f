"""A grid on several Ray nodes: spread over them, a node lost half-way, nodes that join, the whole
cluster lost, and trial requests that no node can meet.

Ray's own multi-node test cluster (helpers.MultiNode) runs a head and worker nodes on this machine,
each its own raylet with its own CPUs; the head has none, so trials run on the workers, as on a real
cluster. Every grid runs through the real command and is compared with the same grid run
uninterrupted on the shared one-node cluster (cluster_reference): the CPU path is deterministic, so
the rows must be equal apart from wall_time_s, whichever node trained a run and however often.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import CLUSTER_BENCH, MultiNode, finished_records, grid_rows, md_rows, run_cli, wait_for

pytestmark = pytest.mark.slow


def _start(results: Path, address: str, env: dict, *extra: str, bench: str = CLUSTER_BENCH) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fspbench.cli", "run", bench, "--results", str(results), "--address", address,
         "--quiet", *extra],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _records(results: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (results / "runs").glob("*.json")}


# ---------------------------------------------------------------- a node lost, two nodes joining


@pytest.fixture(scope="module")
def cluster() -> MultiNode:
    """A multi-node cluster for this module's grids, which add and kill its worker nodes."""
    with MultiNode() as nodes:
        yield nodes


@pytest.fixture(scope="module")
def lost_and_joined(cluster: MultiNode, cluster_reference: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One grid through a node lost and two nodes joining, as on a cluster of preemptible nodes.

    It starts on one worker node A, so one trial at a time: the teacher. Once the teacher has
    reported its first checkpoint (step 20 of 200), A is killed while it trains it (no graceful
    shutdown, as a preempted machine), and nodes B and C join. The teacher is retried from its
    checkpoint on B or C; its four students then run on B and C, two at a time.
    """
    results = tmp_path_factory.mktemp("multinode") / "cluster"
    a = cluster.add_node(cpus=1)
    proc = _start(results, cluster.address, cluster.env)
    # Tune's copy of the teacher's first checkpoint: the retry can resume from it
    wait_for(lambda: any((results / "ray").glob("grid-*/teacher-*/checkpoint_*")), 180,
             "the teacher's first checkpoint")
    on = cluster.trial_nodes()
    cluster.kill_node(a)
    joined = {cluster.add_node(cpus=1) for _ in range(2)}
    out, _ = proc.communicate(timeout=300)
    return {"results": results, "rc": proc.returncode, "out": out, "lost": a, "on_lost": on,
            "joined": joined, "grid": json.loads((results / "grid.json").read_text())}


def test_node_lost_while_training_the_teacher_is_retried_and_the_grid_is_unchanged(
        lost_and_joined: dict, cluster_reference: Path, tmp_path: Path) -> None:
    from fspbench.report import build_report

    run = lost_and_joined
    assert run["on_lost"] == {run["lost"]}, "the teacher was not training on the node that was removed"
    assert run["rc"] == 0, run["out"][-3000:]
    grid = run["grid"]
    assert grid["runs"] == {"total": 5, "ok": 5, "diverged": 0, "failed": 0, "not_run": 0, "skipped": 0}
    rows = grid_rows(run["results"])
    assert not rows.duplicated(["run_id", "step"]).any()
    pd.testing.assert_frame_equal(rows, grid_rows(cluster_reference))
    # the driver saw the lost attempt: where it ran, and the time it lost, which the cost table counts
    (retry,) = grid["retries"]
    assert retry["run_id"].startswith("teacher-") and retry["node"] == run["lost"]
    assert "node" in retry["error"] and retry["lost_s"] > 0 and grid["retried_time_s"] == retry["lost_s"]
    teacher = next(r for k, r in _records(run["results"]).items() if k.startswith("teacher-"))
    assert teacher["env"]["ray_node"]["id"] in run["joined"]  # finished on a node that joined
    build_report(run["results"], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    (row,) = [r for r in md_rows(md) if r[0] == "retried trial time (s)"]
    assert row[1:] == [f"{retry['lost_s']:.1f} (1 attempt retried)"]


def test_grid_spreads_over_nodes_with_rows_equal_to_one_node(lost_and_joined: dict,
                                                             cluster_reference: Path) -> None:
    run = lost_and_joined
    assert run["rc"] == 0, run["out"][-3000:]
    nodes = {r["env"]["ray_node"]["id"] for r in _records(run["results"]).values()}
    assert len(nodes) == 2 and nodes == run["joined"]  # the students ran on both nodes left
    pd.testing.assert_frame_equal(grid_rows(run["results"]), grid_rows(cluster_reference))


def test_nodes_that_join_half_way_receive_trials(lost_and_joined: dict) -> None:
    """The grid started with one slot; concurrency followed the cluster to two (a limit fixed at the start,
    as before, would run the students one at a time)."""
    run = lost_and_joined
    assert run["rc"] == 0, run["out"][-3000:]
    grid = run["grid"]
    assert grid["concurrent_slots"] == 1 and grid["peak_slots"] == 2 and grid["peak_running"] == 2
    by_node = [sum(r["env"]["ray_node"]["id"] == n for r in _records(run["results"]).values())
               for n in run["joined"]]
    assert all(n >= 1 for n in by_node) and sum(by_node) == 5


# ---------------------------------------------------------------- the whole cluster lost


def test_whole_cluster_lost_with_its_driver_then_a_new_cluster_resumes(cluster_reference: Path, ray_cluster,
                                                                       tmp_path: Path) -> None:
    """The head node lost with the driver on it (as with ``fspbench submit``, whose driver runs on the
    head): every node killed, then the driver with SIGKILL. Nothing is lost: the same command on a new
    cluster trains only the runs left and ends with the rows of an uninterrupted grid."""
    results = tmp_path / "lost-all"
    with MultiNode() as nodes:
        nodes.add_node(cpus=1)
        nodes.add_node(cpus=1)
        proc = _start(results, nodes.address, nodes.env)
        wait_for(lambda: len(finished_records(results)) >= 2, 180, "the teacher and a student to finish")
        assert proc.poll() is None, "the grid ended before its cluster could be killed"
        nodes.kill_all()  # the head (the GCS, and the raylet the driver is attached to), then the workers
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert not (results / "runs.parquet").exists()
    done = finished_records(results)
    assert 2 <= len(done) < 5
    # a new cluster (here the shared one) and the same results folder
    res = run_cli("run", CLUSTER_BENCH, "--results", str(results), "--address", ray_cluster["address"], "--quiet",
                  env=ray_cluster["env"])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert f"{len(done)} already finished" in res.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # no finished run trained again
    pd.testing.assert_frame_equal(grid_rows(results), grid_rows(cluster_reference))


# ---------------------------------------------------------------- requests no node can meet

# one scratch run asking for 2 CPUs per trial
TWO_CPUS = str(Path(CLUSTER_BENCH).with_name("two_cpus.toml"))


def test_request_no_node_meets_exits_2_on_a_fixed_cluster(ray_cluster, tmp_path: Path) -> None:
    bench = tmp_path / "big.toml"
    bench.write_text(Path(TWO_CPUS).read_text().replace("cpu = 2", "cpu = 64"))
    res = run_cli("run", str(bench), "--results", str(tmp_path / "R"), "--address", ray_cluster["address"],
                  env=ray_cluster["env"])
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert f"[resources] cpu = 64: no node of the cluster at {ray_cluster['address']}" in res.stderr
    assert "the largest has 2 CPUs and 0 GPUs" in res.stderr and "--autoscaling" in res.stderr
    assert not (tmp_path / "R").exists()


def test_request_no_node_meets_waits_on_an_autoscaling_cluster(cluster: MultiNode, lost_and_joined: dict,
                                                               tmp_path: Path) -> None:
    """With --autoscaling the grid says once that it waits, and runs when a node large enough joins
    (what an autoscaler does for a waiting trial). On the module's cluster after its grid: 1-CPU nodes."""
    results = tmp_path / "R"
    proc = _start(results, cluster.address, cluster.env, "--autoscaling", bench=TWO_CPUS)
    lines = []
    for line in proc.stdout:  # until the notice, then a 2-CPU node joins
        lines.append(line)
        if "waiting for the autoscaler" in line:
            break
    assert lines and "[resources] cpu = 2: no node of the cluster" in lines[-1], "".join(lines)[-2000:]
    big = cluster.add_node(cpus=2)
    out, _ = proc.communicate(timeout=300)
    out = "".join(lines) + out
    assert proc.returncode == 0, out[-3000:]
    assert out.count("waiting for the autoscaler") == 1
    (record,) = _records(results).values()
    assert record["status"] == "ok" and record["env"]["ray_node"]["id"] == big
