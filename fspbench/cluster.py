"""What a Ray cluster offers a grid's trials: its live nodes, the trials they hold at once, and
requests that no node can meet.

A trial runs on one node, so the slots are counted node by node (a node with 3 CPUs holds one
2-CPU trial, not one and a half), from the nodes alive *now*: the grid asks again while it runs,
so a node that joins is used and a node that is lost is not counted (tune.py, schedule.py).
Ray is imported only inside the functions that ask a running cluster.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fspbench.errors import BadInput

_EPS = 1e-9  # 0.3 CPUs asked of 0.9: three trials, not two


@dataclass(frozen=True)
class Node:
    """One node's resources for trials: its id, CPUs and GPUs (fractions as Ray counts them)."""

    node_id: str
    cpus: float
    gpus: float

    def holds(self, request: dict[str, float]) -> int:
        """How many trials asking ``request`` ({"cpu": c, "gpu": g}) this node runs at once."""
        by_cpu = int(self.cpus / request["cpu"] + _EPS)
        return min(by_cpu, int(self.gpus / request["gpu"] + _EPS)) if request["gpu"] > 0 else by_cpu


def live_nodes() -> list[Node]:
    """The nodes of the connected Ray cluster that are alive now (``ray.nodes()``)."""
    import ray

    listed: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]  # Ray ships no types here
    return [Node(n["NodeID"], float(n["Resources"].get("CPU", 0.0)), float(n["Resources"].get("GPU", 0.0)))
            for n in listed if n.get("Alive")]


def this_machine() -> list[Node]:
    """This machine as the one node of the local Ray that ``fspbench run`` starts without --address."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [Node("local", float(os.cpu_count() or 1), float(gpus))]


def slots(nodes: list[Node], request: dict[str, float], cap: int | None = None) -> int:
    """Trials the nodes run at once: the sum over nodes, at most ``cap`` ([resources] max_concurrent)."""
    total = sum(n.holds(request) for n in nodes)
    return min(total, cap) if cap else total


def check_request(nodes: list[Node], request: dict[str, float], where: str, autoscaling: bool) -> str | None:
    """BadInput when no node can ever run one trial of ``request`` on a fixed cluster.

    On an autoscaling cluster (``autoscaling``) the node may still come: returns the one-line notice
    to print before waiting for it. Returns None when some node meets the request now.
    """
    if any(n.holds(request) for n in nodes):
        return None
    cpu, gpu = request["cpu"], request["gpu"]
    if not any(n.cpus + _EPS >= cpu for n in nodes):
        asked = f"[resources] cpu = {cpu:g}"
    elif not any(n.gpus + _EPS >= gpu for n in nodes):
        asked = f"[resources] gpu = {gpu:g}"
    else:
        asked = f"[resources] cpu = {cpu:g} with gpu = {gpu:g}"
    big = max(nodes, key=lambda n: (n.gpus, n.cpus), default=Node("none", 0.0, 0.0))
    largest = f"the largest has {big.cpus:g} CPUs and {big.gpus:g} GPUs" if nodes else "it has no live node"
    if autoscaling:
        return (f"[fspbench] {asked}: no node of {where} has that now ({largest}); waiting for the "
                "autoscaler to add one (--autoscaling)")
    count = f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}"
    raise BadInput(f"{asked}: no node of {where} can run one trial ({count}; {largest}); lower it, "
                   "add a node that large, or pass --autoscaling if the cluster adds nodes on demand")


class ClusterSlots:
    """``slots()`` of the live nodes, asked of Ray at most once per ``every_s`` seconds.

    Called by the grid's concurrency limit each time Tune asks for a trial, so it must be cheap;
    ``nodes`` is injectable for tests (default: ``live_nodes``).
    """

    def __init__(self, request: dict[str, float], cap: int | None = None, every_s: float = 1.0,
                 nodes: Callable[[], list[Node]] = live_nodes) -> None:
        self.request, self.cap, self.every_s, self._nodes = request, cap, every_s, nodes
        self._at = -float("inf")
        self._value = 0
        self.peak = 0  # the most slots seen so far

    def __call__(self) -> int:
        now = time.monotonic()
        if now - self._at >= self.every_s:
            self._value = slots(self._nodes(), self.request, self.cap)
            self._at = now
            self.peak = max(self.peak, self._value)
        return self._value
