"""How long a grid will take on this machine, before it starts.

1. **Calibration.** Every kind of training step the grid contains (a stage of a method for one
   network, input shape, batch, precision and teacher) and every kind of evaluation is timed for a
   few steps on synthetic data of the task's shape, at the trial's thread count, on the device the
   trials use. Timings are cached per machine (``Hardware.key()``, threads, library versions) in
   ``$FSPBENCH_CACHE_DIR`` or ``~/.cache/fspbench``, so a second grid calibrates only what is new.
2. **A run's seconds** = sum over stages of steps x step time + its evaluation points x the time of
   evaluating their images + a fixed cost per trial and per evaluation point (Tune's start, the state
   and checkpoint written at each point; measured on the default preset: 0.65 s per trial).
3. **The grid's wall time** = the end of a simulated schedule: ``slots`` trials at once, each
   student once its teacher has ended, the ready run with the longest remaining chain first,
   as schedule.TeacherFirst orders the real grid.

The same model gives the progress line's "remaining", scaled by the measured / estimated seconds
of the runs already ended.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fspbench.config import RunConfig
from fspbench.io import atomic_write_json
from fspbench.registry import TASKS, stage_plans

if TYPE_CHECKING:  # the grid module imports torch through the methods registry
    from fspbench.grid import Benchmark, GridRun

TRIAL_OVERHEAD_S = 0.65  # per trial: (wall x slots - trial seconds) / trials of the default preset's run
POINT_OVERHEAD_S = 0.03  # per evaluation point: state file and Tune checkpoint of a small ResNet
CALIBRATION_STEPS = 6  # timed steps per kind, after WARMUP_STEPS untimed ones
WARMUP_STEPS = 2
CACHE_VERSION = 1


# ---------------------------------------------------------------- what a run is made of


@dataclass(frozen=True)
class Kind:
    """One kind of timed work: a training stage of a run's method, or an evaluation.

    ``key`` names everything its speed depends on; ``cfg`` and ``teacher`` are a run of that kind.
    """

    key: str
    cfg: RunConfig
    teacher: RunConfig | None
    stage: int  # index into the method's stages; -1 for evaluation (seconds per image)


def _shape(cfg: RunConfig) -> tuple[int, int, int]:
    """(classes, channels, image side) of a run's data, without loading it."""
    info = TASKS[cfg.task]
    return len(cfg.classes) or info.num_classes, info.in_channels, cfg.image_size or info.image_size


def _net(cfg: RunConfig) -> dict[str, Any]:
    # not the number of classes: it sizes only the last linear layer, a negligible share of a step
    _, c, side = _shape(cfg)
    return {"arch": cfg.arch, "width": cfg.width, "channels": c, "side": side,
            "precision": cfg.precision, "channels_last": cfg.channels_last, "compile": cfg.compile,
            "device": cfg.device}


def _key(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def stage_kinds(cfg: RunConfig, teacher: RunConfig | None) -> list[Kind]:
    """The training-step kinds of one run, one per stage of its method."""
    kinds = []
    for i, plan in enumerate(stage_plans(cfg)):
        # an objective is the same work in any method (FSP's stage 2 is scratch's step)
        what = {"net": _net(cfg), "objective": plan.objective, "batch": cfg.batch_size,
                "augment": cfg.augment, "hflip": cfg.hflip,
                "fsp": cfg.fsp.identity() if plan.objective == "fsp" else {},
                "teacher": _net(teacher) if teacher is not None and plan.uses_teacher else None}
        kinds.append(Kind(_key(what), cfg, teacher if plan.uses_teacher else None, i))
    return kinds


def eval_kind(cfg: RunConfig) -> Kind:
    return Kind(_key({"eval": _net(cfg)}), cfg, None, -1)


def eval_points(cfg: RunConfig) -> list[tuple[int, bool]]:
    """(images evaluated, is_final) for each evaluation point of a run, as train.train_run makes them:
    every ``eval_every`` steps and at each stage's end; the final one evaluates the full test set
    and the curve's own subset."""
    k, _, _ = _shape(cfg)
    info = TASKS[cfg.task]
    test = round(info.test_images * k / info.num_classes)
    curve = min(cfg.eval_subset, test) if cfg.eval_subset else test
    stages = stage_plans(cfg)
    points, step = [], 0
    for i, spec in enumerate(stages):
        for s in range(1, spec.steps + 1):
            step += 1
            if s == spec.steps and i == len(stages) - 1:
                points.append((test + (curve if cfg.eval_subset else 0), True))
            elif s == spec.steps or step % cfg.eval_every == 0:
                points.append((curve, False))
    return points


# ---------------------------------------------------------------- calibration


def cache_path() -> Path:
    base = os.environ.get("FSPBENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fspbench")
    return Path(base) / "calibration.json"


def machine_key(device: str, threads: int) -> str:
    """Whose timings a cache entry holds: the hardware, the thread count and the library versions."""
    import torch

    import fspbench
    from fspbench.hardware import detect

    return f"{detect(device).key()}|threads={threads}|torch={torch.__version__}|fspbench={fspbench.__version__}"


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text())
        return data if data.get("version") == CACHE_VERSION else {"version": CACHE_VERSION}
    except (OSError, json.JSONDecodeError, AttributeError):
        return {"version": CACHE_VERSION}


def _synthetic(cfg: RunConfig, device: Any, n: int) -> Any:
    """n random uint8 images and labels of the run's data shape, as TaskData."""
    import torch

    from fspbench.data import TaskData

    k, c, side = _shape(cfg)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, c, side, side), generator=g, dtype=torch.uint8)
    y = torch.randint(0, k, (n,), generator=g)
    info = TASKS[cfg.task]
    mean = (torch.tensor(info.mean) * 255).view(1, -1, 1, 1)
    std = (torch.tensor(info.std) * 255).view(1, -1, 1, 1)
    return TaskData(cfg.task, k, c, side, mean.to(device), std.to(device), x.to(device), y.to(device),
                    x[:256].to(device), y[:256].to(device), "synthetic")


def _time_kind(kind: Kind) -> float:
    """Seconds per training step of ``kind`` (or per evaluated image when it is an evaluation)."""
    import torch

    from fspbench.data import EVAL_BATCH, BatchStream, eval_batches
    from fspbench.methods import METHODS, StageContext
    from fspbench.models import build_model
    from fspbench.train import evaluate, make_optimizer, optimizer_step, resolve_device

    cfg = kind.cfg
    device = resolve_device(cfg.device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    data = _synthetic(cfg, device, max(4 * cfg.batch_size, 4 * EVAL_BATCH))
    torch.manual_seed(0)
    student = build_model(cfg.arch, data.num_classes, data.in_channels, cfg.width).to(device)
    student = student.to(memory_format=fmt)
    if cfg.compile:
        student.compile()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if kind.stage < 0:
        batches = eval_batches(data, memory_format=fmt)[:4]
        evaluate(student, batches[:1], autocast)
        sync()
        t0 = time.perf_counter()
        evaluate(student, batches, autocast)
        sync()
        return (time.perf_counter() - t0) / sum(int(y.numel()) for _, y in batches)

    teacher = None
    if kind.teacher is not None:
        tk, _, _ = _shape(kind.teacher)
        teacher = build_model(kind.teacher.arch, tk, data.in_channels, kind.teacher.width)
        teacher.to(device).to(memory_format=fmt).eval().requires_grad_(False)
    spec = METHODS[cfg.method].stages(cfg)[kind.stage]
    probe = eval_batches(data, memory_format=fmt)[0][0][:2]
    objective = spec.objective(StageContext(student, teacher, cfg, probe)).to(device).to(memory_format=fmt)
    opt, sched = make_optimizer(list(student.parameters()) + list(objective.parameters()), spec, cfg)
    stream = BatchStream(data, cfg.batch_size, 0, augment=cfg.augment, hflip=cfg.hflip, memory_format=fmt)
    loss_sum = torch.zeros((), device=device)
    with objective.active():
        def step() -> None:
            nonlocal loss_sum
            loss = optimizer_step(objective, opt, sched, *stream.next(), 0.0, autocast)
            loss_sum += loss.detach().float()
            if device.type == "cpu":
                torch.isfinite(loss_sum).item()  # train_run's divergence check, a sync per CPU step

        for _ in range(WARMUP_STEPS):
            step()
        sync()
        t0 = time.perf_counter()
        for _ in range(CALIBRATION_STEPS):
            step()
        sync()
    return (time.perf_counter() - t0) / CALIBRATION_STEPS


@dataclass
class Calibration:
    """Measured seconds per step (per image for evaluations) of each kind, on one machine."""

    machine: str
    seconds: dict[str, float]
    measured_s: float  # time spent measuring now (0 when every kind came from the cache)
    measured: int  # kinds measured now
    cached: int  # kinds read from the cache


def calibrate(kinds: Iterable[Kind], threads: int) -> Calibration:
    """Time every kind not in this machine's cache, at ``threads`` torch threads; update the cache."""
    import torch

    from fspbench.train import resolve_device

    by_key = {k.key: k for k in kinds}
    device = next(iter(by_key.values())).cfg.device if by_key else "cpu"

    machine = machine_key(resolve_device(device).type, threads)
    cache = _read_cache()
    known: dict[str, float] = dict(cache.get(machine, {}))
    todo = [k for key, k in by_key.items() if key not in known]
    t0 = time.perf_counter()
    if todo:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for k in todo:
                known[k.key] = _time_kind(k)
        finally:
            torch.set_num_threads(before)
        cache = _read_cache()  # another process may have added kinds meanwhile
        cache[machine] = {**cache.get(machine, {}), **known}
        try:
            atomic_write_json(cache_path(), cache)
        except OSError:  # a read-only home: the estimate still stands, it is only not cached
            pass
    return Calibration(machine, {key: known[key] for key in by_key}, round(time.perf_counter() - t0, 2),
                       len(todo), len(by_key) - len(todo))


# ---------------------------------------------------------------- runs and the grid


def run_parts(run: GridRun, teachers: dict[str, RunConfig]) -> tuple[list[tuple[Kind, int]], Kind, list[int]]:
    """(stage kinds with their steps, the evaluation kind, images at each evaluation point) of a run."""
    cfg = run.config
    teacher = teachers.get(run.teacher_run_id)
    steps = [p.steps for p in stage_plans(cfg)]
    return (list(zip(stage_kinds(cfg, teacher), steps, strict=True)), eval_kind(cfg),
            [n for n, _ in eval_points(cfg)])


def grid_kinds(runs: list[GridRun], teachers: dict[str, RunConfig]) -> list[Kind]:
    out: dict[str, Kind] = {}
    for r in runs:
        stages, ev, _ = run_parts(r, teachers)
        for k, _ in stages:
            out.setdefault(k.key, k)
        out.setdefault(ev.key, ev)
    return list(out.values())


def run_seconds(run: GridRun, teachers: dict[str, RunConfig], seconds: dict[str, float]) -> float:
    """Estimated trial seconds of one run (module docstring, step 2)."""
    stages, ev, points = run_parts(run, teachers)
    train = sum(seconds[k.key] * n for k, n in stages)
    return train + seconds[ev.key] * sum(points) + POINT_OVERHEAD_S * len(points) + TRIAL_OVERHEAD_S


def chain_priority(runs: list[GridRun], cost: Callable[[GridRun], float]) -> dict[str, float]:
    """run id -> its cost plus the costliest chain of runs that wait for it (its students).

    Students have no students of their own, so a teacher's priority is its cost plus the
    largest cost among its students in ``runs``.
    """
    own = {r.run_id: cost(r) for r in runs}
    priority = dict(own)
    for r in runs:
        if r.teacher_run_id in own:
            priority[r.teacher_run_id] = max(priority[r.teacher_run_id], own[r.teacher_run_id] + own[r.run_id])
    return priority


def simulate(runs: list[GridRun], seconds: dict[str, float], slots: int, first: Iterable[str] = ()) -> float:
    """End time of ``runs`` on ``slots`` parallel slots: a student starts once its teacher (if among
    ``runs``) has ended; the ready run of highest chain priority goes first; ``first`` (run ids already
    running) take their slots at time 0 whatever their priority."""
    if not runs:
        return 0.0
    slots = max(1, slots)
    prio = chain_priority(runs, lambda r: seconds[r.run_id])
    ids = {r.run_id for r in runs}
    waiting: dict[str, list[GridRun]] = {}
    ready: list[tuple[float, int, GridRun]] = []
    started = set(first)
    for i, r in enumerate(runs):
        if r.teacher_run_id in ids:
            waiting.setdefault(r.teacher_run_id, []).append(r)
        else:
            heapq.heappush(ready, (-(prio[r.run_id] + (1e18 if r.run_id in started else 0)), i, r))
    now, order = 0.0, len(runs)
    running: list[tuple[float, str]] = []  # (end time, run id)
    while ready or running:
        while ready and len(running) < slots:
            _, _, r = heapq.heappop(ready)
            heapq.heappush(running, (now + seconds[r.run_id], r.run_id))
        now, done = heapq.heappop(running)
        for s in waiting.pop(done, []):
            order += 1
            heapq.heappush(ready, (-prio[s.run_id], order, s))
    return now


@dataclass
class Estimate:
    """The time a grid's runs will take on this machine."""

    wall_s: float  # simulated end of the grid
    run_s: dict[str, float]  # run id -> estimated trial seconds
    slots: int
    threads: int
    calibration: Calibration

    def summary(self) -> dict[str, Any]:
        """What grid.json keeps of it."""
        return {"wall_time_s": round(self.wall_s, 1), "trial_time_s": round(sum(self.run_s.values()), 1),
                "runs": len(self.run_s), "slots": self.slots, "threads_per_trial": self.threads,
                "machine": self.calibration.machine, "calibration_s": self.calibration.measured_s,
                "kinds_measured": self.calibration.measured, "kinds_cached": self.calibration.cached}


def teacher_configs(bench: Benchmark) -> dict[str, RunConfig]:
    return {t.run_id: t.config for t in bench.teachers}


def estimate_grid(bench: Benchmark, runs: list[GridRun], slots: int, threads: int) -> Estimate:
    """Calibrate (or read the cache) and simulate ``runs`` of ``bench`` on ``slots`` slots."""
    teachers = teacher_configs(bench)
    cal = calibrate(grid_kinds(runs, teachers), threads)
    run_s = {r.run_id: run_seconds(r, teachers, cal.seconds) for r in runs}
    return Estimate(simulate(runs, run_s, slots), run_s, slots, threads, cal)


def fmt_duration(seconds: float) -> str:
    """"1 h 02 min", "37 min 50 s", "45 s"."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
