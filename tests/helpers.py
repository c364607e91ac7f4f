"""Helpers shared by the tests: tiny real run settings and the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fspbench.config import RunConfig
from fspbench.results import RunRecord

# a teacher of 200 steps and four students that wait for it (tests/benchmarks/cluster.toml)
CLUSTER_BENCH = str((Path(__file__).parent / "benchmarks" / "cluster.toml").resolve())

# Small real runs: Fashion-MNIST with 100 training images per class, the full test set at the end.
TINY = dict(train_per_class=100, batch_size=32, eval_every=20, eval_subset=500)


def tiny(**changes) -> RunConfig:
    return RunConfig(**{**TINY, "arch": "resnet8", "steps": 40, **changes})


def md_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``text``, stripped of the padding a table's columns get."""
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln.strip())[1:-1]]
            for ln in text.splitlines() if ln.startswith("|")]


def set_args(cfg: dict) -> list[str]:
    """--set arguments for the CLI from a flat dict."""
    out: list[str] = []
    for k, v in cfg.items():
        out += ["--set", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    return out


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real command in a subprocess (``python -m fspbench.cli`` is the console script's code path)."""
    return subprocess.run(
        [sys.executable, "-m", "fspbench.cli", *args], capture_output=True, text=True, timeout=600,
        env={**os.environ, **(env or {})}, cwd=cwd,
    )


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def grid_rows(results: Path):
    """runs.parquet without its timing column, in a fixed order: equal for equal grids on the CPU."""
    import pandas as pd

    df = pd.read_parquet(results / "runs.parquet").drop(columns=["wall_time_s"])
    return df.sort_values(["run_id", "step"]).reset_index(drop=True)


def finished_records(results: Path) -> dict[Path, int]:
    """Run records that say ok, with their modification times (a record being replaced is skipped)."""
    out = {}
    for p in (results / "runs").glob("*.json"):
        try:
            if json.loads(p.read_text())["status"] == "ok":
                out[p] = p.stat().st_mtime_ns
        except (OSError, ValueError, KeyError):
            pass
    return out


def wait_for(condition, timeout_s: float, what: str) -> None:
    """Poll ``condition()`` every 0.2 s until it is true; fail the test after ``timeout_s``."""
    import time

    import pytest

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


class MultiNode:
    """Ray's multi-node test cluster on this machine (``ray.cluster_utils.Cluster``), hosted by a child
    process (tests/cluster_host.py) so that its token authentication and Ray state stay out of pytest.

    A head node with no CPUs, which runs the GCS and the driver as on a real cluster, and the worker
    nodes the test adds, each its own raylet. Token authentication as on the shared cluster: ``env``
    is what a client needs. Every node is stopped at the end of the ``with`` block.
    """

    def __init__(self) -> None:
        token = os.urandom(32).hex()
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
        self._host = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cluster_host.py"))],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      env={**os.environ, **self.env})
        self.address = self._ask("start")["address"]

    def _ask(self, cmd: str, **args) -> dict:
        assert self._host.stdin is not None and self._host.stdout is not None
        self._host.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self._host.stdin.flush()
        line = self._host.stdout.readline()
        if not line:
            raise RuntimeError(f"the cluster host ended while asked to {cmd}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"cluster host, {cmd}: {reply['error']}")
        return reply

    def add_node(self, cpus: float, env: dict | None = None) -> str:
        """A worker node with ``cpus`` CPUs (``env``: variables of its raylet and so of its workers, e.g. a
        TMPDIR of its own); returns its node id once it is alive."""
        return self._ask("add", cpus=cpus, **({"env": env} if env else {}))["node_id"]

    def kill_node(self, node_id: str) -> None:
        """Every process of that node killed at once (no graceful shutdown), as a preempted machine."""
        self._ask("kill", node_id=node_id)

    def kill_all(self) -> None:
        """The head first (the GCS, and the raylet of a driver attached to it), then every worker."""
        self._ask("kill_all")

    def trial_nodes(self) -> set[str]:
        """The nodes on which a Tune trial (an actor of class ImplicitFunc) is alive now."""
        return set(self._ask("trial_nodes")["nodes"])

    def __enter__(self) -> MultiNode:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._ask("kill_all")
        finally:
            assert self._host.stdin is not None
            self._host.stdin.close()
            self._host.wait(timeout=120)


def _expected(record: RunRecord) -> dict[tuple[str, int], float]:
    """(tag, step on its axis) -> test accuracy, for every evaluation point of the record's curve."""
    return {("main/test_acc" if p.stage == "main" else "stage1/test_acc", p.stage_step): p.test_acc
            for p in record.curve}


def scalars(root: Path):  # noqa: ANN202 - a pandas frame (tbparse's reader)
    from tbparse import SummaryReader

    return SummaryReader(str(root), extra_columns={"dir_name"}).scalars


def check_curves(root: Path, records: list[RunRecord]) -> None:
    """Each run's event files hold its test accuracy at every evaluation step, once, equal to its record."""
    df = scalars(root)
    assert not df.duplicated(["dir_name", "tag", "step"]).any(), "a point was written twice"
    for rec in records:
        mine = df[(df.dir_name == rec.run_id) & df.tag.str.endswith("test_acc") & (df.tag != "final/test_acc")]
        got = {(r.tag, int(r.step)): float(r.value) for r in mine.itertuples()}
        want = _expected(rec)
        assert got.keys() == want.keys(), rec.run_id
        assert all(got[k] == pytest.approx(v, abs=1e-6) for k, v in want.items()), rec.run_id
        final = df[(df.dir_name == rec.run_id) & (df.tag == "final/test_acc")]
        assert rec.final is not None and final.value.tolist() == [pytest.approx(rec.final.test_acc, abs=1e-6)]
