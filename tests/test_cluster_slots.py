"""How many trials a cluster holds, node by node, and requests that no node can meet (fspbench.cluster),
and the concurrency limit that follows the cluster while a grid runs (searcher.FollowCluster).

Driven by hand with nodes given as data; the multi-node tests (test_cluster.py) run them on real Ray.
"""

from __future__ import annotations

import pytest
from helpers import run_cli
from test_schedule import _order

from fspbench.cluster import ClusterSlots, Node, check_request, slots
from fspbench.errors import BadInput
from fspbench.searcher import FollowCluster

CPU1 = {"cpu": 1.0, "gpu": 0.0}


def test_slots_are_counted_node_by_node() -> None:
    # 3 + 1 CPUs hold one 2-CPU trial (a trial never spans nodes), not two
    assert slots([Node("a", 3, 0), Node("b", 1, 0)], {"cpu": 2.0, "gpu": 0.0}) == 1
    assert slots([Node("a", 3, 0), Node("b", 1, 0)], CPU1) == 4
    # GPU fractions: 0.5 GPU per trial on a 1-GPU node with 8 CPUs -> 2; CPUs bind on a 1-CPU node
    assert slots([Node("g", 8, 1)], {"cpu": 1.0, "gpu": 0.5}) == 2
    assert slots([Node("g", 1, 4)], {"cpu": 1.0, "gpu": 0.5}) == 1
    assert slots([Node("c", 8, 0)], {"cpu": 1.0, "gpu": 0.5}) == 0
    assert slots([Node("a", 0.9, 0)], {"cpu": 0.3, "gpu": 0.0}) == 3  # not 2 by rounding
    assert slots([Node("a", 4, 0), Node("b", 4, 0)], CPU1, cap=3) == 3  # [resources] max_concurrent


def test_request_no_node_meets_is_refused_on_a_fixed_cluster() -> None:
    nodes = [Node("head", 0, 0), Node("a", 2, 0)]
    with pytest.raises(BadInput) as err:
        check_request(nodes, {"cpu": 64.0, "gpu": 0.0}, "the cluster at h:1", autoscaling=False)
    msg = str(err.value)
    assert msg.startswith("[resources] cpu = 64: no node of the cluster at h:1") and "largest has 2 CPUs" in msg
    with pytest.raises(BadInput, match=r"\[resources\] gpu = 1: .*largest has 2 CPUs and 0 GPUs"):
        check_request(nodes, {"cpu": 1.0, "gpu": 1.0}, "x", autoscaling=False)
    # enough CPUs on one node and a GPU on another, but no node with both
    with pytest.raises(BadInput, match=r"cpu = 4 with gpu = 1"):
        check_request([Node("c", 8, 0), Node("g", 2, 1)], {"cpu": 4.0, "gpu": 1.0}, "x", autoscaling=False)
    assert check_request(nodes, {"cpu": 2.0, "gpu": 0.0}, "x", autoscaling=False) is None


def test_request_no_node_meets_waits_on_an_autoscaling_cluster() -> None:
    notice = check_request([Node("head", 0, 0)], {"cpu": 4.0, "gpu": 0.0}, "the cluster at h:1", autoscaling=True)
    assert notice is not None and "waiting for the autoscaler" in notice and "cpu = 4" in notice


def test_cluster_slots_follow_the_nodes_and_remember_the_peak() -> None:
    nodes = [Node("a", 1, 0)]
    live = ClusterSlots(CPU1, every_s=0.0, nodes=lambda: list(nodes))
    assert live() == 1
    nodes.append(Node("b", 2, 0))  # a node joins
    assert live() == 3
    nodes.pop()  # and is lost
    assert live() == 1 and live.peak == 3
    cached = ClusterSlots(CPU1, every_s=3600.0, nodes=lambda: list(nodes))
    assert cached() == 1
    nodes.append(Node("c", 4, 0))
    assert cached() == 1  # asked again only after every_s


def test_follow_cluster_lets_through_as_many_trials_as_the_cluster_holds_now() -> None:
    # the scratch run S and teachers A and B are ready at once (test_schedule's grid)
    order, _ = _order({})
    held = [1]
    limiter = FollowCluster(order, lambda: held[0])
    assert limiter.suggest("t0") == {"run_id": "A"}
    assert limiter.suggest("t1") is None  # one slot, taken
    held[0] = 2  # a node joins while the grid runs
    assert limiter.suggest("t2") == {"run_id": "S"}
    assert limiter.suggest("t3") is None
    held[0] = 0  # every node lost: one trial may still wait, so that an autoscaler sees the demand
    limiter.on_trial_complete("t0")
    limiter.on_trial_complete("t2")
    assert limiter.suggest("t4") == {"run_id": "B"}
    assert limiter.suggest("t5") is None


@pytest.mark.parametrize("text,expected", [
    ("[resources]\nmax_concurrent = 0\n", "resources.max_concurrent: expected an integer >= 1"),
    ("[resources]\nmax_concurrent = 1.5\n", "resources.max_concurrent: expected an integer >= 1"),
    ("[resources]\nmax_concurrency = 2\n", "did you mean max_concurrent"),
], ids=["zero", "fraction", "misspelt"])
def test_bad_max_concurrent_exits_2(text: str, expected: str, tmp_path) -> None:
    bench = tmp_path / "b.toml"
    bench.write_text(text + '[students.s]\nmethods = ["scratch"]\narchs = ["resnet8"]\nseeds = [0]\nbudgets = [5]\n')
    res = run_cli("run", str(bench), "--results", str(tmp_path / "R"), "--dry-run")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and expected in res.stderr, res.stderr
    assert not (tmp_path / "R").exists()


def test_max_concurrent_is_read(tmp_path) -> None:
    from fspbench.grid import benchmark_from_text

    bench = benchmark_from_text('[resources]\ncpu = 1\nmax_concurrent = 2\n[students.s]\nmethods = ["scratch"]\n'
                                'archs = ["resnet8"]\nseeds = [0]\nbudgets = [5]\n', tmp_path / "b.toml", tmp_path)
    assert bench.max_concurrent == 2 and bench.resources == {"cpu": 1.0, "gpu": 0.0}


def test_a_trial_this_machine_cannot_hold_exits_2_before_ray_starts(tmp_path) -> None:
    """The local default is a fixed cluster of one node: `[resources] cpu = 64` is refused at once."""
    bench = tmp_path / "big.toml"
    bench.write_text('[resources]\ncpu = 64\n[students.s]\nmethods = ["scratch"]\narchs = ["resnet8"]\n'
                     'seeds = [0]\nbudgets = [5]\n')
    res = run_cli("run", str(bench), "--results", str(tmp_path / "R"))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.count("\n") == 1 and "[resources] cpu = 64: no node of this machine" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "R").exists()
