"""Check fspbench's time estimate against the wall time it estimates, with the real command.

Runs ``fspbench run BENCHMARK --results DIR`` in a subprocess, twice: first with a fresh, empty
calibration cache (a new FSPBENCH_CACHE_DIR: "cold"), then into a new results folder with the cache the
first run left ("warm"). For each it reads the estimate the command printed and, from DIR/grid.json,
the estimate it recorded (``estimate.wall_time_s``, with its start-up and schedule parts) and the
measured ``wall_time_s``, and prints them with measured / estimated. For a [design] grid it also times, from
the command's start, when the first look's decisions are printed, against the "time to the first look" the
command printed before it trained, and the whole command against the worst case it printed. The command's
own output goes to DIR/run.log.

Usage: python tools/estimate_check.py BENCHMARK [--work DIR] [--only cold|warm] [--json FILE] [--max-ratio-off F]
       (BENCHMARK: a name in benchmarks/ or a .toml path; exit 1 when a ratio is outside 1 +- F, default 0.25)

It trains the whole grid each time: run it alone on the machine (e.g. under ``flock``), as the
estimate assumes the grid has the machine to itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ESTIMATE_LINE = re.compile(r"\[fspbench\] estimate: (?P<text>.+?) for (?P<runs>\d+) runs on (?P<slots>\d+) slots")
_UNITS = {"h": 3600, "min": 60, "s": 1}


def parse_duration(text: str) -> float:
    """Seconds of an estimate.fmt_duration string: "1 h 02 min", "37 min 50 s", "45 s"."""
    parts = re.findall(r"(\d+)\s*(h|min|s)\b", text)
    if not parts:
        raise ValueError(f"not a duration: {text!r}")
    return float(sum(int(n) * _UNITS[u] for n, u in parts))


def printed_estimate(output: str) -> float | None:
    """The wall time of the command's "[fspbench] estimate: ..." lines, one per Tune run (a grid with a
    [design] has one per look), summed; None when it printed none."""
    found = [parse_duration(m.group("text")) for m in ESTIMATE_LINE.finditer(output)]
    return sum(found) if found else None


class OtherLoad:
    """CPU seconds that processes outside the command's own process tree (Ray's processes are in it) took
    while it ran: busy time in /proc/stat less the tree's, sampled every ``every`` seconds (Linux; 0
    elsewhere). A grid that shared the machine ran slower than the estimate for reasons of its own."""

    def __init__(self, root: int, every: float = 1.0) -> None:
        self.root, self.every = root, every
        self.tree: dict[int, float] = {}  # pid -> the most CPU seconds seen
        self.busy0 = self._busy()
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _busy() -> float:
        from fspbench.estimate import machine_busy_s  # the calibration's own measure of the machine's load

        return machine_busy_s() or 0.0

    def _sample(self) -> None:
        parent: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            f = stat.rsplit(")", 1)[1].split()  # after "pid (name)": state, ppid, ..., utime (12), stime (13)
            parent[int(d.name)] = int(f[1])
            cpu[int(d.name)] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        for pid in cpu:
            p = pid
            while p in parent and p != self.root and p > 1:
                p = parent[p]
            if p == self.root:
                self.tree[pid] = max(self.tree.get(pid, 0.0), cpu[pid])

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def stop(self) -> dict[str, float]:
        """{"other_cpu_s": ..., "other_cores": its average over the run, "own_cpu_s": the tree's}."""
        self._sample()
        self._stop.set()
        self._thread.join()
        elapsed = max(1e-9, time.monotonic() - self.t0)
        own = sum(self.tree.values())
        other = max(0.0, self._busy() - self.busy0 - own)
        return {"other_cpu_s": round(other, 1), "other_cores": round(other / elapsed, 3), "own_cpu_s": round(own, 1)}


def fspbench_command() -> list[str]:
    """The fspbench console script of this Python, or the CLI module run by it."""
    script = Path(sys.executable).with_name("fspbench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fspbench.cli"]


FIRST_LOOK_LINE = re.compile(r"\[fspbench\] time to the first look: (?P<first>.+?); worst case, .*?: (?P<worst>.+?) \(")
LOOK_ONE_DECIDED = "[fspbench] look 1: "  # the first look's decisions: what "the time to the first look" is to


def first_look_figures(output: str, decided_s: float | None) -> dict[str, Any]:
    """What the command printed before it trained (a [design] grid: the time to the first look and the worst
    case) beside when its first look's decisions came (seconds from the command's start)."""
    m = FIRST_LOOK_LINE.search(output)
    if m is None:
        return {}
    first, worst = parse_duration(m.group("first")), parse_duration(m.group("worst"))
    return {"printed_first_look_s": first, "printed_worst_case_s": worst, "first_look_decided_s": decided_s,
            "first_look_ratio": round(decided_s / first, 3) if decided_s and first else None}


def run_once(benchmark: str, results: Path, cache: Path, label: str) -> dict[str, Any]:
    """One ``fspbench run`` into ``results`` with ``cache`` as its calibration cache; its figures."""
    env = {**os.environ, "FSPBENCH_CACHE_DIR": str(cache)}
    cmd = [*fspbench_command(), "run", benchmark, "--results", str(results)]
    results.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    lines, decided = [], None
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    load = OtherLoad(child.pid)
    assert child.stdout is not None
    for ln in child.stdout:  # as they come: the moment the first look's decisions are printed
        lines.append(ln)
        if decided is None and ln.startswith(LOOK_ONE_DECIDED):
            decided = round(time.monotonic() - t0, 1)
    returncode = child.wait()
    other = load.stop()
    output = "".join(lines)
    elapsed = time.monotonic() - t0
    results.mkdir(parents=True, exist_ok=True)
    (results / "run.log").write_text(output)
    if returncode != 0:
        tail = "\n".join(output.splitlines()[-15:])
        raise SystemExit(f"{label}: `{' '.join(cmd)}` exited {returncode}:\n{tail}")
    from fspbench.results import GridLedger  # grid.json's one reader

    grid = GridLedger.load(results / "grid.json")
    est = grid.estimate or {}
    measured = float(grid.wall_time_s)
    estimated = float(est["wall_time_s"])
    return {
        "run": label, "benchmark": benchmark, "results": str(results),
        "printed_estimate_s": printed_estimate(output), "estimate_s": estimated,
        "estimate_startup_s": est.get("startup_s"), "estimate_schedule_s": est.get("schedule_s"),
        "calibration_s": est.get("calibration_s"), "kinds_measured": est.get("kinds_measured"),
        "kinds_cached": est.get("kinds_cached"), "measured_s": measured, "process_s": round(elapsed, 1),
        "ratio": round(measured / estimated, 3) if estimated else None,
        # a grid with a [design] trains look after look: grid.json sums the looks' times and estimates
        "looks": [{"look": e.look, "trained_runs": e.trained_runs, "wall_time_s": e.wall_time_s,
                   "estimated_s": e.estimated_s} for e in grid.looks or ()],
        "runs": grid.runs.to_json(), "trial_time_s": grid.trial_time_s, "trained_runs": grid.trained_runs,
        "slots": grid.concurrent_slots, "hardware": grid.hardware or {}, **other,
        **first_look_figures(output, decided),
    }


def line(row: dict[str, Any]) -> str:
    looks = "".join(f"\n      look {e['look']}: {e['trained_runs']} runs, estimate {e['estimated_s']} s, measured "
                    f"{e['wall_time_s']} s" for e in row["looks"])
    return (f"{row['run']:<5} estimate {row['estimate_s']:7.1f} s (printed {row['printed_estimate_s']}, "
            f"start-up {row['estimate_startup_s']}, calibration {row['calibration_s']} s, "
            f"{row['kinds_measured']} kinds measured, {row['kinds_cached']} cached)  "
            f"measured {row['measured_s']:7.1f} s (process {row['process_s']} s)  measured / estimated {row['ratio']}"
            f"\n      other processes: {row['other_cpu_s']} CPU s ({row['other_cores']} cores on average; the "
            f"command's own: {row['own_cpu_s']} s)" + looks + _first_look(row))


def _first_look(row: dict[str, Any]) -> str:
    if "printed_first_look_s" not in row:
        return ""
    return (f"\n      printed before training: {row['printed_first_look_s']:.0f} s to the first look, "
            f"{row['printed_worst_case_s']:.0f} s worst case; the first look's decisions came "
            f"{row['first_look_decided_s']} s after the start ({row['first_look_ratio']} of the printed time); the "
            f"command took {row['process_s']} s ({round(row['process_s'] / row['printed_worst_case_s'], 3)} of the "
            "worst case)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", help="a name in benchmarks/ or a .toml path")
    parser.add_argument("--work", type=Path, help="folder for the results and the cache (default: a temporary "
                                                  "one, removed at the end)")
    parser.add_argument("--only", choices=["cold", "warm"], help="one of the two runs (warm still needs a "
                                                                 "cold one first to fill the cache)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--max-ratio-off", type=float, default=0.25, help="allowed |measured / estimated - 1|")
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="estimate-check-"))
    cache = work / "cache"
    if cache.exists():
        shutil.rmtree(cache)  # "cold" means an empty cache
    rows = []
    try:
        for label in ("cold", "warm"):
            row = run_once(args.benchmark, work / f"results-{label}", cache, label)
            if args.only in (None, label):
                rows.append(row)
                print(line(row), flush=True)
            if args.only == "cold":
                break
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    bad = [r for r in rows if r["ratio"] is None or abs(r["ratio"] - 1) > args.max_ratio_off
           or (r.get("first_look_ratio") is not None and abs(r["first_look_ratio"] - 1) > args.max_ratio_off)]
    for r in bad:
        print(f"{r['run']}: measured / estimated {r['ratio']} (first look: {r.get('first_look_ratio')}) is outside "
              f"1 +- {args.max_ratio_off}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
