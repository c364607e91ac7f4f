"""The seconds a grid's trials really took, folded back into this machine's calibration cache.

A calibration times each kind of step on synthetic data for a few rounds (estimate.py). What a grid's
trials then take can differ from it for reasons a short timing cannot see: the other trial's work
beside it (on some machines the two slots share one physical core), caches, a machine that was busy
while the calibration ran. Each run's record holds what it measured: its curve's training seconds at
every point (so at each stage's end) and its evaluation seconds. After every Tune run, ``learn`` turns
the runs it trained on this machine into seconds per step of each stage kind and seconds per image of
each evaluation kind, divides out the share Ray's processes took (``Estimate.slowdown``, which the
estimate multiplies back in), and keeps, per kind, the fastest median of the grids measured so far
(``GRID_PREFIX`` + the kind's key, beside its calibrated seconds): a grid that shared the machine only
ever makes its runs slower, so the fastest is the machine's own speed. The next estimate on this
machine (the next look of a grid, the next grid) reads these before the calibrated seconds
(``estimate.calibrate``).

What is left between the estimate and the grid's measured wall time, once each kind takes its measured
seconds, are the fixed costs (start-ups, per-trial and per-point overheads, trial actors' starts), which
the estimate scales by one factor per machine (``Calibration.fixed_scale``, from a fresh ``import torch``).
``fixed_scale_fit`` finds the factor at which the estimate equals the measured wall time; the fastest fit
so far is kept as ``GRID_PREFIX + FIXED_SCALE_KEY``, which ``calibrate`` then reads before the import's.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from fspbench.config import RunConfig
from fspbench.estimate import (
    ACTOR_START_S,
    FIXED_SCALE_KEY,
    GRID_PREFIX,
    Estimate,
    cache_update,
    run_parts,
    run_seconds,
    simulate,
)

if TYPE_CHECKING:  # the grid module imports torch through the methods registry
    from fspbench.grid import GridRun
    from fspbench.results import RunRecord

MIN_STAGE_STEPS = 20  # a stage this short measures its first steps' start-up more than its step
MIN_FIT_RUNS = 4  # fewer trained runs say too little of a machine's fixed costs to fit them
FIT_RANGE = (0.05, 20.0)  # the fixed-cost scales a fit may give (the import's own scale is clamped alike)


def stage_seconds(record: RunRecord, steps: list[int]) -> list[float] | None:
    """Training seconds of each stage of a run from its curve: the curve's ``wall_time_s`` at the point
    where each stage ends (every stage ends on an evaluation point), less the previous stage's.

    ``steps``: the stages' optimizer steps, in order. None when the run did not end ok or its curve
    lacks a stage's end.
    """
    if record.status != "ok" or not record.curve:
        return None
    wall_at = {p.step: p.wall_time_s for p in record.curve}
    out, end, before = [], 0, 0.0
    for n in steps:
        end += n
        if end not in wall_at:
            return None
        out.append(wall_at[end] - before)
        before = wall_at[end]
    return out


def _same_machine(record: RunRecord, est: Estimate) -> bool:
    """Whether ``record`` ran on the hardware and at the thread count ``est`` was calibrated for."""
    from fspbench.hardware import Hardware

    env = record.env or {}
    try:
        hw = Hardware(**env["hardware"])
    except (KeyError, TypeError):
        return False
    return est.calibration.machine.startswith(hw.key() + "|") and env.get("threads") == est.threads


def measured_seconds(runs: Iterable[GridRun], teachers: dict[str, RunConfig],
                     records: dict[str, RunRecord], est: Estimate) -> dict[str, float]:
    """Kind key -> the median over ``runs`` of its measured seconds per step (per image for an evaluation),
    Ray's share divided out: what the calibration's seconds of that kind should have been."""
    per_kind: dict[str, list[float]] = defaultdict(list)
    slowdown = est.slowdown or 1.0
    for run in runs:
        rec = records.get(run.run_id)
        if rec is None or not _same_machine(rec, est):
            continue
        stages, ev, points = run_parts(run, teachers)
        secs = stage_seconds(rec, [n for _, n in stages])
        if secs is None:
            continue
        for (kind, n), s in zip(stages, secs, strict=True):
            if n >= MIN_STAGE_STEPS:
                per_kind[kind.key].append(s / n / slowdown)
        if rec.eval_time_s and sum(points):
            per_kind[ev.key].append(rec.eval_time_s / sum(points) / slowdown)
    return {key: statistics.median(xs) for key, xs in per_kind.items()}


def fixed_scale_fit(runs: list[GridRun], teachers: dict[str, RunConfig], est: Estimate,
                    seconds: dict[str, float], wall_s: float) -> float:
    """The fixed-cost scale at which ``est``, with each kind at ``seconds``, would have said ``wall_s``.

    The estimate's wall time is its start-up (the seconds it took itself, and ``fixed_startup_s`` x the
    scale) plus the simulated schedule of the runs (each run's work at ``seconds`` x ``est.slowdown`` plus
    its overheads x the scale; each new trial actor's start x the scale), which grows with the scale: found
    by bisection within FIT_RANGE (its end where even that end misses ``wall_s``).
    """
    spent = est.startup_s - est.fixed_startup_s * est.calibration.fixed_scale

    def wall(scale: float) -> float:
        run_s = {r.run_id: run_seconds(r, teachers, seconds, est.slowdown, scale) for r in runs}
        return spent + est.fixed_startup_s * scale + simulate(runs, run_s, est.slots,
                                                               actor_start_s=ACTOR_START_S * scale)

    lo, hi = FIT_RANGE
    if wall(lo) >= wall_s:
        return lo
    if wall(hi) <= wall_s:
        return hi
    for _ in range(50):  # 20 / 2^50: far below a second of any grid
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if wall(mid) < wall_s else (lo, mid)
    return (lo + hi) / 2


def learn(runs: list[GridRun], teachers: dict[str, RunConfig], records: dict[str, RunRecord],
          est: Estimate, known: dict[str, float], wall_s: float | None = None) -> dict[str, float]:
    """Fold the measured seconds of ``runs`` (their ``records``, trained under ``est``) into the cache
    entry of ``est``'s machine, keeping each kind's fastest grid measurement; ``known``: that entry as
    read now. ``wall_s``: the grid's measured wall time (as ``est.wall_s`` estimates it), given when every
    one of ``runs`` trained here, ended ok and was never retried: then the fixed-cost scale is fitted too
    (``fixed_scale_fit``). Returns the entries written (keys with GRID_PREFIX)."""
    measured = measured_seconds(runs, teachers, records, est)
    new = {}
    for key, secs in measured.items():
        old = known.get(GRID_PREFIX + key)
        if old is None or secs < old:
            new[GRID_PREFIX + key] = secs
    if wall_s is not None and len(runs) >= MIN_FIT_RUNS and measured:  # kinds not measured: as calibrated
        fit = fixed_scale_fit(runs, teachers, est, {**est.calibration.seconds, **measured}, wall_s)
        if fit < known.get(GRID_PREFIX + FIXED_SCALE_KEY, float("inf")):
            new[GRID_PREFIX + FIXED_SCALE_KEY] = round(fit, 4)
    if new:
        cache_update(est.calibration.machine, new)
    return new
