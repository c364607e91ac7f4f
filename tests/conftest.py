"""Shared fixtures: small real teachers trained once per test session."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import CLUSTER_BENCH, free_port, run_cli, tiny

from fspbench.train import train_run


@pytest.fixture(scope="session", autouse=True)
def calibration_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One calibration cache for the test run (subprocesses and Ray inherit it), not the user's."""
    path = tmp_path_factory.mktemp("calibration")
    os.environ["FSPBENCH_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def teacher_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-14 teacher on real Fashion-MNIST (1,000 training images), trained once."""
    out = tmp_path_factory.mktemp("teacher")
    rec = train_run(tiny(arch="resnet14", role="teacher", steps=150, lr=0.05), out)
    assert rec["status"] == "ok"
    return out / f"{rec['run_id']}.json"


@pytest.fixture(scope="session")
def wide_teacher_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A teacher twice as wide as the students: its channels do not match theirs."""
    out = tmp_path_factory.mktemp("wide")
    rec = train_run(tiny(arch="resnet8", width=2, role="teacher", steps=20), out)
    return out / f"{rec['run_id']}.json"


def start_s3_server(**env: str) -> tuple[subprocess.Popen, str]:
    """moto's standalone S3 server on 127.0.0.1 (a real HTTP S3 API), answering once it listens."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto's S3 server did not start")
            time.sleep(0.1)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 server for the session (moto's, on 127.0.0.1), with the AWS variables of this process, and so of
    every command, Ray node and trial it starts, pointing at it: no request leaves this machine."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[dev]')")
    proc, url = start_s3_server()
    env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        with pytest.MonkeyPatch.context() as mp:  # the variables as they were once the session ends
            mp.delenv("AWS_ENDPOINT_URL_S3", raising=False)
            mp.delenv("AWS_SESSION_TOKEN", raising=False)
            for k, v in env.items():
                mp.setenv(k, v)
            yield {"url": url, "env": env}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def ray_cluster():
    """One real Ray for the whole test run: `ray start --head --num-cpus 2` with token
    authentication, on free ports; the node it started is stopped at the end."""
    if shutil.which("ray") is None:
        pytest.skip("the ray command is not installed (pip install 'ray[default]')")
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    port, dash = free_port(), free_port()
    full_env = {**os.environ, **env}
    start = subprocess.run(
        ["ray", "start", "--head", "--num-cpus", "2", "--num-gpus", "0", "--port", str(port),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--include-dashboard", "true",
         "--disable-usage-stats"],
        env=full_env, capture_output=True, text=True, timeout=180,
    )
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        yield {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dash}", "env": env}
    finally:
        subprocess.run(["ray", "stop", "--force"], env=full_env, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def smoke_run(ray_cluster, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The smoke benchmark, run once through the real command on the shared cluster."""
    results = tmp_path_factory.mktemp("smoke") / "smoke"
    t0 = time.monotonic()
    res = run_cli("run", "smoke", "--results", str(results), "--address", ray_cluster["address"], "--quiet",
                  env=ray_cluster["env"])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return {"path": results, "seconds": time.monotonic() - t0, "stdout": res.stdout}


@pytest.fixture(scope="session")
def smoke_results(smoke_run: dict) -> Path:
    """The folder of a finished smoke benchmark (runs.parquet, run records, grid.json)."""
    return smoke_run["path"]


@pytest.fixture(scope="session")
def cluster_reference(ray_cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/benchmarks/cluster.toml run once, uninterrupted, on the shared one-node cluster: what every
    interrupted, retried or multi-node run of the same grid must equal (apart from wall_time_s)."""
    results = tmp_path_factory.mktemp("reference") / "cluster"
    res = run_cli("run", CLUSTER_BENCH, "--results", str(results), "--address", ray_cluster["address"], "--quiet",
                  env=ray_cluster["env"])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return results
