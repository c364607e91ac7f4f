"""Results in a bucket (``--results s3://...``) against a real S3 server on this machine (moto's standalone
server, the session's ``s3_server``): the objects, the lock's lease, bad input, and (slow) a grid on Ray's
multi-node test cluster whose nodes share nothing but the bucket.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from conftest import start_s3_server
from helpers import CLUSTER_BENCH, MultiNode, check_curves, free_port, grid_rows, run_cli, wait_for

from fspbench.errors import BadInput
from fspbench.io import record_intact
from fspbench.lease import ObjectLock
from fspbench.results import RunRecord
from fspbench.store import ObjectPath, location, s3_client

TINY_BENCH = str(Path(CLUSTER_BENCH).with_name("tiny.toml"))


@pytest.fixture
def bucket(s3_server: dict) -> str:
    """A new, empty bucket on the session's S3 server."""
    name = f"fspbench-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=name)
    return name


def _objects(bucket: str, prefix: str = "") -> dict[str, tuple[str, object]]:
    """key -> (ETag, LastModified) of every object under ``prefix``."""
    out: dict[str, tuple[str, object]] = {}
    for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out |= {o["Key"]: (o["ETag"], o["LastModified"]) for o in page.get("Contents", [])}
    return out


def _one_line(res: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    return lines[0]


# ---------------------------------------------------------------- the objects


def test_object_paths_read_write_list_and_join(bucket: str) -> None:
    root = location(f"s3://{bucket}/a/results")
    assert isinstance(root, ObjectPath) and str(root) == f"s3://{bucket}/a/results"
    assert not root.exists()
    (root / "runs" / "x.json").write_bytes(b'{"k": 1}\n')
    (root / "checkpoints" / "x.pt").write_bytes(b"\0" * 10)
    assert root.exists() and root.is_dir() and (root / "runs" / "x.json").is_file()
    assert (root / "runs" / "../checkpoints/x.pt").read_bytes() == b"\0" * 10  # a record's relative checkpoint
    assert json.loads((root / "runs" / "x.json").read_text()) == {"k": 1}
    assert [p.name for p in (root / "runs").glob("*.json")] == ["x.json"]
    assert [p.key for p in root.objects()] == ["a/results/checkpoints/x.pt", "a/results/runs/x.json"]
    with pytest.raises(FileNotFoundError):
        (root / "runs" / "y.json").read_bytes()
    (root / "runs" / "x.json").unlink()
    assert not (root / "runs" / "x.json").exists()
    with pytest.raises(BadInput, match="gs:// is not supported yet; use s3:// or a folder"):
        location("gs://b/p")


# ---------------------------------------------------------------- the lock's lease


def test_lock_object_refuses_a_second_holder_and_is_released(bucket: str) -> None:
    root = ObjectPath(bucket, "grid")
    with ObjectLock(root, lease_s=30) as first:
        first.acquire()
        with pytest.raises(BadInput, match="in use by another fspbench run"):
            ObjectLock(root).acquire()
        assert list(_objects(bucket)) == ["grid/.fspbench.lock"]
    assert _objects(bucket) == {}  # released: the lock object is gone
    with ObjectLock(root) as again:
        again.acquire()


_HOLD = """
import sys, time
from fspbench.lease import ObjectLock
from fspbench.store import ObjectPath
ObjectLock(ObjectPath(sys.argv[1], "grid"), lease_s=float(sys.argv[2])).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_lease_of_a_killed_runner_expires_and_is_taken_over(bucket: str) -> None:
    """A runner killed with SIGKILL stops renewing: its lock refuses others until its lease runs out
    (renewed meanwhile, so not before), then the next runner takes it over."""
    lease = 2.0
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, bucket, str(lease)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        time.sleep(2 * lease)  # a live holder renews its lease: still refused after two leases
        with pytest.raises(BadInput, match="in use by another fspbench run"):
            ObjectLock(ObjectPath(bucket, "grid")).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    t0 = time.monotonic()
    while True:
        try:
            with ObjectLock(ObjectPath(bucket, "grid")) as lock:
                lock.acquire()
                assert lock.held
            break
        except BadInput:
            assert time.monotonic() - t0 < 3 * lease, "the killed runner's lease never expired"
            time.sleep(0.5)


# ---------------------------------------------------------------- bad input: exit 2, one line, nothing written


def test_second_runner_on_a_results_uri_exits_2_and_writes_nothing(bucket: str) -> None:
    with ObjectLock(ObjectPath(bucket, "tiny")) as lock:  # a runner that holds the prefix
        lock.acquire()
        res = run_cli("run", TINY_BENCH, "--results", f"s3://{bucket}/tiny", "--quiet")
        assert "in use by another fspbench run" in _one_line(res)
        assert list(_objects(bucket)) == ["tiny/.fspbench.lock"]


@pytest.fixture(scope="module")
def checking_server(s3_server: dict) -> str:
    """A second S3 server that checks credentials: it knows no keys, so it refuses every request."""
    server, url = start_s3_server(INITIAL_NO_AUTH_ACTION_COUNT="0")
    yield url
    server.kill()
    server.wait(timeout=30)


@pytest.mark.parametrize("command,case", [("run", "unreachable endpoint"), ("run", "missing bucket"),
                                          ("run", "refused credentials"), ("run", "gs://"),
                                          ("report", "missing bucket"), ("report", "refused credentials")])
def test_bad_storage_exits_2_with_one_line_naming_it(command: str, case: str, bucket: str, checking_server: str,
                                                     tmp_path: Path) -> None:
    uri, env, expected = f"s3://{bucket}/tiny", {}, ""
    if case == "unreachable endpoint":
        env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
        expected = "does not answer; check AWS_ENDPOINT_URL"
    elif case == "missing bucket":
        uri, expected = "s3://no-such-bucket-here/tiny", "no bucket no-such-bucket-here at"
    elif case == "refused credentials":
        env = {"AWS_ENDPOINT_URL": checking_server}
        expected = "refused the credentials of AWS_ACCESS_KEY_ID (InvalidAccessKeyId)"
    else:
        uri, expected = f"gs://{bucket}/tiny", "gs:// is not supported yet; use s3:// or a folder"
    args = ["run", TINY_BENCH, "--results", uri, "--quiet"] if command == "run" else ["report", uri]
    line = _one_line(run_cli(*args, env=env, cwd=tmp_path))
    assert expected in line, line
    assert _objects(bucket) == {}  # nothing in the bucket
    assert list(tmp_path.iterdir()) == []  # and no folder named after the URI


# ---------------------------------------------------------------- a grid on nodes that share only the bucket


def _checkpoints(bucket: str) -> list[str]:
    return [k for k in _objects(bucket, "cluster/ray/") if "/teacher-" in k and "/checkpoint_" in k]


@pytest.fixture(scope="module")
def bucket_grid(s3_server: dict, cluster_reference: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """tests/benchmarks/cluster.toml with its results in a bucket, on worker nodes that each have their own
    TMPDIR (so their own staging folder), through a lost node: it starts on node A alone; once the teacher's
    first checkpoint is in the bucket (step 20 of 200), A is killed while it trains it, and nodes B and C join.
    The teacher is retried from that checkpoint on B or C; its students then run on both, loading it from
    the bucket."""
    name = f"fspbench-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=name)
    tmp = tmp_path_factory.mktemp("nodes")
    with MultiNode() as cluster:
        (tmp / "a").mkdir()
        a = cluster.add_node(cpus=1, env={"TMPDIR": str(tmp / "a")})
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "fspbench.cli", "run", CLUSTER_BENCH, "--results", f"s3://{name}/cluster",
             "--address", cluster.address, "--quiet"],
            env={**os.environ, **cluster.env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: bool(_checkpoints(name)), 240, "the teacher's first checkpoint in the bucket")
        on = cluster.trial_nodes()
        cluster.kill_node(a)
        joined = {}
        for n in ("b", "c"):
            (tmp / n).mkdir()
            joined[cluster.add_node(cpus=1, env={"TMPDIR": str(tmp / n)})] = tmp / n
        out, _ = proc.communicate(timeout=400)
    return {"bucket": name, "rc": proc.returncode, "out": out, "lost": a, "on_lost": on, "joined": joined,
            "seconds": time.monotonic() - t0}


def _bucket_records(bucket: str) -> dict[str, dict]:
    root = ObjectPath(bucket, "cluster/runs")
    return {p.stem: json.loads(p.read_text()) for p in root.glob("*.json")}


def _download(bucket: str, prefix: str, to: Path) -> Path:
    """A local copy of the results' objects (Tune's own files left out)."""
    for key in _objects(bucket, prefix + "/"):
        rel = key[len(prefix) + 1:]
        if rel and not rel.startswith("ray/") and not key.endswith("/"):  # Tune's folder markers left out
            (to / rel).parent.mkdir(parents=True, exist_ok=True)
            (to / rel).write_bytes(ObjectPath(bucket, key).read_bytes())
    return to


@pytest.mark.slow
def test_grid_in_a_bucket_through_a_lost_node_equals_one_node(bucket_grid: dict, cluster_reference: Path,
                                                              tmp_path: Path) -> None:
    run = bucket_grid
    assert run["on_lost"] == {run["lost"]}, "the teacher was not training on the node that was removed"
    assert run["rc"] == 0, run["out"][-3000:]
    grid = json.loads(ObjectPath(run["bucket"], "cluster/grid.json").read_text())
    assert grid["runs"] == {"total": 5, "ok": 5, "diverged": 0, "failed": 0, "not_run": 0, "skipped": 0}
    (retry,) = grid["retries"]
    assert retry["run_id"].startswith("teacher-") and retry["node"] == run["lost"]
    local = _download(run["bucket"], "cluster", tmp_path / "copy")
    pd.testing.assert_frame_equal(grid_rows(local), grid_rows(cluster_reference))
    # no partial object: every record whole with its checksum, every weights file matching its record
    records = _bucket_records(run["bucket"])
    assert len(records) == 5 and all(record_intact(r) and r["status"] == "ok" for r in records.values())
    keys = {k for k in _objects(run["bucket"], "cluster/") if not k.endswith("/")}  # Tune's folder markers out
    assert {k for k in keys if not k.startswith(("cluster/ray/", "cluster/tensorboard/"))} == {
        "cluster/grid.json", "cluster/runs.parquet", *(f"cluster/runs/{i}.json" for i in records),
        *(f"cluster/checkpoints/{i}.pt" for i in records)}
    for r in records.values():
        weights = ObjectPath(run["bucket"], "cluster/runs") / r["checkpoint"]["path"]
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == r["checkpoint"]["sha256"]
    assert {r["teacher"] for k, r in records.items() if k.startswith("student-")} == {
        f"{next(k for k in records if k.startswith('teacher-'))}.json"}  # named as in a local folder


@pytest.mark.slow
def test_students_on_another_node_load_the_teacher_from_the_bucket(bucket_grid: dict) -> None:
    run = bucket_grid
    assert run["rc"] == 0, run["out"][-3000:]
    records = _bucket_records(run["bucket"])
    (teacher_id,) = [k for k in records if k.startswith("teacher-")]
    teacher_node = records[teacher_id]["env"]["ray_node"]["id"]
    assert teacher_node in run["joined"]
    others = {r["env"]["ray_node"]["id"] for k, r in records.items() if k.startswith("student-")} - {teacher_node}
    assert others, "every student ran on its teacher's node"
    for node in others:  # that node's own staging folder holds the teacher it fetched from the bucket
        fetched = list(run["joined"][node].glob(f"fspbench-stage/*/checkpoints/{teacher_id}.pt"))
        assert len(fetched) == 1
        assert hashlib.sha256(fetched[0].read_bytes()).hexdigest() == records[teacher_id]["checkpoint"]["sha256"]


@pytest.mark.slow
def test_rerun_trains_nothing_and_the_report_equals_a_local_copys(bucket_grid: dict, ray_cluster,
                                                                  tmp_path: Path) -> None:
    run = bucket_grid
    assert run["rc"] == 0, run["out"][-3000:]
    uri = f"s3://{run['bucket']}/cluster"
    before = _objects(run["bucket"], "cluster/runs/")
    res = run_cli("run", CLUSTER_BENCH, "--results", uri, "--address", ray_cluster["address"], "--quiet",
                  env=ray_cluster["env"])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "5 already finished" in res.stdout and "0 to train" in res.stdout
    assert _objects(run["bucket"], "cluster/runs/") == before  # no record written again
    res = run_cli("report", uri, "--out", str(tmp_path / "from-bucket"))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    local = _download(run["bucket"], "cluster", tmp_path / "cluster")
    res = run_cli("report", str(local), "--out", str(tmp_path / "from-folder"))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    written = sorted(p.relative_to(tmp_path / "from-folder") for p in (tmp_path / "from-folder").rglob("*")
                     if p.is_file() and (p.name == "claims.json" or p.parent.name == "tables"))
    assert any(p.parent.name == "tables" for p in written)
    for rel in written:
        assert (tmp_path / "from-bucket" / rel).read_bytes() == (tmp_path / "from-folder" / rel).read_bytes(), rel
    # the curves, mirrored to the bucket by the driver: every run's test accuracy once, as in its record
    check_curves(local / "tensorboard", [RunRecord.load(p) for p in (local / "runs").glob("*.json")])
