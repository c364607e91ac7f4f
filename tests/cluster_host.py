"""Hosts Ray's multi-node test cluster for helpers.MultiNode: one JSON command per line on stdin, one
JSON reply per line on stdout. Runs in its own process with the cluster's token in its environment.

Commands: start, add {cpus, env (optional: the raylet's variables)}, kill {node_id}, kill_all, trial_nodes.
"""

from __future__ import annotations

import json
import os
import sys

from ray.cluster_utils import Cluster

# the head's health checks: a node that stops answering is declared dead after about 1.5 s (Ray's
# default is about 15 s), so a lost node's trials are retried within a test's time
FAST_FAILURE = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                "health_check_failure_threshold": 3}


def main() -> None:
    # replies on a copy of stdout; anything else this process or its nodes print goes to stderr
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    cluster: Cluster | None = None
    nodes = {}
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        try:
            reply: dict = {}
            if cmd == "start":
                cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "_system_config": FAST_FAILURE})
                reply = {"address": cluster.address}
            elif cmd == "add":
                node = cluster.add_node(num_cpus=msg["cpus"], **({"env_vars": msg["env"]} if "env" in msg else {}))
                nodes[node.node_id] = node
                reply = {"node_id": node.node_id}
            elif cmd == "kill":
                cluster.remove_node(nodes.pop(msg["node_id"]), allow_graceful=False)
            elif cmd == "kill_all":
                if cluster is not None and cluster.head_node is not None:
                    cluster.remove_node(cluster.head_node, allow_graceful=False)
                for node in list(cluster.worker_nodes if cluster else []):
                    cluster.remove_node(node, allow_graceful=False)
                nodes.clear()
            elif cmd == "trial_nodes":
                actors = cluster.global_state.actor_table(None).values()
                reply = {"nodes": sorted({a["Address"]["NodeID"] for a in actors if a["State"] == "ALIVE"
                                          and a.get("ActorClassName") == "ImplicitFunc"})}
            else:
                reply = {"error": f"unknown command {cmd!r}"}
        except Exception as err:  # the test reads the reason instead of a dead pipe
            reply = {"error": f"{type(err).__name__}: {err}"}
        print(json.dumps(reply), file=replies, flush=True)


if __name__ == "__main__":
    main()
