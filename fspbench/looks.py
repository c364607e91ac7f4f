"""A grid with a [design] table, look after look in one ``fspbench run``.

Look 1 trains every arm with the first look's seeds (design.look_every per arm). After each look the
claims are decided from the results folder alone (fspbench.analysis, group-sequential); a claim still
open gets look_every more seeds in its deciding arms (the teachers of the new students included),
the decided ones get none. It ends when no claim is open or after the last look. A rerun expands the
same looks from the same records, so it trains only what is missing and reaches the same decisions.

grid.json keeps ``looks`` (per look: the seeds per deciding arm of every claim, what was trained, its
time, estimate and decisions) and ``seeds`` (the expansion the results hold), so the report rebuilds
the same grid. Ray and the training stay with the caller (fspbench.tune), which passes ``train``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from fspbench import analysis, comparisons
from fspbench.estimate import fmt_duration
from fspbench.grid import Benchmark, at_look, first_look, run_labels
from fspbench.results import Decision, GridLedger, LookEntry, Paths, read_ledger, read_parquet

Train = Callable[[Benchmark], GridLedger]  # trains a look's pending runs, writes runs.parquet and grid.json
Estimate = Callable[[Benchmark], tuple[int, float | None]]  # (runs left to train, estimated seconds)


def decide(paths: Paths, bench: Benchmark) -> analysis.Analysis:
    """The claims from the folder's runs.parquet (what the report will read)."""
    df = comparisons.label_runs(read_parquet(paths.root / "runs.parquet"), run_labels(bench))
    return analysis.analyze(df, bench.claims)


def _line(c: analysis.Claim) -> str:
    if not c.looks:
        return f"{c.key}: {c.verdict} ({c.reason})"
    lk = c.looks[-1]
    state = "open" if c.open else c.verdict
    return (f"{c.key}: {state}, {lk.estimate:+.2f} points, repeated CI [{lk.low:+.2f}, {lk.high:+.2f}] at "
            f"n = {lk.n} per arm" + ("" if c.open else f" ({c.reason})"))


def _look_entry(look: int, seeds: dict[str, int], grid: GridLedger, a: analysis.Analysis,
                before: LookEntry | None) -> LookEntry:
    """grid.json's record of one look; a look that trained nothing now keeps the figures of the run that did."""
    now = grid.history[-1]
    decisions = {c.key: Decision("open" if c.open else c.verdict, c.reason, c.n_per_arm) for c in a.claims if c.looks}
    if not now.trained_runs and before is not None:
        return replace(before, seeds_per_arm=dict(seeds), decisions=decisions, trained_now=0)
    est = (grid.estimate or {}) if now.trained_runs else {}
    return LookEntry(look, dict(seeds), now.trained_runs, now.trained_runs, now.wall_time_s, now.trial_time_s,
                     est.get("wall_time_s"), est.get("runs"), decisions)


def _combined(grid: GridLedger, entries: list[LookEntry]) -> GridLedger:
    """grid.json's top-level figures for the looks this invocation trained: their time summed."""
    trained = [e for e in entries if e.trained_now]
    if len(trained) < 2:
        return grid  # one look (or none) trained now: its figures are already the top-level ones
    wall = sum(e.wall_time_s for e in trained)
    trial = sum(e.trial_time_s for e in trained)
    peak = grid.peak_slots or 1
    return replace(grid, wall_time_s=round(wall, 2), trial_time_s=round(trial, 2),
                   trained_runs=sum(e.trained_runs for e in trained),
                   harness_efficiency=round(trial / (wall * peak), 4) if wall else None,
                   estimate={**(grid.estimate or {}),
                             "wall_time_s": round(sum(e.estimated_s or 0.0 for e in trained), 1),
                             "runs": sum(e.estimated_runs or 0 for e in trained),
                             "per_look": [e.estimated_s for e in trained]})


def run_looks(bench: Benchmark, train: Train, paths: Paths, estimate: Estimate,
              stopped: Callable[[], bool] = lambda: False) -> GridLedger:
    """Train ``bench`` look by look (module docstring); returns the grid.json written. ``stopped()``: the
    grid was interrupted (SIGINT or SIGTERM), so no look comes after the one it stopped."""
    spec, design = bench.spec, bench.design
    assert spec is not None and design is not None
    seeds = first_look(spec)
    entries: list[LookEntry] = []
    grid: GridLedger | None = None
    previous = read_ledger(paths.ledger)
    before = {e.look: e for e in (previous.looks or ())} if previous else {}
    for look in range(1, design.looks + 1):
        b = at_look(bench, seeds)
        open_claims = [k for k, n in seeds.items() if n == look * design.look_every]
        print(f"[fspbench] look {look} of {design.looks}: {look * design.look_every} seeds per arm for "
              f"{', '.join(open_claims) or 'every arm (no claims: an ablation grid)'}", flush=True)
        grid = train(b)
        if grid.runs.not_run or stopped():
            break  # a stopped grid: the look is incomplete, a rerun resumes it
        a = decide(paths, b)
        entries.append(_look_entry(look, seeds, grid, a, before.get(look)))
        for c in a.claims:
            print(f"[fspbench] look {look}: {_line(c)}", flush=True)
        still = [c.key for c in a.claims if c.open]
        if not still or look == design.looks:
            break
        seeds = {**seeds, **{k: (look + 1) * design.look_every for k in still}}
        left, est = estimate(at_look(bench, seeds))
        print(f"[fspbench] next: look {look + 1} for {', '.join(still)}: {left} runs to train"
              + (f", estimated {fmt_duration(est)}" if est is not None and left else ""), flush=True)
    assert grid is not None  # a [design] grid has at least one look
    grid = replace(_combined(grid, entries), seeds=seeds, looks=tuple(entries))
    grid.write(paths.ledger)
    return grid
