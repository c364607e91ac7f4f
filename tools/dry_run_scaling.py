"""How the cost of ``fspbench run BENCHMARK --dry-run`` grows with a [design] grid's seeds.

Writes copies of a preset with ``max_seeds`` = each N asked for (10, 100, 1000 by default), runs the real
command's dry run on each into an empty results folder, and prints its wall seconds, peak memory and the
runs it expands, with seconds per 1,000 runs: a cost that grows with the runs keeps that last figure flat.
A first dry run at the smallest N fills a calibration cache of its own, so every timed run reads it
(the calibration's own cost is the estimate's, not the expansion's).

Usage: python tools/dry_run_scaling.py [BENCHMARK] [--seeds 10 100 1000]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS_LINE = re.compile(r"look \d+: (\d+) runs")


def dry_run(bench: Path, work: Path, cache: Path) -> tuple[float, float, int]:
    """(wall seconds, peak memory in MB of the command, runs it expands over all looks) of one dry run."""
    env = {**os.environ, "FSPBENCH_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "fspbench.cli", "run", str(bench), "--results", str(work / "results"), "--dry-run"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=ROOT)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stderr[-2000:]}")
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    runs = sum(int(n) for n in RUNS_LINE.findall(out.stdout.split("worst case", 1)[-1]))
    return wall, peak, runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", nargs="?", default="default", help="a preset name in benchmarks/")
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 100, 1000])
    args = parser.parse_args(argv)
    text = (ROOT / "benchmarks" / f"{args.benchmark}.toml").read_text()
    if not re.search(r"^max_seeds = \d+", text, re.M):
        raise SystemExit(f"{args.benchmark}: no `max_seeds = N` line in its [design] table")
    with tempfile.TemporaryDirectory(prefix="dry-run-scaling-") as tmp:
        work = Path(tmp)
        benches = {}
        for n in args.seeds:
            benches[n] = work / f"{args.benchmark}-{n}.toml"
            benches[n].write_text(re.sub(r"^max_seeds = \d+", f"max_seeds = {n}", text, flags=re.M))
        dry_run(benches[min(args.seeds)], work, work / "cache")  # fills the calibration cache
        print(f"{'seeds':>6} {'runs':>7} {'wall (s)':>9} {'s per 1,000 runs':>17} {'peak MB':>8}")
        for n in args.seeds:
            wall, peak, runs = dry_run(benches[n], work, work / "cache")
            print(f"{n:>6} {runs:>7} {wall:>9.1f} {wall / max(runs, 1) * 1000:>17.2f} {peak:>8.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
